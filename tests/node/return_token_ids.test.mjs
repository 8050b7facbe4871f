// vLLM's return_token_ids on /v1/completions and /v1/chat/completions against the real `dpserve
// serve`: the prompt's ids (chat: beside the choices; completions: in each choice) and each choice's
// token_ids, whole and streamed (streamed: the prompt's ids on the first chunk, each chunk the ids it
// adds). The ids are checked against views of the same request that do not use the field: /tokenize
// of the prompt (chat: of its messages), and the logprobs named by id (return_tokens_as_token_ids).
import { assert, http, modelName, run, sse } from './e2e_util.mjs';

let model;
const tests = [];

async function post(path, body) {
  const r = await http('POST', path, { model, temperature: 0, ...body });
  assert.equal(r.status, 200, r.text.slice(0, 400));
  return r.json;
}

async function tokenize(body) {
  const r = await http('POST', '/tokenize', { model, ...body });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

const idsOfLogprobs = (tokens) => tokens.map((t) => Number(/^token_id:(\d+)$/.exec(t)[1]));

tests.push(['completions: prompt_token_ids and token_ids in each choice, as /tokenize and the logprobs say', async () => {
  model = await modelName();
  const prompts = ['Once upon a time', 'The little dog'];
  const r = await post('/v1/completions', { prompt: prompts, max_tokens: 6, n: 2, return_token_ids: true, logprobs: 0,
                                            return_tokens_as_token_ids: true, seed: 3, temperature: 1 });
  assert.equal(r.choices.length, 4);
  for (const ch of r.choices) {
    const p = prompts[Math.floor(ch.index / 2)];
    const tok = await tokenize({ prompt: p });
    assert.deepEqual(ch.prompt_token_ids, tok.tokens, p);
    assert.deepEqual(ch.token_ids, idsOfLogprobs(ch.logprobs.tokens));
  }
  assert.equal(r.choices.reduce((s, c) => s + c.token_ids.length, 0), r.usage.completion_tokens);
  // The end-of-text token that stopped a choice is one of its ids (<|im_end|>, Qwen3's EOS), as in vLLM.
  const [eos] = (await tokenize({ prompt: '<|im_end|>', add_special_tokens: false })).tokens;
  const ended = await post('/v1/completions', { prompt: prompts[0], max_tokens: 5, return_token_ids: true,
                                                logit_bias: { [eos]: 100 } });
  assert.deepEqual([ended.choices[0].token_ids, ended.choices[0].finish_reason], [[eos], 'stop']);
  // Without the field, neither appears.
  const plain = await post('/v1/completions', { prompt: prompts[0], max_tokens: 2 });
  assert.ok(!('token_ids' in plain.choices[0]) && !('prompt_token_ids' in plain.choices[0]));
}]);

tests.push(['chat: prompt_token_ids beside the choices (the rendered template), token_ids per choice', async () => {
  const messages = [{ role: 'user', content: 'Tell me a story.' }];
  const r = await post('/v1/chat/completions', { messages, max_tokens: 6, return_token_ids: true, logprobs: true,
                                                 return_tokens_as_token_ids: true });
  const tok = await tokenize({ messages });
  assert.deepEqual(r.prompt_token_ids, tok.tokens);
  assert.equal(r.prompt_token_ids.length, r.usage.prompt_tokens);
  const ch = r.choices[0];
  assert.deepEqual(ch.token_ids, idsOfLogprobs(ch.logprobs.content.map((c) => c.token)));
  assert.equal(ch.token_ids.length, r.usage.completion_tokens);
}]);

tests.push(['streamed: the ids of every chunk add up to the whole answer\'s, even where a parser held text back', async () => {
  for (const [path, base] of [['/v1/completions', { prompt: 'Once upon a time' }],
                              ['/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }] }]]) {
    // logit_bias makes every output token "<": the chat parsers (the server runs the reasoning and
    // tool-call parsers) hold a "<" back while it may open a tag, so a chunk may carry no text and its
    // ids must wait for the next chunk that does.
    const [lt] = (await tokenize({ prompt: '<', add_special_tokens: false })).tokens;
    const held = { logit_bias: { [lt]: 100 }, stop: ['<'.repeat(40)] };
    for (const extra of [{}, held, { n: 2, seed: 9, temperature: 1 }]) {
      const body = { ...base, max_tokens: 12, return_token_ids: true, ...extra };
      const whole = await post(path, body);
      const events = await sse(path, { model, temperature: 0, ...body, stream: true });
      assert.equal(events.at(-1), '[DONE]');
      const ids = {}, prompts = {};
      let topPrompt = 0, carried = false;
      for (const e of events.slice(0, -1)) {
        const j = JSON.parse(e);
        if (j.prompt_token_ids) {
          topPrompt++;
          assert.deepEqual(j.prompt_token_ids, whole.prompt_token_ids);
        }
        for (const c of j.choices) {
          ids[c.index] = [...(ids[c.index] ?? []), ...(c.token_ids ?? [])];
          carried ||= (c.token_ids ?? []).length > 1;
          if (c.prompt_token_ids) prompts[c.index] = (prompts[c.index] ?? 0) + 1;
        }
      }
      if (extra === held) {
        assert.deepEqual(whole.choices[0].token_ids, Array(12).fill(lt));
        if (path === '/v1/chat/completions') assert.ok(carried, 'a chunk carried the ids of one that sent nothing');
      }
      for (const ch of whole.choices) {
        assert.deepEqual(ids[ch.index], ch.token_ids, `${path} ${JSON.stringify(extra)} choice ${ch.index}`);
        if (path === '/v1/completions') assert.equal(prompts[ch.index], 1, 'the prompt ids come once per choice');
      }
      assert.equal(topPrompt, path === '/v1/chat/completions' ? 1 : 0, 'chat: once per stream');
    }
  }
}]);

tests.push(['return_token_ids must be a boolean', async () => {
  const r = await http('POST', '/v1/completions', { model, prompt: 'a', return_token_ids: 'yes' });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.param, 'return_token_ids');
}]);

await run(tests);
