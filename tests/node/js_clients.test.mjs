// The newest JavaScript clients against the real `dpserve serve`: the OpenAI SDK (v7: create, the
// stream / parse helpers, runTools, responses.parse), the Vercel AI SDK (`ai` with
// @ai-sdk/openai-compatible and @ai-sdk/openai: generateText, streamText, generateObject, tools,
// the Responses provider) and LangChain (ChatOpenAI: invoke, stream, withStructuredOutput, bindTools).
//
// JS_CLIENTS=text (stories260K, --chat-template chatml.jinja): texts against the offline generator
// and the completion of the template's rendering, token counts against the CLI's tokenizer.
// JS_CLIENTS=structured (qwen3-tiny, random weights, --tool-call-parser qwen3, chatml.jinja): zod
// schemas as the clients send them (z.email(), z.uuid(), z.iso.date() become "format" beside
// "pattern"; z.record() "propertyNames"), every output checked by zod in the client and by ajv.
import { createRequire } from 'node:module';

import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { tool as lcTool } from '@langchain/core/tools';
import { ChatOpenAI } from '@langchain/openai';
import { generateObject, generateText, Output, stepCountIs, streamText, tool } from 'ai';
import OpenAI from 'openai';
import { zodFunction, zodResponseFormat, zodTextFormat } from 'openai/helpers/zod';
import { z } from 'zod';

import { API_KEY, URL_BASE, assert, modelName, offlineGreedy, run, tokenize } from './e2e_util.mjs';

const require = createRequire(import.meta.url);
const Ajv2020 = require('ajv/dist/2020').default;
const addFormats = require('ajv-formats').default;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);

const MODE = process.env.JS_CLIENTS ?? 'text';
const BASE = `${URL_BASE}/v1`;
const oa = new OpenAI({ baseURL: BASE, apiKey: API_KEY, maxRetries: 0, timeout: 120000 });
const compat = createOpenAICompatible({ name: 'dpserve', baseURL: BASE, apiKey: API_KEY, includeUsage: true,
                                        supportsStructuredOutputs: true });
const aiOpenAI = createOpenAI({ baseURL: BASE, apiKey: API_KEY });
const lc = (model, extra = {}) => new ChatOpenAI({ model, apiKey: API_KEY, maxRetries: 0, timeout: 120000,
                                                   configuration: { baseURL: BASE }, ...extra });
let model;

// ---- text: stories260K under the ChatML template ----
const MESSAGES = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Tell me about a cat' }];
const RENDERED = '<|im_start|>system\nYou tell stories.<|im_end|>\n<|im_start|>user\nTell me about a cat<|im_end|>\n<|im_start|>assistant\n';
const PROMPT = 'Once upon a time, there was a little';
// The AI SDK's completion models write a chat prompt as "user:\n...\n\nassistant:\n" and stop at "\nuser:".
const AI_COMPLETION_PROMPT = `user:\n${PROMPT}\n\nassistant:\n`;
const N = 24;
let chatWant;  // the greedy chat answer: the completion of RENDERED's tokens
if (MODE === 'text') {
  // The offline answers first: they block the event loop (e2e_util.mjs).
  tokenize(RENDERED, false), tokenize(PROMPT), tokenize(AI_COMPLETION_PROMPT);
  offlineGreedy(PROMPT, N), offlineGreedy(AI_COMPLETION_PROMPT, N);
}

const textTests = [
  ['openai v7: models.list, completion equals the offline generator, streamed too', async () => {
    const list = [];
    for await (const m of oa.models.list()) list.push(m);
    assert.equal(list.length, 1);
    model = list[0].id;
    const r = await oa.completions.create({ model, prompt: PROMPT, max_tokens: N, temperature: 0 });
    assert.equal(r.choices[0].text, offlineGreedy(PROMPT, N));
    assert.equal(r.usage.prompt_tokens, tokenize(PROMPT).length);
    const stream = await oa.completions.create({ model, prompt: PROMPT, max_tokens: N, temperature: 0, stream: true,
                                                 stream_options: { include_usage: true } });
    let text = '';
    let usage = null;
    for await (const ch of stream) {
      if (ch.usage) usage = ch.usage;
      for (const c of ch.choices) text += c.text;
    }
    assert.equal(text, offlineGreedy(PROMPT, N));
    assert.equal(usage.prompt_tokens, tokenize(PROMPT).length);
  }],
  ['openai v7: chat create, create(stream) and the stream helper agree with the rendered prompt', async () => {
    const comp = await oa.completions.create({ model, prompt: tokenize(RENDERED, false), max_tokens: N, temperature: 0 });
    chatWant = comp.choices[0].text;
    const r = await oa.chat.completions.create({ model, messages: MESSAGES, max_completion_tokens: N, temperature: 0 });
    assert.equal(r.choices[0].message.content, chatWant);
    assert.equal(r.usage.prompt_tokens, tokenize(RENDERED, false).length);
    const helper = oa.chat.completions.stream({ model, messages: MESSAGES, max_tokens: N, temperature: 0,
                                                stream_options: { include_usage: true } });
    let deltas = '';
    helper.on('content', (d) => { deltas += d; });
    const final = await helper.finalChatCompletion();
    assert.equal(final.choices[0].message.content, chatWant);
    assert.equal(deltas, chatWant);
    assert.equal(final.usage.prompt_tokens, tokenize(RENDERED, false).length);
    assert.equal(final.choices[0].finish_reason, comp.choices[0].finish_reason);
  }],
  ['openai v7: a 400 is a BadRequestError naming the parameter; a 404 model a NotFoundError', async () => {
    await assert.rejects(oa.chat.completions.create({ model, messages: MESSAGES, max_tokens: -1 }),
                         (e) => e instanceof OpenAI.BadRequestError && e.param === 'max_tokens' && e.type === 'invalid_request_error');
    await assert.rejects(oa.chat.completions.create({ model: 'no-such-model', messages: MESSAGES }),
                         (e) => e instanceof OpenAI.NotFoundError && e.param === 'model');
  }],
  ['AI SDK (openai-compatible): generateText and streamText give the chat answer and its usage', async () => {
    const m = compat.chatModel(model);
    const system = MESSAGES[0].content;
    const prompt = MESSAGES[1].content;
    const g = await generateText({ model: m, system, prompt, maxOutputTokens: N, temperature: 0, maxRetries: 0 });
    assert.equal(g.text, chatWant);
    assert.equal(g.usage.inputTokens, tokenize(RENDERED, false).length);
    const s = streamText({ model: m, system, prompt, maxOutputTokens: N, temperature: 0, maxRetries: 0 });
    let text = '';
    for await (const d of s.textStream) text += d;
    assert.equal(text, chatWant);
    assert.equal((await s.usage).inputTokens, tokenize(RENDERED, false).length);
  }],
  ['AI SDK (@ai-sdk/openai): completion model equals the offline generator up to its stop', async () => {
    const want = offlineGreedy(AI_COMPLETION_PROMPT, N).split('\nuser:')[0];
    const g = await generateText({ model: aiOpenAI.completion(model), prompt: PROMPT, maxOutputTokens: N, temperature: 0, maxRetries: 0 });
    assert.equal(g.text, want);
    assert.equal(g.usage.inputTokens, tokenize(AI_COMPLETION_PROMPT).length);
    const s = streamText({ model: aiOpenAI.completion(model), prompt: PROMPT, maxOutputTokens: N, temperature: 0, maxRetries: 0 });
    let text = '';
    for await (const d of s.textStream) text += d;
    assert.equal(text, want);
  }],
  ['AI SDK: an error status reaches the caller as APICallError with the server message', async () => {
    await assert.rejects(generateText({ model: compat.chatModel('no-such-model'), prompt: 'x', maxRetries: 0 }),
                         (e) => e.statusCode === 404 && /no-such-model/.test(e.message));
  }],
  ['LangChain ChatOpenAI: invoke and stream give the chat answer and usage', async () => {
    const chat = lc(model, { temperature: 0, maxTokens: N });
    const msgs = [['system', MESSAGES[0].content], ['human', MESSAGES[1].content]];
    const r = await chat.invoke(msgs);
    assert.equal(r.content, chatWant);
    assert.equal(r.usage_metadata.input_tokens, tokenize(RENDERED, false).length);
    let text = '';
    let usage = null;
    for await (const ch of await chat.stream(msgs)) {
      text += ch.content;
      if (ch.usage_metadata) usage = ch.usage_metadata;
    }
    assert.equal(text, chatWant);
    assert.equal(usage.input_tokens, tokenize(RENDERED, false).length);
  }],
];

// ---- structured: zod schemas the way the clients send them ----
// Bounded strings everywhere (enum, formats), so a random model finishes well within max_tokens.
const Contact = z.object({
  name: z.enum(['Ann', 'Bob']),
  email: z.email(),           // {"format": "email", "pattern": zod's email regex}
  id: z.uuid(),               // {"format": "uuid", "pattern": ...}
  born: z.iso.date(),         // {"format": "date", "pattern": ...}
  code: z.string().regex(/^[A-Z]{2}$/).min(2),  // "pattern" beside "minLength"
});
const Scores = z.object({ scores: z.record(z.string(), z.int().min(0).max(9)) });
// zod's own formats (each a "format" beside zod's "pattern", or a lookahead pattern the format
// implies), an integer step and a record with enum keys; lengths keep a random model short.
const Device = z.object({
  id: z.cuid().max(12),
  ip: z.ipv6(),
  phone: z.e164(),
  host: z.hostname().max(20),
  every: z.iso.duration(),
  tag: z.string().startsWith('X-').max(6),
  port: z.int().min(0).max(100).multipleOf(5),
  ulid: z.ulid(),
});
const Grades = z.object({ grades: z.record(z.enum(['math', 'art']), z.int().min(1).max(6)) });
const MAX = 400;

// Ajv (draft 2020-12 with ajv-formats) validates against the schema the client sent: the schema
// from zod itself, not our reading of it.
function checkWithAjv(zodSchema, value) {
  const js = z.toJSONSchema(zodSchema);
  const ok = ajv.validate(js, value);
  assert.ok(ok, `ajv: ${JSON.stringify(ajv.errors)} for ${JSON.stringify(value)}`);
}

const structuredTests = [
  ['openai v7: chat.completions.parse with zodResponseFormat (formats with patterns)', async () => {
    model = await modelName();
    const r = await oa.chat.completions.parse({ model, messages: [{ role: 'user', content: 'contact' }], max_tokens: MAX,
                                                response_format: zodResponseFormat(Contact, 'contact') });
    assert.equal(r.choices[0].finish_reason, 'stop', r.choices[0].message.content);
    const p = r.choices[0].message.parsed;
    assert.ok(p, 'parsed by the SDK');
    assert.deepEqual(Contact.parse(p), p);
    checkWithAjv(Contact, p);
  }],
  ['openai v7: the stream helper parses the same kind of object', async () => {
    const st = oa.chat.completions.stream({ model, messages: [{ role: 'user', content: 'contact' }], max_tokens: MAX,
                                           response_format: zodResponseFormat(Contact, 'contact'), stream_options: { include_usage: true } });
    const f = await st.finalChatCompletion();
    assert.equal(f.choices[0].finish_reason, 'stop');
    checkWithAjv(Contact, f.choices[0].message.parsed);
    assert.ok(f.usage.completion_tokens > 0);
  }],
  ['openai v7: runTools calls a zodFunction with arguments that validate', async () => {
    const calls = [];
    const runner = oa.chat.completions.runTools({
      model, messages: [{ role: 'user', content: 'look up' }], max_tokens: MAX,
      tools: [zodFunction({ name: 'lookup', parameters: Contact, function: (args) => { calls.push(args); return 'done'; } })],
      tool_choice: { type: 'function', function: { name: 'lookup' } },
    }, { maxChatCompletions: 1 });
    await runner.done().catch(() => {});  // one completion allowed: the runner stops after the call
    assert.ok(calls.length >= 1, 'the tool ran');
    for (const a of calls) checkWithAjv(Contact, a);
  }],
  ['openai v7: responses.parse with zodTextFormat', async () => {
    const r = await oa.responses.parse({ model, input: 'contact', max_output_tokens: MAX, text: { format: zodTextFormat(Contact, 'contact') } });
    assert.equal(r.status, 'completed', JSON.stringify(r.incomplete_details));
    checkWithAjv(Contact, r.output_parsed);
  }],
  ['z.record (propertyNames {"type": "string"}) is accepted and enforced', async () => {
    // The openai helper refuses records in strict mode client side; zod's own JSON Schema goes as is.
    const c = await oa.chat.completions.create({ model, messages: [{ role: 'user', content: 'scores' }], max_tokens: MAX,
      response_format: { type: 'json_schema', json_schema: { name: 'scores', schema: z.toJSONSchema(Scores) } } });
    const fr = c.choices[0].finish_reason;
    assert.ok(fr === 'stop' || fr === 'length', fr);
    if (fr === 'stop') checkWithAjv(Scores, JSON.parse(c.choices[0].message.content));
  }],
  ['openai v7: zodResponseFormat with zod formats (cuid, ipv6, e164, hostname, duration, startsWith, ulid) and multipleOf', async () => {
    const r = await oa.chat.completions.parse({ model, messages: [{ role: 'user', content: 'device' }], max_tokens: MAX,
                                                response_format: zodResponseFormat(Device, 'device') });
    assert.equal(r.choices[0].finish_reason, 'stop', r.choices[0].message.content);
    const p = r.choices[0].message.parsed;
    assert.deepEqual(Device.parse(p), p);
    checkWithAjv(Device, p);
  }],
  ['z.record with enum keys (propertyNames {"enum": [...]}) is accepted and enforced', async () => {
    const c = await oa.chat.completions.create({ model, messages: [{ role: 'user', content: 'grades' }], max_tokens: MAX,
      response_format: { type: 'json_schema', json_schema: { name: 'grades', schema: z.toJSONSchema(Grades) } } });
    assert.equal(c.choices[0].finish_reason, 'stop', c.choices[0].message.content);
    const v = JSON.parse(c.choices[0].message.content);
    assert.deepEqual(Grades.parse(v), v);
    checkWithAjv(Grades, v);
  }],
  ['AI SDK: generateObject (openai-compatible) and Output.object (@ai-sdk/openai chat)', async () => {
    const g = await generateObject({ model: compat.chatModel(model), schema: Contact, prompt: 'contact', maxOutputTokens: MAX, maxRetries: 0 });
    checkWithAjv(Contact, g.object);
    const o = await generateText({ model: aiOpenAI.chat(model), output: Output.object({ schema: Contact }), prompt: 'contact',
                                   maxOutputTokens: MAX, maxRetries: 0 });
    checkWithAjv(Contact, o.output);
  }],
  ['AI SDK: a tool call and its result in a second step, chat and Responses providers', async () => {
    for (const m of [compat.chatModel(model), aiOpenAI.responses(model)]) {
      const seen = [];
      const lookup = tool({ description: 'look up a contact', inputSchema: Contact,
                            execute: async (input) => { seen.push(input); return 'found'; } });
      const r = await generateText({ model: m, tools: { lookup }, toolChoice: { type: 'tool', toolName: 'lookup' }, prompt: 'look up',
                                     maxOutputTokens: MAX, stopWhen: stepCountIs(2), maxRetries: 0 });
      assert.equal(r.steps.length, 2, `${m.provider}: two steps`);
      assert.equal(r.steps[0].finishReason, 'tool-calls');
      assert.ok(seen.length >= 1);
      for (const a of seen) checkWithAjv(Contact, a);
    }
  }],
  ['AI SDK: streamText with a tool streams the call', async () => {
    const lookup = tool({ description: 'look up', inputSchema: Contact, execute: async () => 'found' });
    // A named tool: exactly one call (with 'required' a random model may keep calling until max_tokens).
    const s = streamText({ model: compat.chatModel(model), tools: { lookup }, toolChoice: { type: 'tool', toolName: 'lookup' }, prompt: 'look up',
                           maxOutputTokens: MAX, maxRetries: 0 });
    const types = new Set();
    for await (const p of s.fullStream) {
      types.add(p.type);
      if (p.type === 'error') throw p.error;
    }
    assert.ok(types.has('tool-call') && types.has('tool-result'), [...types].join(','));
    for (const c of await s.toolCalls) checkWithAjv(Contact, c.input);
  }],
  ['LangChain: withStructuredOutput (json_schema and function calling) and bindTools', async () => {
    const chat = lc(model, { maxTokens: MAX });
    for (const method of ['jsonSchema', 'functionCalling']) {
      const v = await chat.withStructuredOutput(Contact, { method, strict: true }).invoke('contact');
      checkWithAjv(Contact, v);
    }
    const lookup = lcTool(async () => 'found', { name: 'lookup', description: 'look up', schema: Contact });
    const r = await chat.bindTools([lookup], { tool_choice: 'lookup' }).invoke('look up');
    assert.ok(r.tool_calls.length >= 1);
    for (const c of r.tool_calls) {
      assert.equal(c.name, 'lookup');
      checkWithAjv(Contact, c.args);
    }
  }],
];

run(MODE === 'structured' ? structuredTests : textTests);
