// Fill-in-the-middle through /v1/completions' `suffix` (OpenAI's field) against the real `dpserve
// serve` on the tiny random Qwen3 with the real Qwen3 tokenizer, whose added tokens include
// <|fim_prefix|> 151659, <|fim_middle|> 151660 and <|fim_suffix|> 151661 (its tokenizer.json).
// The prompt must be the one Qwen2.5-Coder's model card writes:
//   <|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>
// and the answer the model's continuation of it. Both are checked against a plain completion of
// that prompt built here from /tokenize's ids, and against the prompt positions the engine reports
// (vLLM's prompt_logprobs).
import { spawnSync } from 'node:child_process';
import { assert, assertOpenAIError, http, modelName, run, sse } from './e2e_util.mjs';

const PRE = 151659, MID = 151660, SUF = 151661;
let model;

async function ids(text) {
  const r = await http('POST', '/tokenize', { model, prompt: text, add_special_tokens: false });
  assert.equal(r.status, 200, r.text);
  return r.json.tokens;
}

async function complete(body) {
  const r = await http('POST', '/v1/completions', { model, temperature: 0, max_tokens: 8, ...body });
  assert.equal(r.status, 200, r.text.slice(0, 400));
  return r.json;
}

const tests = [];
const prefix = 'def area(r):\n    return ', suffix = '\n\nprint(area(2.0))\n';

tests.push(['the markers are the vocabulary\'s FIM tokens', async () => {
  model = await modelName();
  assert.deepEqual(await ids('<|fim_prefix|>'), [PRE]);
  assert.deepEqual(await ids('<|fim_suffix|>'), [SUF]);
  assert.deepEqual(await ids('<|fim_middle|>'), [MID]);
}]);

tests.push(['suffix: the model sees the model card\'s FIM prompt and writes the middle', async () => {
  const want = [PRE, ...(await ids(prefix)), SUF, ...(await ids(suffix)), MID];
  const fim = await complete({ prompt: prefix, suffix, prompt_logprobs: 0 });
  assert.equal(fim.usage.prompt_tokens, want.length);
  // Positions 1.. of the prompt as the engine ran it (position 0 has no logprob).
  const seen = fim.choices[0].prompt_logprobs.slice(1).map((p) => Number(Object.keys(p)[0]));
  assert.deepEqual(seen, want.slice(1));
  const plain = await complete({ prompt: want });
  assert.equal(fim.choices[0].text, plain.choices[0].text);
  assert.ok(fim.choices[0].text.length > 0);
}]);

tests.push(['each prompt of a list gets the suffix; streamed as whole', async () => {
  const prompts = ['int main() {', 'x = '];
  const r = await complete({ prompt: prompts, suffix: '}\n' });
  assert.equal(r.choices.length, 2);
  for (let i = 0; i < 2; i++) {
    const want = [PRE, ...(await ids(prompts[i])), SUF, ...(await ids('}\n')), MID];
    const plain = await complete({ prompt: want });
    assert.equal(r.choices.find((c) => c.index === i).text, plain.choices[0].text, prompts[i]);
  }
  const events = await sse('/v1/completions', { model, temperature: 0, max_tokens: 8, prompt: prefix, suffix, stream: true });
  assert.equal(events.at(-1), '[DONE]');
  const streamed = events.slice(0, -1).map((e) => JSON.parse(e).choices[0]?.text ?? '').join('');
  assert.equal(streamed, (await complete({ prompt: prefix, suffix })).choices[0].text);
}]);

tests.push(['an empty or null suffix is a plain completion', async () => {
  const plain = await complete({ prompt: prefix });
  for (const s of ['', null]) {
    const r = await complete({ prompt: prefix, suffix: s });
    assert.equal(r.choices[0].text, plain.choices[0].text);
    assert.equal(r.usage.prompt_tokens, plain.usage.prompt_tokens);
  }
}]);

tests.push(['what a suffix cannot go with is a 400 naming it', async () => {
  for (const body of [{ prompt: [1, 2, 3], suffix: 'x' }, { prompt: [[1, 2], [3]], suffix: 'x' },
                      { prompt: 'a', suffix: 'x', echo: true }, { prompt: 'a', suffix: 'x', truncate_prompt_tokens: 4 }]) {
    const e = assertOpenAIError(await http('POST', '/v1/completions', { model, max_tokens: 2, ...body }), 400, 'suffix');
    assert.match(e.message, /suffix/);
  }
  assertOpenAIError(await http('POST', '/v1/completions', { model, prompt: 'a', suffix: 5 }), 400, 'suffix');
}]);

// SGLang's --completion-template names the format; one the vocabulary cannot spell stops the server.
tests.push(['--completion-template: an unknown name or a format without tokens is a start-up error', async () => {
  const models = process.env.FIM_MODELS, toks = process.env.FIM_TOKENIZERS;
  // Start-up checks of a flag: the normal build runs them; under ASan a server's model load costs
  // seconds and reaches no code the kept requests do not.
  if (!models || process.env.ASAN_OPTIONS) return;
  const qwen = ['--model-path', `${models}/qwen3-tiny`, '--tokenizer-path', `${toks}/qwen3`];
  const cases = [
    [[...qwen, '--completion-template', 'chatml'], /--completion-template: .*chatml.* not in \{/],
    [[...qwen, '--completion-template', 'deepseek_coder'],
     /--completion-template deepseek_coder: this tokenizer has no single token for <｜fim▁begin｜>/],
  ];
  for (const [args, want] of cases) {
    const r = spawnSync(process.env.DPSERVE_BIN, ['serve', '--host', '127.0.0.1', '--port', '0', ...args],
                        { encoding: 'utf8', timeout: 120000 });
    assert.notEqual(r.status, 0, `${args.join(' ')}: ${r.stderr.slice(-300)}`);
    assert.match(r.stderr + r.stdout, want, args.join(' '));
  }
}]);

await run(tests);
