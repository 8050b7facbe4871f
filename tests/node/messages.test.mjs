// Anthropic's Messages API (/v1/messages, /v1/messages/count_tokens) with the official
// `@anthropic-ai/sdk` Node client against the real `dpserve serve` on the tiny random Qwen3 (real
// Qwen3 tokenizer and template, --tool-call-parser qwen3, --reasoning-parser qwen3, --api-key).
// A random model writes anything, so texts are judged against /v1/chat/completions on the same
// conversation at temperature 0 (a route tested against the offline generator and Jinja2 elsewhere),
// structure against Anthropic's documented shapes, tool inputs and JSON outputs against ajv.
//
// MESSAGES_THINK=1: the server runs a template that opens <think> (as QwQ / DeepSeek-R1 do); only
// the thinking-block checks run.
import { createRequire } from 'node:module';

import Anthropic from '@anthropic-ai/sdk';

import { API_KEY, URL_BASE, assert, client, modelName, run } from './e2e_util.mjs';

const require = createRequire(import.meta.url);
const Ajv2020 = require('ajv/dist/2020').default;
const ajv = new Ajv2020({ strict: false });

const oa = client();
const an = new Anthropic({ apiKey: API_KEY, baseURL: URL_BASE, maxRetries: 0, timeout: 120000 });
let model;

async function chat(messages, extra = {}) {
  const r = await oa.chat.completions.create({ model, messages, temperature: 0, ...extra });
  return { text: r.choices[0].message.content ?? '', reasoning: r.choices[0].message.reasoning_content ?? '',
           finish: r.choices[0].finish_reason, usage: r.usage, message: r.choices[0].message };
}

// Every event of a streamed /v1/messages over raw fetch, with Anthropic's SSE framing: an
// "event: <type>" line naming the data's type, then one data line.
async function rawStream(body, headers = { 'x-api-key': API_KEY }) {
  const res = await fetch(`${URL_BASE}/v1/messages`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', 'anthropic-version': '2023-06-01', ...headers },
    body: JSON.stringify({ ...body, stream: true }), signal: AbortSignal.timeout(120000),
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') || '', /^text\/event-stream/);
  const raw = await res.text();
  assert.ok(raw.endsWith('\n\n'));
  return raw.split('\n\n').slice(0, -1).map((block, i) => {
    const lines = block.split('\n');
    assert.equal(lines.length, 2, `event ${i}: one event line and one data line`);
    assert.ok(lines[0].startsWith('event: ') && lines[1].startsWith('data: '));
    const data = JSON.parse(lines[1].slice(6));
    assert.equal(data.type, lines[0].slice(7));
    return data;
  });
}

// The order Anthropic documents: message_start, ping, blocks (start, deltas, stop; indexes 0, 1, ...),
// message_delta, message_stop. Returns the content the deltas build.
function checkEventOrder(events) {
  assert.equal(events[0].type, 'message_start');
  assert.deepEqual(events[0].message.content, []);
  assert.equal(events[0].message.stop_reason, null);
  assert.equal(events[1].type, 'ping');
  assert.equal(events.at(-2).type, 'message_delta');
  assert.equal(events.at(-1).type, 'message_stop');
  const content = [];
  let open = -1;
  for (const e of events.slice(2, -2)) {
    if (e.type === 'content_block_start') {
      assert.equal(open, -1, 'a block starts only after the previous one stopped');
      assert.equal(e.index, content.length);
      open = e.index;
      content.push(structuredClone(e.content_block));
      if (e.content_block.type === 'tool_use') content[open].json = '';
    } else if (e.type === 'content_block_delta') {
      assert.equal(e.index, open);
      const b = content[open];
      if (e.delta.type === 'text_delta') b.text += e.delta.text;
      else if (e.delta.type === 'thinking_delta') b.thinking += e.delta.thinking;
      else if (e.delta.type === 'input_json_delta') b.json += e.delta.partial_json;
      else assert.fail(`unexpected delta ${e.delta.type}`);
    } else {
      assert.equal(e.type, 'content_block_stop');
      assert.equal(e.index, open);
      open = -1;
    }
  }
  assert.equal(open, -1);
  for (const b of content)
    if (b.type === 'tool_use') { b.input = JSON.parse(b.json); delete b.json; }
  return content;
}

function text(m) { return m.content.filter((b) => b.type === 'text').map((b) => b.text).join(''); }

// What Anthropic's shape says of a Message, whatever its content.
function checkMessage(m, requestedModel) {
  assert.match(m.id, /^msg_[0-9a-f]{32}$/);
  assert.equal(m.type, 'message');
  assert.equal(m.role, 'assistant');
  assert.equal(m.model, requestedModel);
  assert.ok(Array.isArray(m.content));
  assert.ok(['end_turn', 'max_tokens', 'stop_sequence', 'tool_use'].includes(m.stop_reason), m.stop_reason);
  for (const k of ['input_tokens', 'output_tokens', 'cache_read_input_tokens', 'cache_creation_input_tokens'])
    assert.ok(Number.isInteger(m.usage[k]) && m.usage[k] >= 0, `usage.${k}`);
}

// A request with exactly these headers (undefined: left out), the key as the Anthropic SDK sends it.
async function http(method, path, body, headers = {}) {
  const h = { 'Content-Type': 'application/json', 'x-api-key': API_KEY, ...headers };
  for (const k of Object.keys(h)) if (h[k] === undefined) delete h[k];
  const res = await fetch(`${URL_BASE}${path}`, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
                                                  signal: AbortSignal.timeout(120000) });
  const t = await res.text();
  let json;
  try { json = JSON.parse(t); } catch { json = undefined; }
  return { status: res.status, text: t, json };
}

// The Anthropic error body: {"type": "error", "error": {"type", "message"}}, the message naming `param`.
async function expectError(body, status, type, param, path = '/v1/messages', headers = {}) {
  const r = await http('POST', path, body, headers);
  assert.equal(r.status, status, `${JSON.stringify(body).slice(0, 200)} -> ${r.text.slice(0, 300)}`);
  assert.equal(r.json.type, 'error', r.text);
  assert.equal(r.json.error.type, type, r.text);
  assert.equal(typeof r.json.error.message, 'string');
  if (param) assert.ok(r.json.error.message.includes(param), `'${param}' in: ${r.json.error.message}`);
  assert.equal(r.json.error.param, undefined, 'no OpenAI fields');
}

const think = process.env.MESSAGES_THINK === '1';
const tests = [];

tests.push(['model', async () => { model = await modelName(); }]);

if (think) {
  tests.push(['thinking block: the opened <think> is thinking, whole and streamed', async () => {
    const N = 8;
    const body = { model, max_tokens: N, messages: [{ role: 'user', content: 'hi' }], temperature: 0 };
    const m = await an.messages.create(body);
    checkMessage(m, model);
    // The template opened <think> and eight random tokens did not close it: all of them are thinking.
    assert.equal(m.stop_reason, 'max_tokens');
    assert.equal(m.content.length, 1, JSON.stringify(m.content));
    assert.equal(m.content[0].type, 'thinking');
    assert.equal(m.content[0].signature, '');
    const c = await chat([{ role: 'user', content: 'hi' }], { max_completion_tokens: N });
    assert.equal(m.content[0].thinking, c.reasoning);
    assert.ok(c.reasoning.length > 0);
    assert.equal(m.usage.output_tokens, N);
    const events = await rawStream(body);
    assert.deepEqual(checkEventOrder(events), m.content);
    assert.ok(events.some((e) => e.type === 'content_block_delta' && e.delta.type === 'thinking_delta'));
    // Replayed as an assistant thinking block, it is the reasoning_content of chat's assistant message.
    const turns = [{ role: 'user', content: 'hi' }, { role: 'assistant', content: [m.content[0], { type: 'text', text: 'ok' }] },
                   { role: 'user', content: 'again' }];
    const m2 = await an.messages.create({ ...body, messages: turns });
    const c2 = await chat([{ role: 'user', content: 'hi' },
                           { role: 'assistant', content: 'ok', reasoning_content: m.content[0].thinking },
                           { role: 'user', content: 'again' }], { max_completion_tokens: N });
    assert.equal(m2.content[0].thinking, c2.reasoning);
    assert.equal(m2.usage.input_tokens + m2.usage.cache_read_input_tokens, c2.usage.prompt_tokens);
  }]);
  await run(tests);
}

tests.push(['text: the Message is chat\'s answer at temperature 0, in Anthropic\'s shape', async () => {
  const turns = [{ role: 'user', content: 'Tell me a story' }, { role: 'assistant', content: 'Once' },
                 { role: 'user', content: [{ type: 'text', text: 'Go on,' }, { type: 'text', text: ' please' }] }];
  for (const [system, chatSystem] of [[undefined, []],
                                      ['Be brief.', [{ role: 'system', content: 'Be brief.' }]],
                                      [[{ type: 'text', text: 'Be', cache_control: { type: 'ephemeral' } },
                                        { type: 'text', text: ' brief.' }],
                                       [{ role: 'system', content: [{ type: 'text', text: 'Be' }, { type: 'text', text: ' brief.' }] }]]]) {
    const m = await an.messages.create({ model, max_tokens: 12, messages: turns, temperature: 0,
                                         ...(system === undefined ? {} : { system }) });
    checkMessage(m, model);
    const c = await chat([...chatSystem, ...turns], { max_completion_tokens: 12 });
    assert.equal(text(m), c.text);
    assert.equal(m.content.length, c.text === '' ? 0 : 1);
    assert.equal(m.stop_reason, c.finish === 'length' ? 'max_tokens' : 'end_turn');
    assert.equal(m.stop_sequence, null);
    assert.equal(m.usage.input_tokens + m.usage.cache_read_input_tokens, c.usage.prompt_tokens);
    assert.equal(m.usage.output_tokens, c.usage.completion_tokens);
  }
}]);

tests.push(['streaming: the SDK\'s stream and the raw events build the same Message', async () => {
  const body = { model, max_tokens: 16, messages: [{ role: 'user', content: 'Count to ten' }], temperature: 0 };
  const whole = await an.messages.create(body);
  const stream = an.messages.stream(body);
  let deltas = '';
  stream.on('text', (t) => { deltas += t; });
  const final = await stream.finalMessage();
  assert.deepEqual(final.content, whole.content);
  assert.equal(deltas, text(whole));
  assert.equal(final.stop_reason, whole.stop_reason);
  assert.equal(final.usage.output_tokens, whole.usage.output_tokens);
  const events = await rawStream(body);
  assert.deepEqual(checkEventOrder(events), whole.content);
  const delta = events.at(-2);
  assert.equal(delta.delta.stop_reason, whole.stop_reason);
  assert.equal(delta.usage.output_tokens, whole.usage.output_tokens);
  // message_start carries the whole prompt as input (how much of it the cache held is known later).
  assert.equal(events[0].message.usage.input_tokens,
               whole.usage.input_tokens + whole.usage.cache_read_input_tokens);
}]);

tests.push(['stop_sequences: the text ends before the first one, which the Message names', async () => {
  const body = { model, max_tokens: 24, messages: [{ role: 'user', content: 'Say something long' }], temperature: 0 };
  const full = text(await an.messages.create(body));
  assert.ok(full.length >= 12, full);
  const stop = full.slice(6, 9);
  const cut = full.slice(0, full.indexOf(stop));
  // Five sequences (chat takes four): the other four never occur in the text.
  const seqs = ['\u0001', '\u0002', '\u0003', stop, '\u0004'];
  const m = await an.messages.create({ ...body, stop_sequences: seqs });
  assert.equal(text(m), cut);
  assert.equal(m.stop_reason, 'stop_sequence');
  assert.equal(m.stop_sequence, stop);
  const events = await rawStream({ ...body, stop_sequences: seqs });
  assert.equal(events.at(-2).delta.stop_reason, 'stop_sequence');
  assert.equal(events.at(-2).delta.stop_sequence, stop);
}]);

tests.push(['prefill: a final assistant message is continued, as chat\'s continue_final_message', async () => {
  const turns = [{ role: 'user', content: 'Name a colour' }, { role: 'assistant', content: 'The colour is' }];
  const m = await an.messages.create({ model, max_tokens: 8, messages: turns, temperature: 0 });
  const c = await chat(turns, { max_completion_tokens: 8, continue_final_message: true, add_generation_prompt: false });
  assert.equal(text(m), c.text);
  assert.equal(m.usage.input_tokens + m.usage.cache_read_input_tokens, c.usage.prompt_tokens);
}]);

const weather = { type: 'object', properties: { city: { type: 'string', maxLength: 12 }, days: { type: 'integer', minimum: 1, maximum: 7 } },
                  required: ['city', 'days'], additionalProperties: false };
const tools = [{ name: 'get_weather', description: 'The forecast for a city', input_schema: weather }];
const chatTools = [{ type: 'function', function: { name: 'get_weather', description: 'The forecast for a city', parameters: weather } }];

tests.push(['tools: tool_choice any gives tool_use blocks by the schema; the tool_result round trip is chat\'s', async () => {
  const ask = [{ role: 'user', content: 'Weather in Paris?' }];
  // Thinking off (Anthropic refuses forced tool use with thinking on; here a random model would think
  // through max_tokens before the grammar's call).
  const noThink = { chat_template_kwargs: { enable_thinking: false } };
  const body = { model, max_tokens: 300, messages: ask, tools, tool_choice: { type: 'any', disable_parallel_tool_use: true },
                 thinking: { type: 'disabled' }, temperature: 0 };
  const m = await an.messages.create(body);
  checkMessage(m, model);
  assert.equal(m.stop_reason, 'tool_use', JSON.stringify(m));
  const uses = m.content.filter((b) => b.type === 'tool_use');
  assert.equal(uses.length, 1, JSON.stringify(m.content));
  const use = uses[0];
  assert.match(use.id, /^toolu_/);
  assert.equal(use.name, 'get_weather');
  assert.ok(ajv.validate(weather, use.input), JSON.stringify(ajv.errors));
  // The same call, streamed: the input arrives as input_json_delta.
  const events = await rawStream(body);
  const streamed = checkEventOrder(events).filter((b) => b.type === 'tool_use');
  assert.deepEqual(streamed.map((b) => [b.name, b.input]), [[use.name, use.input]]);
  assert.equal(events.at(-2).delta.stop_reason, 'tool_use');
  // The second turn: the call and its result go back as blocks; the prompt and answer are chat's
  // with the call as tool_calls and the result as a tool message.
  const turns = [...ask, { role: 'assistant', content: m.content },
                 { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'Sunny, 21 C' },
                                           { type: 'text', text: 'Thanks' }] }];
  const m2 = await an.messages.create({ model, max_tokens: 8, messages: turns, tools, thinking: { type: 'disabled' },
                                        temperature: 0 });
  const preamble = text(m);
  const c2 = await chat([...ask,
                         { role: 'assistant', content: preamble === '' ? null : [{ type: 'text', text: preamble }],
                           tool_calls: [{ id: use.id, type: 'function',
                                          function: { name: use.name, arguments: JSON.stringify(use.input) } }] },
                         { role: 'tool', tool_call_id: use.id, content: 'Sunny, 21 C' },
                         { role: 'user', content: [{ type: 'text', text: 'Thanks' }] }],
                        { max_completion_tokens: 8, tools: chatTools, ...noThink });
  assert.equal(m2.usage.input_tokens + m2.usage.cache_read_input_tokens, c2.usage.prompt_tokens);
  assert.equal(text(m2), c2.text);
  // A named tool: its call, whichever the model would have written.
  const named = await an.messages.create({ ...body, tool_choice: { type: 'tool', name: 'get_weather' } });
  assert.equal(named.content.filter((b) => b.type === 'tool_use')[0].name, 'get_weather');
  // none: no call is forced, and the prompt still lists the tools (chat's tool_choice none).
  const none = await an.messages.create({ ...body, max_tokens: 8, tool_choice: { type: 'none' } });
  const cn = await chat(ask, { max_completion_tokens: 8, tools: chatTools, tool_choice: 'none', ...noThink });
  assert.equal(text(none), cn.text);
}]);

tests.push(['output_config.format: the text is JSON by the schema', async () => {
  const schema = { type: 'object', properties: { answer: { type: 'string', maxLength: 10 }, n: { type: 'integer' } },
                   required: ['answer', 'n'], additionalProperties: false };
  const m = await an.messages.create({ model, max_tokens: 200, messages: [{ role: 'user', content: 'JSON please' }],
                                       output_config: { format: { type: 'json_schema', schema } }, temperature: 0 });
  assert.equal(m.stop_reason, 'end_turn', JSON.stringify(m));
  const value = JSON.parse(text(m));
  assert.ok(ajv.validate(schema, value), JSON.stringify(ajv.errors));
}]);

tests.push(['thinking: disabled closes the think block as chat\'s enable_thinking false; budgets checked', async () => {
  const ask = [{ role: 'user', content: 'hi' }];
  const m = await an.messages.create({ model, max_tokens: 8, messages: ask, thinking: { type: 'disabled' }, temperature: 0 });
  const c = await chat(ask, { max_completion_tokens: 8, chat_template_kwargs: { enable_thinking: false } });
  assert.equal(text(m), c.text);
  assert.equal(m.usage.input_tokens + m.usage.cache_read_input_tokens, c.usage.prompt_tokens);
  // Enabled (and adaptive) ask the template for thinking: count_tokens is the prompt enable_thinking true makes.
  const con = await chat(ask, { max_completion_tokens: 1, chat_template_kwargs: { enable_thinking: true } });
  for (const thinking of [{ type: 'enabled', budget_tokens: 1024 }, { type: 'adaptive' }])
    assert.equal((await an.messages.countTokens({ model, messages: ask, thinking })).input_tokens, con.usage.prompt_tokens);
  assert.notEqual(con.usage.prompt_tokens, c.usage.prompt_tokens, 'the two templates differ');
  await expectError({ model, max_tokens: 4096, messages: ask, thinking: { type: 'enabled', budget_tokens: 500 } }, 400,
                    'invalid_request_error', 'thinking.budget_tokens');
  await expectError({ model, max_tokens: 1024, messages: ask, thinking: { type: 'enabled', budget_tokens: 1024 } }, 400,
                    'invalid_request_error', 'max_tokens');
}]);

tests.push(['count_tokens: the prompt tokens the Message is charged, tools and blocks included', async () => {
  const turns = [{ role: 'user', content: 'Weather in Rome?' }];
  for (const extra of [{}, { system: 'Be brief.', tools }]) {
    const n = await an.messages.countTokens({ model, messages: turns, ...extra });
    const m = await an.messages.create({ model, max_tokens: 1, messages: turns, ...extra });
    assert.equal(n.input_tokens, m.usage.input_tokens + m.usage.cache_read_input_tokens);
    const c = await chat([...(extra.system ? [{ role: 'system', content: extra.system }] : []), ...turns],
                         { max_completion_tokens: 1, ...(extra.tools ? { tools: chatTools } : {}) });
    assert.equal(n.input_tokens, c.usage.prompt_tokens);
  }
  await expectError({ model, messages: turns, max_tokens: 4 }, 400, 'invalid_request_error', 'max_tokens',
                    '/v1/messages/count_tokens');
}]);

tests.push(['too long: Anthropic\'s words for it (Claude Code compacts on them), with the counts', async () => {
  const big = Array.from({ length: 1500 }, () => 'apple').join(' ');
  const messages = [{ role: 'user', content: big }, { role: 'assistant', content: 'ok' },
                    { role: 'user', content: `${big} ${big}` }];
  // The prompt's tokens and the context by /tokenize of the same messages (not the error's text).
  const tok = (await http('POST', '/tokenize', { model, messages }, { 'x-api-key': undefined,
                                                                       Authorization: `Bearer ${API_KEY}` })).json;
  const [n, ctxLen] = [tok.count, tok.max_model_len];
  assert.ok(n >= ctxLen, `${n} tokens should not fit ${ctxLen}`);
  const r = await http('POST', '/v1/messages', { model, max_tokens: 4, messages });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.type, 'invalid_request_error');
  assert.equal(r.json.error.message, `prompt is too long: ${n} tokens > ${ctxLen} maximum`);
  // count_tokens counts it all the same (Claude Code counts to decide when to compact).
  assert.equal((await an.messages.countTokens({ model, messages })).input_tokens, n);
  // It fits, but not with max_tokens beside it.
  const short = [{ role: 'user', content: big }];
  const k = (await an.messages.countTokens({ model, messages: short })).input_tokens;
  const t = await http('POST', '/v1/messages', { model, max_tokens: ctxLen - k + 1, messages: short });
  assert.equal(t.status, 400);
  assert.equal(t.json.error.message, `input length and \`max_tokens\` exceed context limit: ${k} + ${ctxLen - k + 1} > ${
    ctxLen}, decrease input length or \`max_tokens\` and try again`);
  // Exactly the context is accepted: the stream opens with message_start. Read no further: a random
  // model may not stop for thousands of tokens, minutes under the sanitizers (leaving hangs up).
  const accepted = await an.messages.create({ model, max_tokens: ctxLen - k, messages: short, stream: true });
  let first = null;
  for await (const ev of accepted) {
    first = ev;
    break;
  }
  assert.equal(first?.type, 'message_start', JSON.stringify(first));
  assert.equal(first.message.type, 'message');
}]);

tests.push(['bad input: Anthropic\'s error shape naming the parameter; the server goes on', async () => {
  const ok = { model, max_tokens: 4, messages: [{ role: 'user', content: 'hi' }] };
  const cases = [
    [{ model, messages: ok.messages }, 'max_tokens'],
    [{ ...ok, max_tokens: 0 }, 'max_tokens'],
    [{ ...ok, messages: [] }, 'messages'],
    [{ ...ok, frobnicate: 1 }, 'frobnicate'],
    [{ ...ok, temperature: 1.5 }, 'temperature'],
    [{ ...ok, messages: [{ role: 'system', content: 'x' }] }, 'messages[0].role'],
    [{ ...ok, messages: [{ role: 'user', content: [{ type: 'document', source: {} }] }] }, 'messages[0].content[0]'],
    [{ ...ok, messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: [{ type: 'redacted_thinking', data: 'x' }] }] },
     'messages[1].content[0]'],
    [{ ...ok, messages: [{ role: 'user', content: [{ type: 'text', text: 'a', citations: [{ x: 1 }] }] }] },
     'messages[0].content[0].citations'],
    [{ ...ok, tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, 'tools[0].type'],
    [{ ...ok, tools: [{ name: 'f' }] }, 'tools[0].input_schema'],
    [{ ...ok, tools, tool_choice: { type: 'tool', name: 'nope' } }, 'tool_choice'],
    [{ ...ok, tool_choice: { type: 'any' } }, 'tool_choice'],
    [{ ...ok, thinking: { type: 'enabled', budget_tokens: 2048, display: 'omitted' } }, 'thinking.display'],
    [{ ...ok, output_config: { effort: 'high' } }, 'output_config.effort'],
    [{ ...ok, mcp_servers: [{ type: 'url', url: 'http://x', name: 'x' }] }, 'mcp_servers'],
    [{ ...ok, cache_control: { type: 'persistent' } }, 'cache_control.type'],
    [{ ...ok, metadata: { user_id: 'u', other: 1 } }, 'metadata.other'],
    // The chat parser's own errors, renamed: this model takes no images (messages[0]'s second block).
    [{ ...ok, messages: [{ role: 'user', content: [{ type: 'text', text: 'a' },
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } }] }] }, 'messages[0]'],
  ];
  for (const [body, param] of cases) await expectError(body, 400, 'invalid_request_error', param);
  // The SDK reads the shape: a BadRequestError carrying Anthropic's error object.
  await assert.rejects(an.messages.create({ model, messages: ok.messages, max_tokens: 0 }), (e) => {
    assert.ok(e instanceof Anthropic.BadRequestError, String(e));
    assert.equal(e.status, 400);
    assert.equal(e.error.type, 'error');
    assert.equal(e.error.error.type, 'invalid_request_error');
    return true;
  });
  // cpp-httplib's own 404 under the route family is Anthropic's not_found_error; other routes keep OpenAI's shape.
  const nf = await http('POST', '/v1/messages/nothere', ok);
  assert.equal(nf.status, 404);
  assert.equal(nf.json.error.type, 'not_found_error');
  assert.equal(nf.json.type, 'error');
  const other = await http('POST', '/v1/chat/completions', { model, messages: [], max_tokens: 1 },
                           { 'x-api-key': undefined, Authorization: `Bearer ${API_KEY}` });
  assert.equal(other.status, 400);
  assert.equal(typeof other.json.error.param, 'string');
  assert.equal(other.json.type, undefined);
  // Nothing was lost.
  const m = await an.messages.create(ok);
  checkMessage(m, model);
}]);

tests.push(['models: Anthropic\'s client gets Anthropic\'s Models API, OpenAI\'s client OpenAI\'s', async () => {
  const openai = await oa.models.list();
  const page = await an.models.list();
  assert.deepEqual(page.data.map((m) => m.id), openai.data.map((m) => m.id));
  const created = new Date(openai.data[0].created * 1000).toISOString().replace('.000Z', 'Z');
  assert.deepEqual(page.data[0], { type: 'model', id: model, display_name: model, created_at: created });
  assert.deepEqual(await an.models.retrieve(model), page.data[0]);
  assert.deepEqual(page.data[0], (await an.models.list({ limit: 1 })).data[0]);
  const after = await http('GET', `/v1/models?after_id=${model}`, undefined, { 'anthropic-version': '2023-06-01' });
  assert.deepEqual([after.json.data, after.json.has_more, after.json.first_id], [[], false, null]);
  await assert.rejects(an.models.retrieve('no-such-model'),
                       (e) => e.status === 404 && e.error?.type === 'error' && e.error?.error?.type === 'not_found_error');
  for (const q of ['limit=0', 'after_id=nope', 'page=2']) {
    const r = await http('GET', `/v1/models?${q}`, undefined, { 'anthropic-version': '2023-06-01' });
    assert.equal(r.status, 400, q);
    assert.equal(r.json.type, 'error');
    assert.equal(r.json.error.type, 'invalid_request_error');
  }
  assert.equal((await oa.models.retrieve(model)).object, 'model');  // OpenAI's shape without the header
}]);

if (API_KEY !== 'none') {
  tests.push(['API key: X-Api-Key (the SDK\'s) or Bearer; a wrong key is authentication_error', async () => {
    const ok = { model, max_tokens: 2, messages: [{ role: 'user', content: 'hi' }] };
    const bearer = new Anthropic({ authToken: API_KEY, apiKey: null, baseURL: URL_BASE, maxRetries: 0 });
    checkMessage(await bearer.messages.create(ok), model);
    await expectError(ok, 401, 'authentication_error', undefined, '/v1/messages', { 'x-api-key': 'wrong' });
    await expectError(ok, 401, 'authentication_error', undefined, '/v1/messages', { 'x-api-key': undefined });
    const wrong = new Anthropic({ apiKey: 'wrong', baseURL: URL_BASE, maxRetries: 0 });
    await assert.rejects(wrong.messages.create(ok), (e) => e instanceof Anthropic.AuthenticationError && e.status === 401);
    // X-Api-Key works on the OpenAI routes too.
    const r = await http('GET', '/v1/models');
    assert.equal(r.status, 200);
  }]);
}

await run(tests);
