// Anthropic's Message Batches API (/v1/messages/batches) with the official `@anthropic-ai/sdk` Node
// client against the real `dpserve serve` on the tiny random Qwen3 (real Qwen3 tokenizer and template),
// started with --max-running-requests 1 (a batch can be held behind a running request) and two API
// keys. A request's result must be what the same request gets from /v1/messages on its own (that route
// is tested against chat completions elsewhere); the shapes are Anthropic's documented ones.
import Anthropic from '@anthropic-ai/sdk';

import { API_KEY, URL_BASE, assert, holdTheEngine, http, modelName, run } from './e2e_util.mjs';

const an = new Anthropic({ apiKey: API_KEY, baseURL: URL_BASE, maxRetries: 0, timeout: 120000 });
const other = new Anthropic({ apiKey: process.env.BATCH_OTHER_KEY, baseURL: URL_BASE, maxRetries: 0, timeout: 120000 });
let model;

const params = (content, maxTokens, extra = {}) => ({
  model, max_tokens: maxTokens, temperature: 0, messages: [{ role: 'user', content }], ...extra,
});
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

// Polls a batch until it has ended (bounded: 120 s).
async function ended(id) {
  const end = Date.now() + 120000;
  for (;;) {
    const b = await an.messages.batches.retrieve(id);
    if (b.processing_status === 'ended') return b;
    assert.ok(Date.now() < end, `batch ${id} still ${b.processing_status} after 120 s`);
    await new Promise((res) => setTimeout(res, 25));
  }
}

async function results(id) {
  const out = [];
  for await (const r of await an.messages.batches.results(id)) out.push(r);
  return out;
}

// Polls /metrics until `n` requests wait in the engine's queue (bounded: 20 s).
async function queued(n) {
  const end = Date.now() + 20000;
  for (;;) {
    const m = (await http('GET', '/metrics')).text;
    if (new RegExp(`^dpserve_num_queue_reqs\\{dp_rank="0"\\} ${n}$`, 'm').test(m)) return;
    assert.ok(Date.now() < end, `never ${n} requests in the engine queue`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

const tests = [];
tests.push(['model', async () => { model = await modelName(); }]);

let firstId;
tests.push(['a batch: each result is the same request sent alone; bad params and stream are that request\'s error', async () => {
  const good = [['a', params('Tell me about the sea.', 6)], ['b', params('hi', 3)],
                ['c', params('Name a color.', 9, { system: 'Be brief.', stop_sequences: ['.'] })]];
  const requests = [...good.map(([custom_id, p]) => ({ custom_id, params: p })),
                    { custom_id: 'bad-1', params: { ...params('x', 2), messages: [] } },
                    { custom_id: 'stream_1', params: { ...params('x', 2), stream: true } }];
  const created = await an.messages.batches.create({ requests });
  firstId = created.id;
  assert.equal(created.type, 'message_batch');
  assert.match(created.id, /^msgbatch_[0-9a-f]{32}$/);
  assert.ok(['in_progress', 'ended'].includes(created.processing_status), created.processing_status);
  assert.match(created.created_at, ISO);
  // Anthropic's batches end within 24 hours.
  assert.equal(Date.parse(created.expires_at) - Date.parse(created.created_at), 86400000);
  assert.equal(created.archived_at, null);
  const b = await ended(created.id);
  assert.deepEqual(b.request_counts, { processing: 0, succeeded: 3, errored: 2, canceled: 0, expired: 0 });
  assert.match(b.ended_at, ISO);
  assert.ok(Date.parse(b.ended_at) >= Date.parse(b.created_at));
  assert.equal(b.cancel_initiated_at, null);
  assert.equal(b.results_url, `${URL_BASE}/v1/messages/batches/${b.id}/results`);
  const rs = await results(b.id);
  assert.deepEqual(rs.map((r) => r.custom_id), requests.map((r) => r.custom_id));
  for (const [custom_id, p] of good) {
    const r = rs.find((x) => x.custom_id === custom_id);
    assert.equal(r.result.type, 'succeeded', JSON.stringify(r));
    const alone = await an.messages.create(p);
    const m = r.result.message;
    assert.equal(m.type, 'message');
    assert.match(m.id, /^msg_/);
    assert.notEqual(m.id, alone.id);
    assert.deepEqual(m.content, alone.content, custom_id);
    assert.equal(m.stop_reason, alone.stop_reason);
    assert.equal(m.stop_sequence, alone.stop_sequence);
    assert.deepEqual(m.usage.output_tokens, alone.usage.output_tokens);
    assert.deepEqual(m.usage.input_tokens + m.usage.cache_read_input_tokens,
                     alone.usage.input_tokens + alone.usage.cache_read_input_tokens);
  }
  const bad = rs.find((x) => x.custom_id === 'bad-1').result;
  assert.equal(bad.type, 'errored');
  assert.equal(bad.error.type, 'error');
  assert.equal(bad.error.error.type, 'invalid_request_error');
  // The same error the request gets on its own.
  const alone = await http('POST', '/v1/messages', requests[3].params, { 'x-api-key': API_KEY });
  assert.equal(alone.status, 400);
  assert.deepEqual(bad.error, alone.json);
  const streamed = rs.find((x) => x.custom_id === 'stream_1').result;
  assert.equal(streamed.type, 'errored');
  assert.match(streamed.error.error.message, /stream/);
  // Another key sees none of it.
  await assert.rejects(other.messages.batches.retrieve(b.id), (e) => e.status === 404 && e.error.error.type === 'not_found_error');
  await assert.rejects(other.messages.batches.results(b.id), (e) => e.status === 404);
}]);

tests.push(['cancel: the request in flight stops, the rest never run; each is canceled in the results', async () => {
  const n = 6;
  const release = await holdTheEngine(model);
  let done, results0;
  try {
    const b = await an.messages.batches.create({
      requests: Array.from({ length: n }, (_, i) => ({ custom_id: `r${i}`, params: params(`line ${i}`, 2) })) });
    await queued(1);  // its first request waits behind the held one (--max-running-requests 1)
    // Its results are not there yet.
    await assert.rejects(an.messages.batches.results(b.id), /results_url/);
    await assert.rejects(an.messages.batches.delete(b.id), (e) => e.status === 400 && /cancel/.test(e.message));
    const c = await an.messages.batches.cancel(b.id);
    assert.ok(['canceling', 'ended'].includes(c.processing_status), c.processing_status);
    assert.match(c.cancel_initiated_at, ISO);
    // Ended while the engine is still held: the waiting request was stopped, not waited for.
    done = await ended(c.id);
    results0 = await results(done.id);
  } finally {
    await release();
  }
  assert.deepEqual(done.request_counts, { processing: 0, succeeded: 0, errored: 0, canceled: n, expired: 0 });
  assert.deepEqual(results0, Array.from({ length: n }, (_, i) => ({ custom_id: `r${i}`, result: { type: 'canceled' } })));
  assert.equal((await an.messages.batches.cancel(done.id)).processing_status, 'ended');  // again: as it is
}]);

tests.push(['list (newest first, paged by after_id / before_id) and delete', async () => {
  const ids = [];
  for (let i = 0; i < 3; ++i)
    ids.push((await an.messages.batches.create({ requests: [{ custom_id: 'x', params: params('hi', 1) }] })).id);
  for (const id of ids) await ended(id);
  const page = await an.messages.batches.list({ limit: 2 });
  assert.deepEqual(page.data.map((b) => b.id), [ids[2], ids[1]]);
  assert.equal(page.has_more, true);
  assert.equal(page.first_id, ids[2]);
  assert.equal(page.last_id, ids[1]);
  const next = await an.messages.batches.list({ limit: 2, after_id: ids[1] });
  assert.equal(next.data[0].id, ids[0]);
  const back = await an.messages.batches.list({ limit: 1, before_id: ids[1] });
  assert.deepEqual(back.data.map((b) => b.id), [ids[2]]);
  assert.equal(back.has_more, false);
  // The SDK's auto-pagination reaches every batch of this key, each once.
  const seen = [];
  for await (const b of an.messages.batches.list({ limit: 2 })) seen.push(b.id);
  assert.equal(new Set(seen).size, seen.length);
  for (const id of [...ids, firstId]) assert.ok(seen.includes(id), id);
  assert.ok(!(await other.messages.batches.list()).data.some((b) => ids.includes(b.id)));

  const del = await an.messages.batches.delete(ids[0]);
  assert.deepEqual(del, { id: ids[0], type: 'message_batch_deleted' });
  await assert.rejects(an.messages.batches.retrieve(ids[0]), (e) => e.status === 404);
  const raw = await http('GET', `/v1/messages/batches/${ids[0]}/results`, undefined, { 'x-api-key': API_KEY });
  assert.equal(raw.status, 404);
  assert.equal(raw.json.type, 'error');
}]);

tests.push(['bad requests are Anthropic 400s naming the field', async () => {
  const ok = { custom_id: 'a', params: params('hi', 1) };
  for (const [body, where] of [
    [{}, 'requests'],
    [{ requests: [] }, 'requests'],
    [{ requests: [ok, ok] }, 'requests.1.custom_id'],
    [{ requests: [{ ...ok, custom_id: 'a b' }] }, 'requests.0.custom_id'],
    [{ requests: [{ ...ok, custom_id: 'x'.repeat(65) }] }, 'requests.0.custom_id'],
    [{ requests: [{ ...ok, params: 'hi' }] }, 'requests.0.params'],
    [{ requests: [{ ...ok, extra: 1 }] }, 'requests.0.extra'],
    [{ requests: [ok], extra: 1 }, 'extra'],
  ]) {
    const r = await http('POST', '/v1/messages/batches', body, { 'x-api-key': API_KEY });
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.json.type, 'error');
    assert.equal(r.json.error.type, 'invalid_request_error');
    // (Anthropic's messages begin with the path at fault; an unknown top-level field is named in it.)
    const m = r.json.error.message;
    assert.ok(where === 'extra' ? m.includes(where) : m.startsWith(`${where}:`), `${m} should name ${where}`);
  }
  await assert.rejects(an.messages.batches.retrieve('msgbatch_nothere'), (e) => e.status === 404);
  const q = await http('GET', '/v1/messages/batches?limit=0', undefined, { 'x-api-key': API_KEY });
  assert.equal(q.status, 400);
}]);

// --max-file-store-mb 1 holds the results files: every file of both keys is deleted, then one file
// leaves 700 bytes, room for an "errored" line per request but not for two messages.
tests.push(['results that outgrow the file store: every request errored, and the batch still ends', async () => {
  const STORE_BYTES = 1 << 20;
  for (const key of [API_KEY, process.env.BATCH_OTHER_KEY]) {
    const auth = { Authorization: `Bearer ${key}` };
    for (const f of (await http('GET', '/v1/files', undefined, auth)).json.data)
      assert.equal((await http('DELETE', `/v1/files/${f.id}`, undefined, auth)).status, 200);
  }
  const fd = new FormData();
  fd.append('purpose', 'batch');
  fd.append('file', new Blob([Buffer.alloc(STORE_BYTES - 700, 97)]), 'filler.jsonl');
  const filler = await fetch(`${URL_BASE}/v1/files`, { method: 'POST', body: fd, headers: { Authorization: `Bearer ${API_KEY}` } })
    .then((r) => r.json());
  assert.equal(filler.bytes, STORE_BYTES - 700);
  const requests = [{ custom_id: 'a', params: params('Tell me about the sea.', 8) },
                    { custom_id: 'b', params: params('Name a color.', 8) }];
  const full = await ended((await an.messages.batches.create({ requests })).id);
  assert.deepEqual(full.request_counts, { processing: 0, succeeded: 0, errored: 2, canceled: 0, expired: 0 });
  const rs = await results(full.id);
  assert.deepEqual(rs.map((r) => [r.custom_id, r.result.type]), [['a', 'errored'], ['b', 'errored']]);
  for (const r of rs) assert.match(r.result.error.error.message, /--max-file-store-mb/);
  // With the room back, the same batch succeeds: it was the store, not the requests.
  await http('DELETE', `/v1/files/${filler.id}`);
  const fine = await ended((await an.messages.batches.create({ requests })).id);
  assert.equal(fine.request_counts.succeeded, 2);
  assert.deepEqual((await results(fine.id)).map((r) => r.result.type), ['succeeded', 'succeeded']);
}]);

await run(tests);
