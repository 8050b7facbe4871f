// The OpenAI Responses API (/v1/responses) with the official `openai` Node client against the real
// `dpserve serve` on the tiny random Qwen3 (real Qwen3 tokenizer and template, --tool-call-parser
// qwen3, --reasoning-parser qwen3, --api-key key-a,key-b, --max-stored-responses RESPONSES_STORE_BOUND).
// A random model writes anything, so texts are judged against /v1/chat/completions on the same
// conversation at temperature 0 (a route tested against the offline generator elsewhere), structure
// against OpenAI's documented shapes, JSON against ajv.
//
// RESPONSES_THINK=1: the server runs a template that opens <think> (as QwQ / DeepSeek-R1 do); only
// the reasoning-item checks run.
import { createRequire } from 'node:module';

import { toFile } from 'openai';

import { API_KEY, URL_BASE, assert, assertOpenAIError, client, http, modelName, run } from './e2e_util.mjs';

const require = createRequire(import.meta.url);
const Ajv2020 = require('ajv/dist/2020').default;
const ajv = new Ajv2020({ strict: false });

const oa = client();
const BOUND = Number(process.env.RESPONSES_STORE_BOUND ?? 4);
const OTHER_KEY = process.env.RESPONSES_OTHER_KEY;  // a second tenant's key
let model;

async function chat(messages, extra = {}) {
  const r = await oa.chat.completions.create({ model, messages, temperature: 0, ...extra });
  return { text: r.choices[0].message.content ?? '', reasoning: r.choices[0].message.reasoning_content ?? '',
           finish: r.choices[0].finish_reason, usage: r.usage, message: r.choices[0].message };
}

// Every event of a streamed /v1/responses over raw fetch: the SSE framing as OpenAI sends it
// ("event: <type>" then one data line), sequence numbers 0, 1, 2, ...
async function rawStream(body) {
  const res = await fetch(`${URL_BASE}/v1/responses`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${API_KEY}` },
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
    assert.equal(data.sequence_number, i);
    return data;
  });
}

function messageText(r) {
  return r.output.filter((o) => o.type === 'message').flatMap((o) => o.content).map((c) => c.text).join('');
}

const think = process.env.RESPONSES_THINK === '1';
const tests = [];

tests.push(['model', async () => { model = await modelName(); }]);

if (think) {
  tests.push(['reasoning item: the opened <think> block is reasoning, whole and streamed', async () => {
    const N = 8;
    const r = await oa.responses.create({ model, input: 'hi', max_output_tokens: N, temperature: 0 });
    // The template opened <think> and eight random tokens did not close it: all of them are reasoning.
    assert.equal(r.status, 'incomplete');
    assert.deepEqual(r.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal(r.output.length, 1, JSON.stringify(r.output));
    const item = r.output[0];
    assert.equal(item.type, 'reasoning');
    assert.match(item.id, /^rs_[0-9a-f]{32}$/);
    assert.deepEqual(item.summary, []);
    assert.equal(item.content.length, 1);
    assert.equal(item.content[0].type, 'reasoning_text');
    assert.equal(r.output_text, '');
    assert.equal(r.usage.output_tokens, N);
    assert.equal(r.usage.output_tokens_details.reasoning_tokens, N);
    const c = await chat([{ role: 'user', content: 'hi' }], { max_completion_tokens: N });
    assert.equal(item.content[0].text, c.reasoning);
    assert.equal(c.text, '');
    const events = await rawStream({ model, input: 'hi', max_output_tokens: N, temperature: 0 });
    const deltas = events.filter((e) => e.type === 'response.reasoning_text.delta').map((e) => e.delta).join('');
    assert.equal(deltas, item.content[0].text);
    const done = events.find((e) => e.type === 'response.reasoning_text.done');
    assert.equal(done.text, item.content[0].text);
    assert.equal(events.at(-1).type, 'response.incomplete');
    assert.equal(events.at(-1).response.output[0].content[0].text, item.content[0].text);
    assert.ok(!events.some((e) => e.type.startsWith('response.output_text')), 'no message text');
    // A follow-up replays the cut-short turn as an assistant message carrying that reasoning.
    const r2 = await oa.responses.create({ model, previous_response_id: r.id, input: 'go on', max_output_tokens: 4,
                                           temperature: 0 });
    const c2 = await chat([{ role: 'user', content: 'hi' },
                           { role: 'assistant', content: '', reasoning_content: item.content[0].text },
                           { role: 'user', content: 'go on' }], { max_completion_tokens: 4 });
    assert.equal(r2.usage.input_tokens, c2.usage.prompt_tokens);
    assert.equal(r2.output[0].content[0].text, c2.reasoning);
  }]);

  tests.push(['structured output after an opened <think>: the schema holds the answer, not the reasoning', async () => {
    // Qwen3's `</think>` (151668), pushed up so the random model ends its reasoning at once; the
    // constraint must then let it out of the block and hold what follows to the schema. Before, the
    // grammar started at the first token, so the JSON was written inside the reasoning.
    const schema = { type: 'object', properties: { a: { type: 'boolean' } }, required: ['a'], additionalProperties: false };
    const c = await chat([{ role: 'user', content: 'hi' }], {
      max_completion_tokens: 40, logit_bias: { 151668: 100 },
      response_format: { type: 'json_schema', json_schema: { name: 'flag', schema, strict: true } } });
    assert.equal(c.finish, 'stop', JSON.stringify(c.message));
    assert.equal(c.reasoning, '');
    assert.ok(ajv.validate(schema, JSON.parse(c.text)), `${c.text}: ${ajv.errorsText()}`);
    // Without the push the random model keeps reasoning, and the JSON is not forced into it.
    const free = await chat([{ role: 'user', content: 'hi' }], {
      max_completion_tokens: 8, response_format: { type: 'json_object' } });
    assert.equal(free.text, '');
    assert.notEqual(free.reasoning.trimStart()[0], '{', free.reasoning);
  }]);
} else {
  tests.push(['plain create: the message equals chat completions on the same conversation', async () => {
    const N = 12;
    const r = await oa.responses.create({ model, input: 'Hello there', instructions: 'Be brief.', max_output_tokens: N,
                                          temperature: 0 });
    assert.equal(r.object, 'response');
    assert.match(r.id, /^resp_[0-9a-f]{32}$/);
    assert.equal(r.model, model);
    assert.equal(r.instructions, 'Be brief.');
    assert.equal(r.max_output_tokens, N);
    assert.equal(r.store, true);
    assert.equal(r.output[0].type, 'message');
    assert.equal(r.output[0].role, 'assistant');
    assert.match(r.output[0].id, /^msg_[0-9a-f]{32}$/);
    const c = await chat([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello there' }],
                         { max_completion_tokens: N });
    assert.equal(r.output_text, c.text);  // the SDK's output_text, from the message items
    assert.equal(r.usage.input_tokens, c.usage.prompt_tokens);
    assert.equal(r.usage.output_tokens, c.usage.completion_tokens);
    assert.equal(r.usage.total_tokens, r.usage.input_tokens + r.usage.output_tokens);
    assert.equal(r.status, c.finish === 'length' ? 'incomplete' : 'completed');
    assert.equal(r.output[0].status, r.status);
    // top_p reaches the sampler: a nucleus of one token at temperature 1 is the greedy choice.
    const nucleus = await oa.responses.create({ model, input: 'Hello there', instructions: 'Be brief.', max_output_tokens: N,
                                                temperature: 1, top_p: 1e-6 });
    assert.equal(nucleus.top_p, 1e-6);
    assert.equal(nucleus.output_text, c.text);
  }]);

  tests.push(['include message.output_text.logprobs: the message tokens\' logprobs as chat reports them, whole and streamed', async () => {
    const N = 10;
    const input = [{ role: 'user', content: 'Tell me about the sea.' }];
    const body = { model, input, max_output_tokens: N, temperature: 0, include: ['message.output_text.logprobs'],
                   top_logprobs: 3 };
    const r = await oa.responses.create(body);
    assert.equal(r.top_logprobs, 3);
    const part = r.output.find((o) => o.type === 'message').content[0];
    // The same conversation through chat completions (its logprobs are checked against the engine's
    // own distribution elsewhere): the same tokens, logprobs and alternatives.
    const c = await chat(input, { max_completion_tokens: N, logprobs: true, top_logprobs: 3 });
    assert.equal(part.text, c.text);
    const cr = await oa.chat.completions.create({ model, messages: input, temperature: 0, max_completion_tokens: N,
                                                  logprobs: true, top_logprobs: 3 });
    let want = cr.choices[0].logprobs.content;
    if (cr.choices[0].finish_reason === 'stop') want = want.filter((e) => e.bytes.length > 0);  // EOS makes no text
    assert.ok(want.length > 0);
    assert.deepEqual(part.logprobs, want);
    for (const e of part.logprobs) {
      assert.equal(e.top_logprobs.length, 3);
      assert.ok(e.logprob <= 0 && e.top_logprobs[0].logprob >= e.logprob - 1e-6);
    }
    assert.equal(Buffer.from(part.logprobs.flatMap((e) => e.bytes)).toString(), part.text);
    // top_logprobs 0: the chosen tokens only; without include, none (top_logprobs alone asks nothing).
    const zero = await oa.responses.create({ ...body, top_logprobs: 0 });
    assert.deepEqual(zero.output[0].content[0].logprobs, want.map((e) => ({ ...e, top_logprobs: [] })));
    const none = await oa.responses.create({ ...body, include: [] });
    assert.deepEqual(none.output[0].content[0].logprobs, []);
    assert.equal(none.output_text, part.text);
    // Streamed: the deltas' logprobs add up to the done event's and the final part's.
    const events = await rawStream(body);
    const deltas = events.filter((e) => e.type === 'response.output_text.delta');
    assert.deepEqual(deltas.flatMap((e) => e.logprobs), part.logprobs);
    assert.deepEqual(events.find((e) => e.type === 'response.output_text.done').logprobs, part.logprobs);
    assert.deepEqual(events.at(-1).response.output[0].content[0].logprobs, part.logprobs);
    // Kept with the stored response.
    assert.deepEqual((await oa.responses.retrieve(r.id)).output[0].content[0].logprobs, part.logprobs);
  }]);

  tests.push(['streaming: documented events in order; deltas add up to the whole response', async () => {
    const body = { model, input: 'Tell me a story', max_output_tokens: 10, temperature: 0 };
    const whole = await oa.responses.create(body);
    const events = [];
    for await (const e of await oa.responses.create({ ...body, stream: true })) events.push(e);
    const types = events.map((e) => e.type);
    assert.deepEqual(types.slice(0, 4), ['response.created', 'response.in_progress', 'response.output_item.added',
                                         'response.content_part.added']);
    assert.deepEqual(types.slice(-4), ['response.output_text.done', 'response.content_part.done',
                                       'response.output_item.done', `response.${whole.status}`]);
    assert.equal(events[0].response.status, 'in_progress');
    assert.deepEqual(events[0].response.output, []);
    events.forEach((e, i) => assert.equal(e.sequence_number, i));
    const text = events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('');
    assert.ok(types.filter((t) => t === 'response.output_text.delta').length >= 2, 'streamed in pieces');
    assert.equal(text, whole.output_text);
    assert.equal(events.find((e) => e.type === 'response.output_text.done').text, text);
    const last = events.at(-1).response;
    assert.equal(messageText(last), text);
    assert.deepEqual(last.usage, whole.usage);
    // The id in every item event is the item's.
    const itemId = events[2].item.id;
    for (const e of events.slice(3, -1)) assert.equal(e.item_id ?? e.item.id, itemId);
    // The framing on the wire: "event: <type>" lines matching the data, numbered from 0.
    const raw = await rawStream(body);
    assert.deepEqual(raw.map((e) => e.type), types);
  }]);

  tests.push(['multi-turn: previous_response_id continues the stored conversation (instructions not carried)', async () => {
    const r1 = await oa.responses.create({ model, input: 'Name a color.', instructions: 'One word answers.',
                                           max_output_tokens: 6, temperature: 0 });
    const r2 = await oa.responses.create({ model, previous_response_id: r1.id, input: 'And another?',
                                           max_output_tokens: 6, temperature: 0 });
    assert.equal(r2.previous_response_id, r1.id);
    assert.equal(r2.instructions, null);
    const turns = [{ role: 'user', content: 'Name a color.' }, { role: 'assistant', content: r1.output_text },
                   { role: 'user', content: 'And another?' }];
    const c = await chat(turns, { max_completion_tokens: 6 });
    assert.equal(r2.usage.input_tokens, c.usage.prompt_tokens);
    assert.equal(r2.output_text, c.text);
    // The same conversation sent as explicit items (an assistant output_text message) gives the same.
    const r3 = await oa.responses.create({ model, max_output_tokens: 6, temperature: 0, input: [
      { role: 'user', content: 'Name a color.' },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: r1.output_text, annotations: [] }] },
      { role: 'user', content: [{ type: 'input_text', text: 'And another?' }] }] });
    assert.equal(r3.usage.input_tokens, c.usage.prompt_tokens);
    assert.equal(r3.output_text, c.text);
    // A third turn chains through both.
    const r4 = await oa.responses.create({ model, previous_response_id: r2.id, input: 'Thanks', max_output_tokens: 4,
                                           temperature: 0 });
    const c4 = await chat([...turns, { role: 'assistant', content: r2.output_text }, { role: 'user', content: 'Thanks' }],
                          { max_completion_tokens: 4 });
    assert.equal(r4.usage.input_tokens, c4.usage.prompt_tokens);
    assert.equal(r4.output_text, c4.text);
  }]);

  tests.push(['truncation auto: the oldest turns go until the rest fits; disabled, context_length_exceeded', async () => {
    // Three user turns of ~1500 tokens each: together past the 4096-token context.
    const big = Array.from({ length: 1500 }, () => 'apple').join(' ');
    const input = [
      { role: 'user', content: big }, { role: 'assistant', content: 'ok' },
      { role: 'user', content: `${big} pear` }, { role: 'assistant', content: 'fine' },
      { role: 'user', content: `${big} end` },
    ];
    const count = async (messages) => {
      const t = await http('POST', '/tokenize', { model, messages });
      assert.equal(t.status, 200, t.text);
      return t.json;
    };
    const whole = await count(input);
    assert.ok(whole.count >= whole.max_model_len, `${whole.count} tokens should not fit ${whole.max_model_len}`);
    const fromSecond = (await count(input.slice(2))).count;
    const fromLast = (await count(input.slice(4))).count;
    for (const [maxOut, want] of [[4, fromSecond], [whole.max_model_len - fromSecond, fromSecond],
                                  [whole.max_model_len - fromSecond + 1, fromLast]]) {
      const r = await oa.responses.create({ model, input, max_output_tokens: maxOut, truncation: 'auto', temperature: 0 });
      assert.equal(r.truncation, 'auto');
      assert.equal(r.usage.input_tokens, want, `max_output_tokens ${maxOut}`);
      // The stored conversation keeps every item: input_items lists all five.
      assert.equal((await oa.responses.inputItems.list(r.id, { limit: 100 })).data.length, input.length);
      assert.equal(await oa.responses.inputTokens.count({ model, input, truncation: 'auto' }).then((c) => c.input_tokens),
                   fromSecond);
    }
    // Not truncated, input_tokens counts it all the same: what does not fit is what a client trims.
    assert.equal((await oa.responses.inputTokens.count({ model, input })).input_tokens, whole.count);
    // Disabled (the default), OpenAI's code for it, naming what does not fit.
    const e = assertOpenAIError(await http('POST', '/v1/responses', { model, input, max_output_tokens: 4 }), 400, 'input');
    assert.equal(e.code, 'context_length_exceeded');
    const m = assertOpenAIError(await http('POST', '/v1/responses', { model, input: input.slice(4),
                                                                      max_output_tokens: 4000 }), 400, 'max_output_tokens');
    assert.equal(m.code, 'context_length_exceeded');
    // One turn alone too long: nothing to drop, the same 400 with auto.
    const one = [{ role: 'user', content: `${big} ${big} ${big}` }];
    assert.equal(assertOpenAIError(await http('POST', '/v1/responses', { model, input: one, truncation: 'auto' }),
                                   400, 'input').code, 'context_length_exceeded');
    assertOpenAIError(await http('POST', '/v1/responses', { model, input: 'hi', truncation: 'middle' }), 400, 'truncation');
    // Chat completions say so in the same code.
    assert.equal(assertOpenAIError(await http('POST', '/v1/chat/completions', { model, messages: input }), 400,
                                   'messages').code, 'context_length_exceeded');
  }]);

  tests.push(['input_tokens: the SDK\'s responses.inputTokens.count equals chat\'s prompt_tokens, chains included', async () => {
    const one = await oa.responses.inputTokens.count({ model, input: 'Hello there', instructions: 'Be brief.' });
    assert.equal(one.object, 'response.input_tokens');
    const c = await chat([{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello there' }],
                         { max_completion_tokens: 1 });
    assert.equal(one.input_tokens, c.usage.prompt_tokens);
    // Through previous_response_id: the stored turn and its answer count, as a created response's usage does.
    const r1 = await oa.responses.create({ model, input: 'Name a color.', max_output_tokens: 3, temperature: 0 });
    const two = await oa.responses.inputTokens.count({ model, previous_response_id: r1.id, input: 'And another?' });
    const c2 = await chat([{ role: 'user', content: 'Name a color.' }, { role: 'assistant', content: r1.output_text },
                           { role: 'user', content: 'And another?' }], { max_completion_tokens: 1 });
    assert.equal(two.input_tokens, c2.usage.prompt_tokens);
    // Tools are part of the prompt the template writes.
    const tools = [{ type: 'function', name: 'get_weather', description: 'Weather in a city',
                     parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }];
    const withTools = await oa.responses.inputTokens.count({ model, input: 'Hello there', tools });
    const ct = await chat([{ role: 'user', content: 'Hello there' }], { max_completion_tokens: 1, tools: [
      { type: 'function', function: { name: 'get_weather', description: 'Weather in a city', parameters: tools[0].parameters } }] });
    assert.equal(withTools.input_tokens, ct.usage.prompt_tokens);
    // Not the route's fields (sampling, output length) and unknown ids are 400s naming them.
    for (const [extra, param] of [[{ temperature: 0 }, 'temperature'], [{ max_output_tokens: 4 }, 'max_output_tokens'],
                                  [{ previous_response_id: 'resp_nope' }, 'previous_response_id']])
      assertOpenAIError(await http('POST', '/v1/responses/input_tokens', { model, input: 'x', ...extra }), 400, param);
  }]);

  tests.push(['function tool round trip: a function_call item, then its function_call_output', async () => {
    const parameters = { type: 'object', properties: { timezone: { type: 'string', maxLength: 20 } },
                         required: ['timezone'], additionalProperties: false };
    const tools = [{ type: 'function', name: 'get_time', description: 'The time in a timezone', parameters, strict: true }];
    const ask = 'What time is it in Paris?';
    // reasoning.effort "none": Qwen3's template closes an empty <think> (enable_thinking false), so the
    // random model goes straight to the call the grammar requires.
    const noThink = { effort: 'none' };
    const r1 = await oa.responses.create({ model, input: ask, tools, tool_choice: { type: 'function', name: 'get_time' },
                                           max_output_tokens: 200, temperature: 0, reasoning: noThink,
                                           max_tool_calls: 1 });
    assert.equal(r1.status, 'completed', JSON.stringify(r1.output));
    // (It bounds built-in tools' calls, of which there are none: echoed, the function call still made.)
    assert.equal(r1.max_tool_calls, 1);
    const calls = r1.output.filter((o) => o.type === 'function_call');
    assert.equal(calls.length, 1);
    const fc = calls[0];
    assert.equal(fc.name, 'get_time');
    assert.match(fc.call_id, /^call_[A-Za-z0-9]{24}$/);
    assert.match(fc.id, /^fc_[0-9a-f]{32}$/);
    assert.equal(fc.status, 'completed');
    assert.ok(ajv.validate(parameters, JSON.parse(fc.arguments)), `${fc.arguments}: ${ajv.errorsText()}`);
    assert.deepEqual(r1.tools.map((t) => t.name), ['get_time']);
    // The tool's answer goes back through previous_response_id; the prompt equals chat's with the same turns.
    assert.equal(r1.reasoning.effort, 'none');
    assert.ok(!r1.output.some((o) => o.type === 'reasoning'));
    const r2 = await oa.responses.create({ model, previous_response_id: r1.id, tools, max_output_tokens: 8, temperature: 0,
                                           input: [{ type: 'function_call_output', call_id: fc.call_id, output: '{"time": "12:00"}' }] });
    const reasoning = r1.output.filter((o) => o.type === 'reasoning').map((o) => o.content[0].text).join('');
    const before = r1.output.filter((o) => o.type === 'message').map((o) => o.content[0].text).join('');
    const assistant = { role: 'assistant', content: before,
                        tool_calls: [{ id: fc.call_id, type: 'function', function: { name: fc.name, arguments: fc.arguments } }] };
    if (reasoning) assistant.reasoning_content = reasoning;
    const c = await chat([{ role: 'user', content: ask }, assistant,
                          { role: 'tool', tool_call_id: fc.call_id, content: '{"time": "12:00"}' }],
                         { max_completion_tokens: 8, tools: tools.map(({ type, ...f }) => ({ type, function: f })) });
    assert.equal(r2.usage.input_tokens, c.usage.prompt_tokens);
    assert.equal(r2.output_text, c.text);
    // Streamed, the call arrives as output_item.added -> arguments delta/done -> output_item.done.
    const events = await rawStream({ model, input: ask, tools, tool_choice: 'required', max_output_tokens: 200, temperature: 0,
                                     reasoning: noThink });
    const added = events.find((e) => e.type === 'response.output_item.added' && e.item.type === 'function_call');
    assert.ok(added, events.map((e) => e.type).join(' '));
    const done = events.find((e) => e.type === 'response.function_call_arguments.done');
    assert.equal(done.item_id, added.item.id);
    assert.equal(events.filter((e) => e.type === 'response.function_call_arguments.delta' && e.item_id === added.item.id)
      .map((e) => e.delta).join(''), done.arguments);
    const final = events.at(-1).response.output.find((o) => o.type === 'function_call');
    assert.equal(final.arguments, done.arguments);
    assert.ok(ajv.validate(parameters, JSON.parse(done.arguments)));
  }]);

  tests.push(['text.format: json_schema output follows the schema in its key order; json_object parses', async () => {
    const schema = { type: 'object', properties: { name: { type: 'string', maxLength: 12 },
                                                  age: { type: 'integer', minimum: 0, maximum: 120 } },
                     required: ['name', 'age'], additionalProperties: false };
    const r = await oa.responses.create({ model, input: 'Describe a person as JSON', max_output_tokens: 80, temperature: 0,
                                          text: { format: { type: 'json_schema', name: 'person', schema, strict: true } } });
    assert.equal(r.status, 'completed', r.output_text);
    const v = JSON.parse(r.output_text);
    assert.ok(ajv.validate(schema, v), ajv.errorsText());
    assert.deepEqual(Object.keys(v), ['name', 'age']);
    assert.equal(r.text.format.type, 'json_schema');
    assert.equal(r.text.format.name, 'person');
    const j = await oa.responses.create({ model, input: 'JSON please', max_output_tokens: 60, temperature: 0,
                                          text: { format: { type: 'json_object' } } });
    if (j.status === 'completed') assert.equal(typeof JSON.parse(j.output_text), 'object');
  }]);

  tests.push([`store: GET and DELETE, store false, the oldest of ${BOUND} evicted, other tenants see nothing`, async () => {
    const made = [];
    for (let i = 0; i <= BOUND; i++)
      made.push(await oa.responses.create({ model, input: `turn ${i}`, max_output_tokens: 1, temperature: 0 }));
    // The first is gone (bound BOUND, oldest first); the others are kept as returned.
    assertOpenAIError(await http('GET', `/v1/responses/${made[0].id}`), 404, 'response_id');
    const gone = await http('POST', '/v1/responses', { model, input: 'x', previous_response_id: made[0].id, max_output_tokens: 1 });
    assert.equal(assertOpenAIError(gone, 400, 'previous_response_id').code, 'previous_response_not_found');
    for (const r of made.slice(1)) {
      const got = await oa.responses.retrieve(r.id);
      assert.equal(got.id, r.id);
      assert.deepEqual(got.output, r.output);
      assert.deepEqual(got.usage, r.usage);
    }
    if (OTHER_KEY) {  // another API key's caller cannot read, continue or delete them
      const other = { Authorization: `Bearer ${OTHER_KEY}` };
      const last = made.at(-1).id;
      assertOpenAIError(await http('GET', `/v1/responses/${last}`, undefined, other), 404);
      assertOpenAIError(await http('DELETE', `/v1/responses/${last}`, undefined, other), 404);
      assertOpenAIError(await http('POST', '/v1/responses', { input: 'x', previous_response_id: last, max_output_tokens: 1 },
                                   other), 400, 'previous_response_id');
    }
    const unstored = await oa.responses.create({ model, input: 'x', store: false, max_output_tokens: 1 });
    assert.equal(unstored.store, false);
    assertOpenAIError(await http('GET', `/v1/responses/${unstored.id}`), 404);
    const del = await http('DELETE', `/v1/responses/${made.at(-1).id}`);
    assert.equal(del.status, 200, del.text);
    assert.deepEqual(del.json, { id: made.at(-1).id, object: 'response', deleted: true });
    assertOpenAIError(await http('GET', `/v1/responses/${made.at(-1).id}`), 404);
    assertOpenAIError(await http('DELETE', `/v1/responses/${made.at(-1).id}`), 404);
    assertOpenAIError(await http('GET', `/v1/responses/${made[1].id}?stream=true`), 400, 'stream');
  }]);

  tests.push(['input_items: the items a response was made from, in order, paged by limit / after / before', async () => {
    // Four input items of the documented kinds, one with the client's own id; instructions are a field
    // of the Response, not an item (OpenAI lists only `input`).
    const input = [
      { role: 'developer', content: 'Be nice.' },
      { id: 'msg_from_the_client', role: 'user', content: 'Name a color.' },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Blue', annotations: [] }] },
      { role: 'user', content: [{ type: 'input_text', text: 'Another?' }, { type: 'input_text', text: ' Please.' }] }];
    // What OpenAI's reference says each comes back as: content as parts, a status, an id.
    const want = [
      { type: 'message', role: 'developer', content: [{ type: 'input_text', text: 'Be nice.' }], status: 'completed' },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Name a color.' }], status: 'completed' },
      { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Blue', annotations: [] }],
        status: 'completed' },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Another?' },
                                                 { type: 'input_text', text: ' Please.' }], status: 'completed' }];
    const r1 = await oa.responses.create({ model, input, instructions: 'One word answers.', max_output_tokens: 3,
                                           temperature: 0 });
    const asc = await oa.responses.inputItems.list(r1.id, { order: 'asc' });
    assert.deepEqual(asc.data.map(({ id, ...rest }) => rest), want);
    assert.equal(asc.data[1].id, 'msg_from_the_client');
    for (const i of [0, 2, 3]) assert.match(asc.data[i].id, /^msg_[0-9a-f]{32}$/);
    assert.equal(new Set(asc.data.map((x) => x.id)).size, 4);
    const raw = await http('GET', `/v1/responses/${r1.id}/input_items?order=asc`);
    assert.equal(raw.status, 200, raw.text);
    assert.deepEqual(raw.json, { object: 'list', data: asc.data, first_id: asc.data[0].id, last_id: asc.data[3].id,
                                 has_more: false });
    // The default order is desc (newest first); ids are stable from one call to the next.
    const desc = await oa.responses.inputItems.list(r1.id);
    assert.deepEqual(desc.data, [...asc.data].reverse());
    // Pages: limit 3 leaves one; `after` the page's last id gives it; the client's iterator walks all.
    const p1 = await http('GET', `/v1/responses/${r1.id}/input_items?limit=3&order=asc`);
    assert.deepEqual(p1.json.data, asc.data.slice(0, 3));
    assert.equal(p1.json.has_more, true);
    assert.equal(p1.json.last_id, asc.data[2].id);
    const p2 = await oa.responses.inputItems.list(r1.id, { limit: 3, order: 'asc', after: p1.json.last_id });
    assert.deepEqual(p2.data, asc.data.slice(3));
    assert.equal(p2.has_more, false);
    const walked = [];
    for await (const item of oa.responses.inputItems.list(r1.id, { limit: 1 })) walked.push(item);
    assert.deepEqual(walked, desc.data);
    const mid = await oa.responses.inputItems.list(r1.id, { limit: 1, after: desc.data[1].id });
    assert.deepEqual(mid.data, [desc.data[2]]);
    assert.equal(mid.has_more, true);
    // `before` (in the 4.x client's parameters): the items just before it in the chosen order.
    const back = await oa.responses.inputItems.list(r1.id, { order: 'asc', before: asc.data[3].id, limit: 2 });
    assert.deepEqual(back.data, asc.data.slice(1, 3));
    assert.equal(back.has_more, true);
    // include: image URLs are honoured (none here: the same items); what is never kept is a 400 naming it.
    const inc = await oa.responses.inputItems.list(r1.id, { order: 'asc', include: ['message.input_image.image_url'] });
    assert.deepEqual(inc.data, asc.data);

    // A follow-up's input items are the whole conversation it continued: r1's items (same ids), r1's
    // output message (its id) and the new input.
    const r2 = await oa.responses.create({ model, previous_response_id: r1.id, input: 'Thanks', max_output_tokens: 2,
                                           temperature: 0 });
    const chain = await oa.responses.inputItems.list(r2.id, { order: 'asc' });
    const out = r1.output.find((o) => o.type === 'message');
    assert.deepEqual(chain.data.slice(0, 4), asc.data);
    assert.deepEqual(chain.data[4], { id: out.id, type: 'message', role: 'assistant', status: 'completed',
                                      content: [{ type: 'output_text', text: r1.output_text, annotations: [] }] });
    assert.deepEqual(chain.data.slice(5).map(({ id, ...rest }) => rest),
                     [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Thanks' }], status: 'completed' }]);
    assert.equal(chain.data.length, 6);
    // An item id used twice in one conversation is refused, as OpenAI does.
    assertOpenAIError(await http('POST', '/v1/responses', { model, previous_response_id: r1.id, max_output_tokens: 1,
                                                            input: [{ id: 'msg_from_the_client', role: 'user', content: 'x' }] }),
                      400, 'input');

    // Bad queries: 400s naming the parameter; unknown, unstored, deleted and other tenants' ids: 404.
    const q = (s) => http('GET', `/v1/responses/${r1.id}/input_items?${s}`);
    for (const [s, param] of [['limit=0', 'limit'], ['limit=101', 'limit'], ['limit=ten', 'limit'], ['limit=2.5', 'limit'],
                              ['order=up', 'order'], ['after=msg_nope', 'after'], ['before=msg_nope', 'before'],
                              ['include[]=reasoning.encrypted_content', 'include'], ['include=file_search_call.results', 'include'],
                              ['include[]=everything', 'include'], ['stream=true', 'stream']])
      assertOpenAIError(await q(s), 400, param);
    await assert.rejects(oa.responses.inputItems.list(r1.id, { include: ['message.output_text.logprobs'] }),
                         (e) => e.status === 400 && e.param === 'include');
    const unknown = assertOpenAIError(await http('GET', '/v1/responses/resp_00000000000000000000000000000000/input_items'),
                                      404, 'response_id');
    assert.equal(unknown.code, 'response_not_found');
    await assert.rejects(oa.responses.inputItems.list('resp_nope'), (e) => e.status === 404);
    if (OTHER_KEY)
      assertOpenAIError(await http('GET', `/v1/responses/${r1.id}/input_items`, undefined,
                                   { Authorization: `Bearer ${OTHER_KEY}` }), 404, 'response_id');
    const unstored = await oa.responses.create({ model, input: 'x', store: false, max_output_tokens: 1 });
    assertOpenAIError(await http('GET', `/v1/responses/${unstored.id}/input_items`), 404);
    assert.equal((await http('DELETE', `/v1/responses/${r2.id}`)).status, 200);
    assertOpenAIError(await http('GET', `/v1/responses/${r2.id}/input_items`), 404);
    if (API_KEY !== 'none')
      assertOpenAIError(await http('GET', `/v1/responses/${r1.id}/input_items`, undefined, { Authorization: '' }), 401);
  }]);

  tests.push(['bad input: 400s naming the field (unsupported ones too), 401 without a key, then service goes on', async () => {
    const ok = { model, input: 'x', max_output_tokens: 2 };
    const cases = [
      [{ ...ok, foo: 1 }, 'foo'],
      [{ model, max_output_tokens: 2 }, 'input'],
      [{ ...ok, input: 5 }, 'input'],
      [{ ...ok, input: [] }, 'input'],
      [{ ...ok, input: [{ role: 'bot', content: 'x' }] }, 'input[0].role'],
      [{ ...ok, input: [{ role: 'user' }] }, 'input[0].content'],
      [{ ...ok, input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'f' }] }] }, 'input[0].content[0].type'],
      [{ ...ok, input: [{ type: 'item_reference', id: 'msg_1' }] }, 'input[0].type'],
      [{ ...ok, input: [{ type: 'function_call_output', output: 'x' }] }, 'input[0].call_id'],
      [{ ...ok, input: [{ type: 'reasoning', summary: [], encrypted_content: 'zz' }] }, 'input[0].encrypted_content'],
      [{ ...ok, input: [{ role: 'user', content: 'x', extra: 1 }] }, 'input[0].extra'],
      [{ ...ok, previous_response_id: 'resp_00000000000000000000000000000000' }, 'previous_response_id'],
      [{ ...ok, tools: [{ type: 'web_search_preview' }] }, 'tools[0].type'],
      [{ ...ok, tools: [{ type: 'function', name: 'bad name!' }] }, 'tools[0].name'],
      [{ ...ok, tools: [{ type: 'function', name: 'f' }], tool_choice: { type: 'file_search' } }, 'tool_choice'],
      [{ ...ok, tool_choice: 'required' }, 'tool_choice'],
      [{ ...ok, text: { format: { type: 'json_schema', name: 'x' } } }, 'text.format.schema'],
      [{ ...ok, text: { format: { type: 'json_schema', name: 'x', schema: { type: 'strin' } } } }, 'text.format.schema'],
      [{ ...ok, text: { format: { type: 'xml' } } }, 'text.format.type'],
      [{ ...ok, text: { verbosity: 'high' } }, 'text.verbosity'],
      [{ ...ok, reasoning: { effort: 'high' } }, 'reasoning.effort'],
      [{ ...ok, reasoning: { summary: 'auto' } }, 'reasoning.summary'],
      [{ ...ok, include: ['reasoning.encrypted_content'] }, 'include[0]'],
      [{ ...ok, background: true, store: false }, 'background'],
      [{ ...ok, truncation: 5 }, 'truncation'],
      [{ ...ok, top_logprobs: 21 }, 'top_logprobs'],
      [{ ...ok, top_logprobs: 'three' }, 'top_logprobs'],
      [{ ...ok, include: ['message.output_text.logprobs', 'file_search_call.results'] }, 'include[1]'],
      [{ ...ok, conversation: 5 }, 'conversation'],
      [{ ...ok, max_tool_calls: 0 }, 'max_tool_calls'],
      [{ ...ok, max_tool_calls: 'two' }, 'max_tool_calls'],
      [{ ...ok, stream_options: { include_obfuscation: false } }, 'stream_options'],
      [{ ...ok, temperature: 3 }, 'temperature'],
      [{ ...ok, max_output_tokens: 1000000 }, 'max_output_tokens'],
      [{ ...ok, store: 'yes' }, 'store'],
      // OpenAI's metadata: at most 16 string pairs, keys <= 64 characters, values <= 512 (it is echoed
      // and stored, so any JSON here grew the store's memory tens of times its charged size).
      [{ ...ok, metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, 'metadata'],
      [{ ...ok, metadata: { ['k'.repeat(65)]: 'v' } }, 'metadata'],
      [{ ...ok, metadata: { a: [1, 2, {}] } }, 'metadata.a'],
      [{ ...ok, metadata: { a: 'é'.repeat(513) } }, 'metadata.a'],
    ];
    for (const [body, param] of cases) {
      const r = await http('POST', '/v1/responses', body);
      assertOpenAIError(r, 400, param);
    }
    // An image by file id on this text model: refused before the file is read as an image.
    const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64)]);
    const vision = await oa.files.create({ file: await toFile(png, 'x.png'), purpose: 'vision' });
    const noImages = await http('POST', '/v1/responses', { ...ok, input: [{ role: 'user',
      content: [{ type: 'input_image', file_id: vision.id }] }] });
    assert.match(assertOpenAIError(noImages, 400, 'input').message, /takes no images/);
    await oa.files.delete(vision.id);
    assertOpenAIError(await http('POST', '/v1/responses', { ...ok, model: 'gpt-4o' }), 404, 'model');
    assertOpenAIError(await http('POST', '/v1/responses', '{"input": ', {}), 400);
    // Behind --api-key like every route.
    assertOpenAIError(await http('POST', '/v1/responses', ok, { Authorization: '' }), 401);
    assertOpenAIError(await http('GET', '/v1/responses/resp_x', undefined, { Authorization: 'Bearer wrong' }), 401);
    await assert.rejects(client({ apiKey: 'wrong' }).responses.create(ok), (e) => e.status === 401);
    const r = await oa.responses.create(ok);
    assert.ok(['completed', 'incomplete'].includes(r.status));
    // The limits themselves are allowed: 16 keys, 64-character keys, 512-character values (characters, not bytes).
    const full = Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${i}`, 'v']));
    full['ключ'.padEnd(64, 'й')] = 'é'.repeat(512);
    const m = await oa.responses.create({ ...ok, metadata: full });
    assert.deepEqual(m.metadata, full);
    assert.deepEqual((await oa.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 1,
                                                         metadata: full, store: false })).object, 'chat.completion');
    assertOpenAIError(await http('POST', '/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }],
                                                                   max_tokens: 1, metadata: { n: 5 } }), 400, 'metadata.n');
    // Cancel: a response that did not run in the background cannot be cancelled (400, not a
    // missing route), and an unknown or another key's response is a 404 as for GET.
    const c = await http('POST', `/v1/responses/${r.id}/cancel`);
    assert.equal(assertOpenAIError(c, 400, 'response_id').code, 'response_not_cancellable');
    assert.equal(assertOpenAIError(await http('POST', '/v1/responses/resp_nothere/cancel'), 404).code, 'response_not_found');
    await assert.rejects(oa.responses.cancel(r.id), (e) => e.status === 400);
  }]);
}

run(tests);
