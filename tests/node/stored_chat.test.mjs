// OpenAI's stored chat completions (`store: true`; client.chat.completions.retrieve / list / update /
// delete / messages.list) with the official `openai` Node client against the real `dpserve serve` on
// the tiny random Qwen3 with two API keys. What is kept must be what the create returned (streamed:
// what the same request without `stream` returns), and the messages the request's.
import OpenAI from 'openai';

import { URL_BASE, assert, assertOpenAIError, client, http, modelName, run } from './e2e_util.mjs';

const oa = client();
const other = new OpenAI({ apiKey: process.env.STORED_OTHER_KEY, baseURL: `${URL_BASE}/v1`, maxRetries: 0 });
let model;

const ask = (content, extra = {}) => ({ model, messages: [{ role: 'user', content }], max_tokens: 5, temperature: 0,
                                        ...extra });
const all = async (query) => {
  const out = [];
  for await (const c of oa.chat.completions.list(query)) out.push(c);
  return out;
};
const withoutMetadata = (c) => Object.fromEntries(Object.entries(c).filter(([k]) => k !== 'metadata'));

const tests = [];
tests.push(['model', async () => { model = await modelName(); }]);

tests.push(['a stored completion is what the create returned; its messages are the request\'s', async () => {
  const messages = [{ role: 'system', content: 'Be brief.' },
                    { role: 'user', content: [{ type: 'text', text: 'Tell me ' }, { type: 'text', text: 'a story.' }] }];
  const c = await oa.chat.completions.create({ model, messages, max_tokens: 6, temperature: 0, store: true,
                                               metadata: { run: 'one' } });
  const got = await oa.chat.completions.retrieve(c.id);
  assert.deepEqual(withoutMetadata(got), JSON.parse(JSON.stringify(c)));
  assert.deepEqual(got.metadata, { run: 'one' });
  const ms = await oa.chat.completions.messages.list(c.id);
  assert.deepEqual(ms.data.map((m) => [m.id, m.role, m.content]),
                   [[`${c.id}-0`, 'system', 'Be brief.'], [`${c.id}-1`, 'user', 'Tell me a story.']]);
  assert.equal(ms.data[0].content_parts, null);
  assert.deepEqual(ms.data[1].content_parts, messages[1].content);
  const page = await http('GET', `/v1/chat/completions/${c.id}/messages?order=desc&limit=1`);
  assert.deepEqual([page.json.data.map((m) => m.id), page.json.has_more], [[`${c.id}-1`], true]);
  // Two choices are kept as two.
  const two = await oa.chat.completions.create(ask('Name a color.', { n: 2, store: true }));
  assert.deepEqual(withoutMetadata(await oa.chat.completions.retrieve(two.id)), JSON.parse(JSON.stringify(two)));
  assert.deepEqual((await oa.chat.completions.retrieve(two.id)).metadata, {});
}]);

tests.push(['without store: true nothing is kept', async () => {
  for (const extra of [{}, { store: false }]) {
    const c = await oa.chat.completions.create(ask('hi', extra));
    await assert.rejects(oa.chat.completions.retrieve(c.id), (e) => e.status === 404);
  }
  // Legacy completions are not OpenAI's stored kind.
  const t = await oa.completions.create({ model, prompt: 'hi', max_tokens: 2, store: true });
  await assert.rejects(oa.chat.completions.retrieve(t.id), (e) => e.status === 404);
}]);

tests.push(['a streamed completion is stored as the whole answer the same request gets unstreamed', async () => {
  const req = ask('Tell me about the sea.', { max_tokens: 12, store: true });
  const stream = await oa.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let id, text = '', reasoning = '', finish, usage;
  for await (const ch of stream) {
    id = ch.id;
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices) {
      text += c.delta.content || '';
      reasoning += c.delta.reasoning_content || '';
      finish = c.finish_reason || finish;
    }
  }
  const stored = await oa.chat.completions.retrieve(id);
  assert.equal(stored.choices[0].message.content ?? '', text);
  assert.equal(stored.choices[0].message.reasoning_content ?? '', reasoning);
  assert.equal(stored.choices[0].finish_reason, finish);
  assert.deepEqual(stored.usage, usage);
  const whole = await oa.chat.completions.create({ ...req, store: false });
  assert.deepEqual(stored.choices, whole.choices);
}]);

tests.push(['list in creation order, by model and metadata, paged both ways; update keeps the place; delete', async () => {
  const made = [];
  for (const k of ['x', 'y', 'x'])
    made.push((await oa.chat.completions.create(ask(`Say ${k}.`, { store: true, metadata: { suite: 'list', k } }))).id);
  const ids = async (query) => (await all(query)).map((c) => c.id);
  assert.deepEqual(await ids({ metadata: { suite: 'list' } }), made);
  assert.deepEqual(await ids({ metadata: { suite: 'list', k: 'x' } }), [made[0], made[2]]);
  assert.deepEqual(await ids({ metadata: { suite: 'list' }, order: 'desc' }), [...made].reverse());
  assert.deepEqual(await ids({ metadata: { suite: 'list' }, model: 'no-such-model' }), []);
  assert.deepEqual(await ids({ metadata: { suite: 'list' }, model }), made);
  const p1 = await oa.chat.completions.list({ metadata: { suite: 'list' }, limit: 2 });
  assert.deepEqual([p1.data.map((c) => c.id), p1.has_more], [made.slice(0, 2), true]);
  const p2 = await http('GET', `/v1/chat/completions?metadata[suite]=list&limit=2&after=${made[1]}`);
  assert.deepEqual([p2.json.data.map((c) => c.id), p2.json.has_more, p2.json.first_id], [[made[2]], false, made[2]]);

  const updated = await oa.chat.completions.update(made[0], { metadata: { suite: 'list', k: 'z' } });
  assert.deepEqual(updated.metadata, { suite: 'list', k: 'z' });
  assert.equal(updated.id, made[0]);
  assert.deepEqual(await ids({ metadata: { suite: 'list' } }), made);  // the same place
  assert.deepEqual(await ids({ metadata: { k: 'z' } }), [made[0]]);
  assert.deepEqual(await oa.chat.completions.delete(made[1]), { object: 'chat.completion.deleted', id: made[1], deleted: true });
  await assert.rejects(oa.chat.completions.retrieve(made[1]), (e) => e.status === 404);
  assert.deepEqual(await ids({ metadata: { suite: 'list' } }), [made[0], made[2]]);
  await assert.rejects(oa.chat.completions.delete(made[1]), (e) => e.status === 404);
}]);

tests.push(['another key sees nothing of them', async () => {
  const c = await oa.chat.completions.create(ask('hi', { store: true, metadata: { suite: 'keys' } }));
  await assert.rejects(other.chat.completions.retrieve(c.id), (e) => e.status === 404);
  await assert.rejects(other.chat.completions.update(c.id, { metadata: {} }), (e) => e.status === 404);
  await assert.rejects(other.chat.completions.delete(c.id), (e) => e.status === 404);
  await assert.rejects(other.chat.completions.messages.list(c.id), (e) => e.status === 404);
  assert.deepEqual((await other.chat.completions.list()).data, []);
  assert.equal((await oa.chat.completions.retrieve(c.id)).id, c.id);
}]);

tests.push(['bad requests are 400s naming the parameter; unknown ids 404s', async () => {
  const c = await oa.chat.completions.create(ask('hi', { store: true }));
  for (const [q, param] of [['limit=0', 'limit'], ['limit=101', 'limit'], ['order=up', 'order'],
                            ['after=chatcmpl-nope', 'after'], ['page=2', 'page']])
    assertOpenAIError(await http('GET', `/v1/chat/completions?${q}`), 400, param);
  assertOpenAIError(await http('GET', `/v1/chat/completions/${c.id}/messages?model=x`), 400, 'model');
  assertOpenAIError(await http('GET', `/v1/chat/completions/${c.id}?x=1`), 400, 'x');
  const path = `/v1/chat/completions/${c.id}`;
  assertOpenAIError(await http('POST', path, {}), 400, 'metadata');
  assertOpenAIError(await http('POST', path, { metadata: { a: 1 } }), 400, 'metadata.a');
  assertOpenAIError(await http('POST', path, { metadata: {}, model: 'x' }), 400, 'model');
  // null clears the metadata.
  await oa.chat.completions.update(c.id, { metadata: { a: 'b' } });
  assert.deepEqual((await http('POST', path, { metadata: null })).json.metadata, {});
  assertOpenAIError(await http('GET', '/v1/chat/completions/chatcmpl-nope'), 404, 'completion_id');
  assertOpenAIError(await http('GET', '/v1/chat/completions/chatcmpl-nope/messages'), 404, 'completion_id');
}]);

run(tests);
