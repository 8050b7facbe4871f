// OpenAI's Uploads API with the official `openai` Node client against the real `dpserve serve` on
// the tiny random Qwen3, started with --max-body-bytes 65536 (a file larger than one request body),
// --max-file-store-mb 1 and two API keys. The file an upload makes must hold exactly the bytes sent,
// in the order part_ids gives; its MD5 is computed by Node's crypto (OpenSSL), not by the server's.
import { createHash } from 'node:crypto';

import OpenAI, { toFile } from 'openai';

import { URL_BASE, assert, assertOpenAIError, client, http, modelName, run } from './e2e_util.mjs';

const oa = client();
const other = new OpenAI({ apiKey: process.env.UPLOADS_OTHER_KEY, baseURL: `${URL_BASE}/v1`, maxRetries: 0 });
const STORE_BYTES = 1 << 20;  // --max-file-store-mb 1
let model;

const md5 = (buf) => createHash('md5').update(buf).digest('hex');
const part = async (uploadId, buf) => oa.uploads.parts.create(uploadId, { data: await toFile(buf, 'blob') });
const contentOf = async (fileId) => Buffer.from(await (await oa.files.content(fileId)).arrayBuffer());
const declare = (bytes, extra = {}) => oa.uploads.create({ bytes, filename: 'in.jsonl', mime_type: 'application/jsonl',
                                                           purpose: 'batch', ...extra });

// Every file of the key deleted, so the next test starts from an empty store.
async function emptyStore() {
  for (const f of (await oa.files.list()).data) await oa.files.delete(f.id);
}

const tests = [];
tests.push(['model', async () => { model = await modelName(); }]);

tests.push(['a file larger than a request body arrives in parts sent at once, byte for byte', async () => {
  const whole = Buffer.alloc(180000);
  for (let i = 0; i < whole.length; i++) whole[i] = (i * 131 + (i >> 8)) & 0xff;  // every byte value
  // Whole, it is over --max-body-bytes.
  const fd = new FormData();
  fd.append('purpose', 'batch');
  fd.append('file', new Blob([whole]), 'big.jsonl');
  const direct = await fetch(`${URL_BASE}/v1/files`, { method: 'POST', body: fd,
                                                       headers: { Authorization: `Bearer ${process.env.DPSERVE_API_KEY}` } });
  assert.equal(direct.status, 413);

  const u = await oa.uploads.create({ bytes: whole.length, filename: 'big.jsonl', mime_type: 'application/jsonl',
                                      purpose: 'batch' });
  assert.match(u.id, /^upload_[0-9a-f]{32}$/);
  assert.equal(u.object, 'upload');
  assert.equal(u.status, 'pending');
  assert.equal(u.bytes, whole.length);
  assert.equal(u.filename, 'big.jsonl');
  assert.equal(u.purpose, 'batch');
  assert.equal(u.expires_at, u.created_at + 3600);
  assert.equal(u.file, null);
  assert.ok(Math.abs(u.created_at - Date.now() / 1000) < 600);
  const chunks = [whole.subarray(0, 60000), whole.subarray(60000, 120000), whole.subarray(120000)];
  const parts = await Promise.all(chunks.map((c) => part(u.id, c)));
  for (const p of parts) {
    assert.match(p.id, /^part_[0-9a-f]{32}$/);
    assert.equal(p.object, 'upload.part');
    assert.equal(p.upload_id, u.id);
  }
  const done = await oa.uploads.complete(u.id, { part_ids: parts.map((p) => p.id), md5: md5(whole) });
  assert.equal(done.id, u.id);
  assert.equal(done.status, 'completed');
  assert.equal(done.file.object, 'file');
  assert.match(done.file.id, /^file-[0-9a-f]{32}$/);
  assert.equal(done.file.bytes, whole.length);
  assert.equal(done.file.filename, 'big.jsonl');
  assert.equal(done.file.purpose, 'batch');
  assert.equal(done.file.expires_at, null);
  assert.ok((await contentOf(done.file.id)).equals(whole));
  assert.deepEqual(await oa.files.retrieve(done.file.id), done.file);
  // Ended: no more parts, no second completion, no cancel.
  assert.equal(assertOpenAIError(await http('POST', `/v1/uploads/${u.id}/complete`, { part_ids: [parts[0].id] }),
                                 400, 'upload_id').code, 'upload_not_pending');
  assert.equal(assertOpenAIError(await http('POST', `/v1/uploads/${u.id}/cancel`), 400).code, 'upload_not_pending');
  await assert.rejects(part(u.id, Buffer.from('x')), (e) => e.status === 400);
  await emptyStore();
}]);

tests.push(['the parts join in part_ids\' order; a wrong md5 or total is a 400 and the upload stays pending', async () => {
  const u = await declare(10, { expires_after: { anchor: 'created_at', seconds: 7200 } });
  const hello = await part(u.id, Buffer.from('hello'));
  const world = await part(u.id, Buffer.from('world'));
  const extra = await part(u.id, Buffer.from('!'));  // never listed: dropped
  const path = `/v1/uploads/${u.id}/complete`;
  const e1 = assertOpenAIError(await http('POST', path, { part_ids: [world.id, hello.id], md5: md5('helloworld') }),
                               400, 'md5');
  assert.equal(e1.code, 'md5_mismatch');
  assert.ok(e1.message.includes(md5('worldhello')), e1.message);  // the digest of what was sent
  assert.equal(assertOpenAIError(await http('POST', path, { part_ids: [hello.id] }), 400, 'part_ids').code,
               'upload_size_mismatch');
  assert.equal(assertOpenAIError(await http('POST', path, { part_ids: [hello.id, extra.id] }), 400, 'part_ids').code,
               'upload_size_mismatch');
  assertOpenAIError(await http('POST', path, { part_ids: [hello.id, hello.id] }), 400, 'part_ids[1]');
  assertOpenAIError(await http('POST', path, { part_ids: [hello.id, 'part_nope'] }), 400, 'part_ids[1]');
  // An upper-case digest is the same digest.
  const done = await oa.uploads.complete(u.id, { part_ids: [world.id, hello.id], md5: md5('worldhello').toUpperCase() });
  assert.equal(done.status, 'completed');
  assert.equal((await contentOf(done.file.id)).toString(), 'worldhello');
  assert.equal(done.file.expires_at, done.file.created_at + 7200);  // the upload's expires_after
  // Without md5 nothing is checked; an empty upload is an empty file.
  const empty = await declare(0);
  const e = await oa.uploads.complete(empty.id, { part_ids: [] });
  assert.equal(e.file.bytes, 0);
  await emptyStore();
}]);

tests.push(['a file uploaded in parts runs as a batch, as the same file sent whole', async () => {
  const line = (id, content) => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/chat/completions',
                                                 body: { model, messages: [{ role: 'user', content }], max_tokens: 5,
                                                         temperature: 0 } });
  const text = Buffer.from([line('a', 'Tell me about the sea.'), line('b', 'Name a color.')].join('\n') + '\n');
  const u = await declare(text.length);
  const cut = 37;  // inside the first line
  const p2 = await part(u.id, text.subarray(cut));
  const p1 = await part(u.id, text.subarray(0, cut));
  const done = await oa.uploads.complete(u.id, { part_ids: [p1.id, p2.id], md5: md5(text) });
  const whole = await oa.files.create({ file: await toFile(text, 'in.jsonl'), purpose: 'batch' });
  const outputs = [];
  for (const fileId of [done.file.id, whole.id]) {
    const b = await oa.batches.create({ input_file_id: fileId, endpoint: '/v1/chat/completions', completion_window: '24h' });
    const end = Date.now() + 120000;
    let got = b;
    while (!['completed', 'failed', 'cancelled', 'expired'].includes(got.status)) {
      assert.ok(Date.now() < end, `batch still ${got.status} after 120 s`);
      await new Promise((res) => setTimeout(res, 25));
      got = await oa.batches.retrieve(b.id);
    }
    assert.equal(got.status, 'completed');
    assert.deepEqual(got.request_counts, { total: 2, completed: 2, failed: 0 });
    const lines = (await contentOf(got.output_file_id)).toString().trim().split('\n').map((l) => JSON.parse(l));
    outputs.push(lines.map((l) => [l.custom_id, l.response.body.choices[0].message.content]));
  }
  assert.deepEqual(outputs[0], outputs[1]);
  await emptyStore();
}]);

tests.push(['a pending upload holds its bytes in --max-file-store-mb until completed, cancelled or past', async () => {
  await emptyStore();
  assert.equal(assertOpenAIError(await http('POST', '/v1/uploads', { bytes: STORE_BYTES + 1, filename: 'x.jsonl',
                                                                      mime_type: 'application/jsonl', purpose: 'batch' }),
                                 400, 'bytes').code, 'file_store_full');
  const u = await declare(STORE_BYTES - 1000);
  // The store is held: a 2000-byte file does not fit beside it, a 1000-byte one does.
  await assert.rejects(oa.files.create({ file: await toFile(Buffer.alloc(2000, 97), 'a.jsonl'), purpose: 'batch' }),
                       (e) => e.status === 400 && e.code === 'file_store_full');
  const small = await oa.files.create({ file: await toFile(Buffer.alloc(1000, 97), 'b.jsonl'), purpose: 'batch' });
  // Parts past the declared bytes need room of their own (parts of 60000: a body is at most 65536).
  for (let left = STORE_BYTES - 1000 - 10; left > 0; left -= 60000) await part(u.id, Buffer.alloc(Math.min(left, 60000), 98));
  await assert.rejects(part(u.id, Buffer.alloc(20, 99)), (e) => e.status === 400 && e.code === 'file_store_full');
  await part(u.id, Buffer.alloc(10, 99));  // 10 past the declared bytes: they fit
  const cancelled = await oa.uploads.cancel(u.id);
  assert.equal(cancelled.status, 'cancelled');
  assert.equal(cancelled.file, null);
  await assert.rejects(part(u.id, Buffer.from('x')), (e) => e.status === 400 && e.code === 'upload_not_pending');
  // Its bytes are free again.
  const again = await declare(STORE_BYTES - 1000);
  assert.equal((await oa.uploads.cancel(again.id)).status, 'cancelled');
  await oa.files.delete(small.id);
}]);

tests.push(['another key sees nothing of an upload', async () => {
  const u = await declare(3);
  const p = await part(u.id, Buffer.from('abc'));
  await assert.rejects(other.uploads.parts.create(u.id, { data: await toFile(Buffer.from('x'), 'blob') }),
                       (e) => e.status === 404);
  await assert.rejects(other.uploads.complete(u.id, { part_ids: [p.id] }), (e) => e.status === 404);
  await assert.rejects(other.uploads.cancel(u.id), (e) => e.status === 404);
  const done = await oa.uploads.complete(u.id, { part_ids: [p.id] });
  await assert.rejects(other.files.retrieve(done.file.id), (e) => e.status === 404);
  await emptyStore();
}]);

tests.push(['bad requests are 400s naming the field; unknown uploads 404s', async () => {
  const body = { bytes: 5, filename: 'x.jsonl', mime_type: 'application/jsonl', purpose: 'batch' };
  const without = (k) => Object.fromEntries(Object.entries(body).filter(([key]) => key !== k));
  for (const k of Object.keys(body)) assertOpenAIError(await http('POST', '/v1/uploads', without(k)), 400, k);
  for (const [k, v] of [['bytes', -1], ['bytes', 'five'], ['bytes', 1.5], ['bytes', 8000000001], ['filename', ''],
                        ['mime_type', 'jsonl'], ['mime_type', 'application/'], ['mime_type', 7], ['purpose', 7]])
    assertOpenAIError(await http('POST', '/v1/uploads', { ...body, [k]: v }), 400, k);
  assertOpenAIError(await http('POST', '/v1/uploads', { ...body, purpose: 'fine-tune' }), 400, 'purpose');
  assertOpenAIError(await http('POST', '/v1/uploads', { ...body, expires_after: { anchor: 'now', seconds: 3600 } }),
                    400, 'expires_after.anchor');
  assertOpenAIError(await http('POST', '/v1/uploads', { ...body, expires_after: { anchor: 'created_at', seconds: 60 } }),
                    400, 'expires_after.seconds');
  assert.equal(assertOpenAIError(await http('POST', '/v1/uploads', { ...body, chunk_size: 5 }), 400, 'chunk_size').code,
               'unknown_parameter');
  assertOpenAIError(await http('POST', '/v1/uploads?x=1', body), 400, 'x');
  // A charset parameter is part of a MIME type.
  const u = await declare(5, { mime_type: 'text/jsonl; charset=utf-8' });
  const form = async (fields, id = u.id) => {
    const fd = new FormData();
    for (const [k, v] of fields) fd.append(k, v);
    const r = await fetch(`${URL_BASE}/v1/uploads/${id}/parts`, {
      method: 'POST', body: fd, headers: { Authorization: `Bearer ${process.env.DPSERVE_API_KEY}` } });
    const text = await r.text();
    return { status: r.status, text, json: JSON.parse(text) };
  };
  assertOpenAIError(await form([['file', new Blob(['abc'])]]), 400, 'file');
  assertOpenAIError(await form([['data', new Blob(['abc'])], ['note', 'x']]), 400, 'note');
  assertOpenAIError(await form([]), 400, 'data');
  const path = `/v1/uploads/${u.id}/complete`;
  assertOpenAIError(await http('POST', path, {}), 400, 'part_ids');
  assertOpenAIError(await http('POST', path, { part_ids: 'part_1' }), 400, 'part_ids');
  assertOpenAIError(await http('POST', path, { part_ids: [1] }), 400, 'part_ids[0]');
  assertOpenAIError(await http('POST', path, { part_ids: [], md5: 'abc' }), 400, 'md5');
  assertOpenAIError(await http('POST', path, { part_ids: [], md5: 'z'.repeat(32) }), 400, 'md5');
  assertOpenAIError(await http('POST', path, { part_ids: [], sha: 'x' }), 400, 'sha');
  assert.equal(assertOpenAIError(await form([['data', new Blob(['abc'])]], 'upload_nope'), 404, 'upload_id').code,
               'upload_not_found');
  assertOpenAIError(await http('POST', '/v1/uploads/upload_nope/complete', { part_ids: [] }), 404, 'upload_id');
  assertOpenAIError(await http('POST', '/v1/uploads/upload_nope/cancel'), 404, 'upload_id');
  assert.equal((await oa.uploads.cancel(u.id)).status, 'cancelled');
}]);

run(tests);
