// OpenAI's Conversations API (/v1/conversations) and the Responses `conversation` field, with the
// official `openai` Node client against the real `dpserve serve` on the tiny random Qwen3 (real
// Qwen3 tokenizer and template) with two API keys. A random model writes anything, so a response in a
// conversation is judged against the same request with the conversation's items sent as its input
// (that route is tested against chat completions elsewhere); the items against OpenAI's shapes.
import OpenAI from 'openai';

import { API_KEY, URL_BASE, assert, assertOpenAIError, client, http, modelName, run } from './e2e_util.mjs';

const oa = client();
const other = new OpenAI({ apiKey: process.env.CONVERSATIONS_OTHER_KEY, baseURL: `${URL_BASE}/v1`, maxRetries: 0 });
let model;

const user = (text) => ({ type: 'message', role: 'user', content: text });
const texts = (items) => items.map((it) => `${it.role}:${it.content.map((p) => p.text).join('')}`);

const tests = [];
tests.push(['model', async () => { model = await modelName(); }]);

tests.push(['create, retrieve, update and delete a conversation; items in OpenAI\'s shapes', async () => {
  const c = await oa.conversations.create({ items: [user('Hello'), { type: 'message', role: 'assistant', content: 'Hi!' }],
                                            metadata: { topic: 'demo' } });
  assert.match(c.id, /^conv_[0-9a-f]{32}$/);
  assert.equal(c.object, 'conversation');
  assert.deepEqual(c.metadata, { topic: 'demo' });
  assert.ok(Math.abs(c.created_at - Date.now() / 1000) < 600);
  assert.deepEqual(await oa.conversations.retrieve(c.id), c);
  const items = (await oa.conversations.items.list(c.id, { order: 'asc' })).data;
  assert.deepEqual(texts(items), ['user:Hello', 'assistant:Hi!']);
  assert.deepEqual(items.map((it) => it.content[0].type), ['input_text', 'output_text']);
  for (const it of items) assert.match(it.id, /^msg_/);
  // The default order is newest first.
  assert.deepEqual((await oa.conversations.items.list(c.id)).data.map((it) => it.id), items.map((it) => it.id).reverse());
  const one = await oa.conversations.items.retrieve(items[1].id, { conversation_id: c.id });
  assert.deepEqual(one, items[1]);

  const added = await oa.conversations.items.create(c.id, { items: [user('One'), user('Two')] });
  assert.deepEqual(texts(added.data), ['user:One', 'user:Two']);
  assert.equal(added.first_id, added.data[0].id);
  const all = (await oa.conversations.items.list(c.id, { order: 'asc', limit: 2, after: items[1].id })).data;
  assert.deepEqual(all.map((it) => it.id), added.data.map((it) => it.id));
  const afterDelete = await oa.conversations.items.delete(added.data[0].id, { conversation_id: c.id });
  assert.equal(afterDelete.id, c.id);
  assert.deepEqual(texts((await oa.conversations.items.list(c.id, { order: 'asc' })).data), ['user:Hello', 'assistant:Hi!', 'user:Two']);
  await assert.rejects(oa.conversations.items.retrieve(added.data[0].id, { conversation_id: c.id }), (e) => e.status === 404);

  const u = await oa.conversations.update(c.id, { metadata: { topic: 'other', n: '2' } });
  assert.deepEqual(u.metadata, { topic: 'other', n: '2' });
  assert.deepEqual((await oa.conversations.retrieve(c.id)).metadata, u.metadata);
  // Another key sees none of it.
  await assert.rejects(other.conversations.retrieve(c.id), (e) => e.status === 404);
  await assert.rejects(other.conversations.items.list(c.id), (e) => e.status === 404);
  assert.deepEqual(await oa.conversations.delete(c.id), { id: c.id, object: 'conversation.deleted', deleted: true });
  await assert.rejects(oa.conversations.retrieve(c.id), (e) => e.status === 404);
}]);

tests.push(['a response in a conversation: the same as its items sent as input; its input and output are appended', async () => {
  const start = [user('Name a fruit.'), { type: 'message', role: 'assistant', content: 'Apple.' }];
  const c = await oa.conversations.create({ items: start });
  const ask = { model, max_output_tokens: 8, temperature: 0, reasoning: { effort: 'none' } };
  const r1 = await oa.responses.create({ ...ask, conversation: c.id, input: 'Another one?' });
  assert.equal(r1.status, 'incomplete', JSON.stringify(r1.output));
  assert.deepEqual(r1.conversation, { id: c.id });
  const plain = await oa.responses.create({ ...ask, input: [...start, user('Another one?')], store: false });
  assert.equal(r1.output_text, plain.output_text);
  assert.equal(r1.usage.input_tokens, plain.usage.input_tokens);
  let items = (await oa.conversations.items.list(c.id, { order: 'asc' })).data;
  assert.deepEqual(texts(items), ['user:Name a fruit.', 'assistant:Apple.', 'user:Another one?', `assistant:${r1.output_text}`]);
  // The output item keeps the response's id for it.
  assert.equal(items[3].id, r1.output.find((o) => o.type === 'message').id);

  // Streamed, the { id } form, and store false: the conversation still grows (it is the conversation's, not the response's).
  const s = await oa.responses.create({ ...ask, conversation: { id: c.id }, input: 'And a third?', stream: true, store: false });
  let done;
  for await (const e of s) if (e.type === 'response.completed' || e.type === 'response.incomplete') done = e.response;
  const plain2 = await oa.responses.create({ ...ask, input: [...items.map(({ role, content }) => ({ type: 'message', role,
    content: content.map((p) => p.text).join('') })), user('And a third?')], store: false });
  assert.equal(done.output_text ?? done.output.find((o) => o.type === 'message').content[0].text, plain2.output_text);
  items = (await oa.conversations.items.list(c.id, { order: 'asc' })).data;
  assert.equal(items.length, 6);
  assert.deepEqual(texts(items).slice(4), ['user:And a third?', `assistant:${plain2.output_text}`]);
}]);

tests.push(['bad requests are 400s / 404s naming the field', async () => {
  const c = await oa.conversations.create({});
  for (const [body, param] of [
    [{ model, input: 'x', conversation: 'conv_nothere' }, 'conversation'],
    [{ model, input: 'x', conversation: 5 }, 'conversation'],
    [{ model, input: 'x', conversation: c.id, previous_response_id: 'resp_x' }, 'previous_response_id'],
  ]) assertOpenAIError(await http('POST', '/v1/responses', body), param === 'conversation' && body.conversation === 'conv_nothere' ? 404 : 400, param);
  for (const [body, param] of [
    [{ items: 'x' }, 'items'],
    [{ items: [{ type: 'nope' }] }, 'items[0].type'],
    [{ items: Array(21).fill(user('x')) }, 'items'],
    [{ metadata: { k: 5 } }, 'metadata.k'],
    [{ extra: 1 }, 'extra'],
  ]) assertOpenAIError(await http('POST', '/v1/conversations', body), 400, param);
  assertOpenAIError(await http('POST', `/v1/conversations/${c.id}/items`, { items: [] }), 400, 'items');
  assertOpenAIError(await http('POST', `/v1/conversations/${c.id}`, {}), 400, 'metadata');
  assertOpenAIError(await http('GET', '/v1/conversations/conv_nothere'), 404, 'conversation_id');
  assertOpenAIError(await http('GET', `/v1/conversations/${c.id}/items/msg_nothere`), 404, 'item_id');
  assertOpenAIError(await http('GET', `/v1/conversations/${c.id}/items?limit=0`), 400, 'limit');
}]);

await run(tests);
