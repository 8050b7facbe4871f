// gpt-oss's harmony format (--reasoning-parser gpt-oss, --tool-call-parser gpt-oss) against the real
// `dpserve serve`: the tiny random Qwen3 over a tokenizer that has harmony's tags as special tokens
// (tests/e2e/harmony_tokenizer.py). A random model does not write the format by itself, so SGLang's
// `regex` field makes it write one (the messages of OpenAI's harmony guide); what is checked is the
// server's reading of it: reasoning_content, content and tool_calls, whole and streamed; then tool_choice
// and a JSON response_format enforced in the format; and the flags and fields the format refuses.
//
// HARMONY_TOKENIZER, QWEN3_TOKENIZER, HARMONY_MODEL: the two tokenizers' folders and the model's (start-up errors).
// HARMONY_DEFAULTS=1: the server is a gpt-oss model started without the flags; the reader must be on
// by itself (the format's reading only: the flag checks belong to the run with the flags).
import { spawnSync } from 'node:child_process';

import { assert, assertOpenAIError, http, modelName, run, sse } from './e2e_util.mjs';

const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const THINK_THEN_ANSWER = '<|channel|>analysis<|message|>User asks: "What is 2 + 2?" Simple arithmetic.<|end|>' +
                          '<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.';
const PREAMBLE_THEN_CALL = '<|channel|>analysis<|message|>Need to use function get_weather.<|end|>' +
                           '<|start|>assistant<|channel|>commentary<|message|>Checking.<|end|>' +
                           '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json' +
                           '<|message|>{"location": "San Francisco"}';
const TOOLS = [{ type: 'function', function: { name: 'get_weather', parameters: {
  type: 'object', properties: { location: { type: 'string' } }, required: ['location'] } } }];
let model;

async function chat(written, extra = {}) {
  const r = await http('POST', '/v1/chat/completions', {
    model, messages: [{ role: 'user', content: 'What is 2 + 2?' }], temperature: 0, max_tokens: 200,
    regex: esc(written), ...extra });
  assert.equal(r.status, 200, r.text.slice(0, 400));
  return r.json;
}

// The streamed deltas, put together.
async function streamed(written, extra = {}) {
  const events = await sse('/v1/chat/completions', {
    model, messages: [{ role: 'user', content: 'What is 2 + 2?' }], temperature: 0, max_tokens: 200,
    ...(written === null ? {} : { regex: esc(written) }), stream: true, ...extra });
  assert.equal(events.at(-1), '[DONE]');
  const out = { reasoning: '', content: '', calls: [], finish: null };
  for (const e of events.slice(0, -1)) {
    const ch = JSON.parse(e).choices[0];
    if (!ch) continue;
    out.reasoning += ch.delta.reasoning_content ?? '';
    out.content += ch.delta.content ?? '';
    for (const c of ch.delta.tool_calls ?? []) {
      if (c.id) out.calls.push({ name: c.function.name, arguments: '' });
      out.calls.at(-1).arguments += c.function.arguments ?? '';
    }
    if (ch.finish_reason) out.finish = ch.finish_reason;
  }
  return out;
}

const tests = [];

tests.push(['analysis is reasoning_content, final is content', async () => {
  model = await modelName();
  const m = (await chat(THINK_THEN_ANSWER)).choices[0];
  assert.equal(m.message.reasoning_content, 'User asks: "What is 2 + 2?" Simple arithmetic.');
  assert.equal(m.message.content, '2 + 2 = 4.');
  assert.equal(m.finish_reason, 'stop');
  const s = await streamed(THINK_THEN_ANSWER);
  assert.deepEqual([s.reasoning, s.content, s.finish],
                   ['User asks: "What is 2 + 2?" Simple arithmetic.', '2 + 2 = 4.', 'stop']);
}]);

tests.push(['a message to functions.NAME is a tool call; a commentary preamble is content', async () => {
  const r = await chat(PREAMBLE_THEN_CALL, { tools: TOOLS });
  const m = r.choices[0];
  assert.equal(m.finish_reason, 'tool_calls');
  assert.equal(m.message.reasoning_content, 'Need to use function get_weather.');
  assert.equal(m.message.content, 'Checking.');
  assert.equal(m.message.tool_calls.length, 1);
  assert.equal(m.message.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(m.message.tool_calls[0].function.arguments), { location: 'San Francisco' });
  const s = await streamed(PREAMBLE_THEN_CALL, { tools: TOOLS });
  assert.equal(s.finish, 'tool_calls');
  assert.deepEqual([s.reasoning, s.content], ['Need to use function get_weather.', 'Checking.']);
  assert.deepEqual(s.calls.map((c) => [c.name, JSON.parse(c.arguments)]), [['get_weather', { location: 'San Francisco' }]]);
}]);

tests.push(['without tools in the request the call is text; separate_reasoning false gives the raw text', async () => {
  const m = (await chat(PREAMBLE_THEN_CALL)).choices[0];
  assert.equal(m.message.tool_calls, undefined);
  assert.equal(m.message.content, 'Checking.{"location": "San Francisco"}');
  const raw = (await chat(THINK_THEN_ANSWER, { separate_reasoning: false })).choices[0].message;
  assert.equal(raw.reasoning_content ?? null, null);
  assert.equal(raw.content, THINK_THEN_ANSWER);  // the regex spelled the tags as text: they stay
}]);

tests.push(['an ebnf naming the special tokens writes them as tokens; the reader reads them', async () => {
  // llama.cpp's GBNF names a special token by its text: the model writes <|channel|> the token, which
  // decodes to the same text (special tokens are kept for the reader), unlike the regex's text pieces.
  const ebnf = 'root ::= <|channel|> "analysis" <|message|> "Add them." <|end|> <|start|> "assistant" ' +
               '<|channel|> "final" <|message|> "4."';
  const r = await http('POST', '/v1/chat/completions', {
    model, messages: [{ role: 'user', content: 'What is 2 + 2?' }], temperature: 0, max_tokens: 60, ebnf,
    return_token_ids: true });
  assert.equal(r.status, 200, r.text.slice(0, 400));
  const ch = r.json.choices[0];
  assert.deepEqual([ch.message.reasoning_content, ch.message.content], ['Add them.', '4.']);
  assert.equal(ch.token_ids[0], await ids('<|channel|>'));
  // A token the tokenizer does not have as a special token is a 400 naming the field.
  for (const bad of ['root ::= <|nope|> "x"', 'root ::= <think> "x"'])
    assertOpenAIError(await http('POST', '/v1/chat/completions', {
      model, messages: [{ role: 'user', content: 'w' }], ebnf: bad }), 400, 'ebnf');
}]);

tests.push(['/model_info and /server_info report the model and the parsers in effect', async () => {
  const m = await http('GET', '/model_info');
  assert.equal(m.status, 200, m.text.slice(0, 300));
  assert.deepEqual(m.json.architectures, [process.env.HARMONY_DEFAULTS ? 'GptOssForCausalLM' : 'Qwen3ForCausalLM']);
  const s = await http('GET', '/server_info');
  assert.equal(s.status, 200, s.text.slice(0, 300));
  assert.deepEqual([s.json.reasoning_parser, s.json.tool_call_parser], ['gpt-oss', 'gpt-oss']);
}]);

// Enforced harmony: the grammar writes the tags as their special tokens. The random model is steered
// (greedy, logit_bias) only so that it ends what the grammar leaves open: " to" opens a call in the
// role part of the header, '"' closes strings at once, <|end|> closes an analysis, "final" names the
// final channel. Where it goes is the grammar's doing: the checks are of what the reader makes of it.
async function ids(text) {
  const r = await http('POST', '/tokenize', { prompt: text, add_special_tokens: false });
  assert.equal(r.status, 200, r.text.slice(0, 300));
  assert.equal(r.json.tokens.length, 1, `${text}: ${JSON.stringify(r.json.tokens)}`);
  return r.json.tokens[0];
}
async function steered(extra) {
  // Ranked: in a message body every text token is allowed, so <|end|> must outrank them all; in a JSON
  // string '"' must outrank " to".
  const bias = { [await ids('<|end|>')]: 100, [await ids('"')]: 80, [await ids(' to')]: 60, [await ids('final')]: 40 };
  return { model, messages: [{ role: 'user', content: 'Weather in Paris?' }], temperature: 0, max_tokens: 120,
           logit_bias: bias, ...extra };
}
const STRICT_TOOLS = [
  { type: 'function', function: { name: 'get_weather', strict: true, parameters: {
    type: 'object', properties: { location: { type: 'string' } }, required: ['location'], additionalProperties: false } } },
  { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {}, additionalProperties: false } } }];

tests.push(['tool_choice required / named, and strict tools under auto, are enforced', async () => {
  for (const [extra, name, args] of [
    [{ tools: STRICT_TOOLS, tool_choice: 'required' }, null, null],
    [{ tools: STRICT_TOOLS, tool_choice: { type: 'function', function: { name: 'get_time' } } }, 'get_time', {}],
    [{ tools: STRICT_TOOLS }, null, null],  // auto, with a strict tool
  ]) {
    const body = await steered(extra);
    const r = await http('POST', '/v1/chat/completions', body);
    assert.equal(r.status, 200, r.text.slice(0, 400));
    const ch = r.json.choices[0];
    assert.equal(ch.finish_reason, 'tool_calls', JSON.stringify(ch));
    assert.equal(ch.message.tool_calls.length, 1);
    const call = ch.message.tool_calls[0].function;
    const parsed = JSON.parse(call.arguments);
    if (name) {
      assert.deepEqual([call.name, parsed], [name, args]);
    } else {
      assert.ok(['get_weather', 'get_time'].includes(call.name), call.name);
      if (call.name === 'get_weather') assert.deepEqual(Object.keys(parsed), ['location']);
      else assert.deepEqual(parsed, {});
    }
    const s = await streamed(null, body);
    assert.equal(s.finish, 'tool_calls');
    assert.deepEqual(s.calls.map((c) => [c.name, JSON.parse(c.arguments)]), [[call.name, parsed]]);
  }
}]);

tests.push(['a JSON response_format is the final message\'s body', async () => {
  const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false };
  const body = await steered({ response_format: { type: 'json_schema', json_schema: { name: 'r', schema } } });
  const r = await http('POST', '/v1/chat/completions', body);
  assert.equal(r.status, 200, r.text.slice(0, 400));
  const m = r.json.choices[0].message;
  const parsed = JSON.parse(m.content);  // the tags went to the reader, not into the content
  assert.deepEqual(Object.keys(parsed), ['ok']);
  assert.equal(typeof parsed.ok, 'boolean');
  assert.equal(r.json.choices[0].finish_reason, 'stop');
}]);

if (!process.env.HARMONY_DEFAULTS) {
  tests.push(['a thinking budget is refused by name', async () => {
    const ask = { model, messages: [{ role: 'user', content: 'w' }], tools: TOOLS };
    // A thinking budget needs <think> tags, which harmony has not.
    assertOpenAIError(await http('POST', '/v1/chat/completions', { ...ask, thinking_token_budget: 8 }), 400,
                      'thinking_token_budget');
  }]);

  tests.push(["an assistant turn's reasoning_content reaches the template as `thinking`", async () => {
    // A template of the request's own (the server trusts them here) that prints what gpt-oss's template
    // reads: each assistant turn's `thinking` before its content.
    const chat_template = '{% for m in messages %}{{ m.role }}[{{ m.thinking }}]{{ m.content }};{% endfor %}';
    const prompt = async (assistant) => {
      const r = await http('POST', '/tokenize', { chat_template, add_generation_prompt: false, messages: [
        { role: 'user', content: 'Q' }, assistant, { role: 'user', content: 'R' }] });
      assert.equal(r.status, 200, r.text.slice(0, 300));
      const d = await http('POST', '/detokenize', { tokens: r.json.tokens });
      return d.json.text;
    };
    assert.equal(await prompt({ role: 'assistant', content: 'A', reasoning_content: 'think' }), 'user[]Q;assistant[think]A;user[]R;');
    assert.equal(await prompt({ role: 'assistant', content: 'A', reasoning: 'vllm' }), 'user[]Q;assistant[vllm]A;user[]R;');
    // A `thinking` the client gave wins.
    assert.equal(await prompt({ role: 'assistant', content: 'A', thinking: 'own', reasoning_content: 'x' }),
                 'user[]Q;assistant[own]A;user[]R;');
  }]);

  tests.push(['start-up errors name the flag', async () => {
    const harmony = process.env.HARMONY_TOKENIZER, qwen3 = process.env.QWEN3_TOKENIZER;
    const modelPath = process.env.HARMONY_MODEL;
    for (const [args, want] of [
      [['--tokenizer-path', harmony, '--tool-call-parser', 'gpt-oss'], /--tool-call-parser gpt-oss needs --reasoning-parser gpt-oss/],
      [['--tokenizer-path', harmony, '--reasoning-parser', 'gpt-oss', '--reasoning-budget', '8'], /--reasoning-budget is not supported with --reasoning-parser gpt-oss/],
      [['--tokenizer-path', qwen3, '--reasoning-parser', 'gpt-oss'], /no <\|start\|> special token/],
    ]) {
      const r = spawnSync(process.env.DPSERVE_BIN, ['serve', '--host', '127.0.0.1', '--port', '0', '--model-path',
                                                    modelPath, ...args], { encoding: 'utf8', timeout: 120000 });
      assert.notEqual(r.status, 0, `${args.join(' ')}: ${r.stderr.slice(-300)}`);
      assert.match(r.stderr + r.stdout, want, args.join(' '));
    }
  }]);
}

await run(tests);
