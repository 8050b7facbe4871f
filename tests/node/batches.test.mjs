// OpenAI's Files and Batch APIs with the official `openai` Node client against the real `dpserve
// serve` on the tiny random Qwen3 (real Qwen3 tokenizer and template), started with
// --max-running-requests 1 (a batch can be held behind a running request), --max-file-store-mb 1 and
// two API keys. A batch line's answer must be what the same request gets when sent on its own (the
// routes are tested against the offline generator elsewhere); the files hold exactly what ran.
import { toFile } from 'openai';

import { API_KEY, URL_BASE, assert, assertOpenAIError, client, holdTheEngine, http, modelName, run } from './e2e_util.mjs';

const oa = client();
const OTHER_KEY = process.env.BATCH_OTHER_KEY;
let model;

const jsonl = (lines) => lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
const upload = async (text, name = 'in.jsonl') => oa.files.create({ file: await toFile(Buffer.from(text), name),
                                                                     purpose: 'batch' });
const chatLine = (id, content, maxTokens) => ({
  custom_id: id, method: 'POST', url: '/v1/chat/completions',
  body: { model, messages: [{ role: 'user', content }], max_tokens: maxTokens, temperature: 0 },
});

// Polls a batch until it has ended (bounded: 120 s).
async function ended(id) {
  const end = Date.now() + 120000;
  for (;;) {
    const b = await oa.batches.retrieve(id);
    if (['completed', 'failed', 'cancelled', 'expired'].includes(b.status)) return b;
    assert.ok(Date.now() < end, `batch ${id} still ${b.status} after 120 s`);
    await new Promise((res) => setTimeout(res, 25));
  }
}

const linesOf = async (fileId) => (await (await oa.files.content(fileId)).text()).trim().split('\n').map((l) => JSON.parse(l));


const tests = [];
tests.push(['model', async () => { model = await modelName(); }]);

tests.push(['a chat batch: each answer is the same request sent alone; failures go to the error file', async () => {
  const good = [chatLine('a', 'Tell me about the sea.', 6), chatLine('b', 'hi', 3), chatLine('c', 'Name a color.', 9),
                chatLine('d', 'Why?', 1), chatLine('e', 'Count to three.', 12)];
  const bad = { custom_id: 'f', method: 'POST', url: '/v1/chat/completions', body: { model, messages: [], max_tokens: 2 } };
  const streamed = { ...chatLine('g', 'hi', 2), body: { ...chatLine('g', 'hi', 2).body, stream: true } };
  const text = jsonl([...good, bad, streamed]);
  const file = await upload(text);
  assert.equal(file.object, 'file');
  assert.equal(file.purpose, 'batch');
  assert.equal(file.bytes, Buffer.byteLength(text));
  assert.equal(file.filename, 'in.jsonl');
  assert.match(file.id, /^file-[0-9a-f]{32}$/);
  assert.equal(await (await oa.files.content(file.id)).text(), text);
  assert.deepEqual(await oa.files.retrieve(file.id), file);

  const created = await oa.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions',
                                            completion_window: '24h', metadata: { job: 'one' } });
  assert.equal(created.object, 'batch');
  assert.ok(['validating', 'in_progress', 'finalizing', 'completed'].includes(created.status), created.status);
  assert.deepEqual(created.metadata, { job: 'one' });
  assert.equal(created.request_counts.total, 7);
  const b = await ended(created.id);
  assert.equal(b.status, 'completed');
  assert.deepEqual(b.request_counts, { total: 7, completed: 5, failed: 2 });
  assert.ok(b.in_progress_at >= b.created_at && b.completed_at >= b.in_progress_at);
  const out = await linesOf(b.output_file_id);
  assert.deepEqual(out.map((l) => l.custom_id), ['a', 'b', 'c', 'd', 'e']);  // in the input's order
  for (const [i, line] of out.entries()) {
    assert.match(line.id, /^batch_req_[0-9a-f]{32}$/);
    assert.equal(line.response.status_code, 200);
    assert.equal(line.error, null);
    const alone = await oa.chat.completions.create(good[i].body);
    assert.equal(line.response.body.choices[0].message.content, alone.choices[0].message.content, line.custom_id);
    assert.equal(line.response.body.usage.completion_tokens, alone.usage.completion_tokens);
    assert.equal(line.response.body.object, 'chat.completion');
  }
  const errs = await linesOf(b.error_file_id);
  assert.deepEqual(errs.map((l) => l.custom_id), ['f', 'g']);
  assert.equal(errs[0].response.status_code, 400);
  assert.equal(errs[0].response.body.error.param, 'messages');
  assert.equal(errs[1].response.body.error.param, 'stream');
  // The outputs are files of the caller's, listed with the input (newest first by default).
  const outFile = await oa.files.retrieve(b.output_file_id);
  assert.equal(outFile.purpose, 'batch_output');
  const listed = (await oa.files.list()).data.map((f) => f.id);
  for (const id of [file.id, b.output_file_id, b.error_file_id]) assert.ok(listed.includes(id), id);
  assert.deepEqual((await oa.files.list({ purpose: 'batch' })).data.map((f) => f.purpose).filter((p) => p !== 'batch'), []);
  assert.equal((await oa.batches.list()).data[0].id, b.id);
  // Another tenant sees none of it.
  if (OTHER_KEY) {
    const other = client({ apiKey: OTHER_KEY });
    await assert.rejects(other.files.retrieve(file.id), (e) => e.status === 404);
    await assert.rejects(other.batches.retrieve(b.id), (e) => e.status === 404);
    assert.deepEqual((await other.files.list()).data, []);
    await assert.rejects(other.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions',
                                                completion_window: '24h' }), (e) => e.status === 404);
  }
  // Delete: gone.
  assert.deepEqual(await oa.files.delete(b.error_file_id), { id: b.error_file_id, object: 'file', deleted: true });
  await assert.rejects(oa.files.retrieve(b.error_file_id), (e) => e.status === 404);
}]);

tests.push(['a completions batch', async () => {
  const body = { model, prompt: 'Once upon a time', max_tokens: 7, temperature: 0 };
  const file = await upload(jsonl([{ custom_id: 'x', method: 'POST', url: '/v1/completions', body }]));
  const b = await ended((await oa.batches.create({ input_file_id: file.id, endpoint: '/v1/completions',
                                                   completion_window: '24h' })).id);
  assert.equal(b.status, 'completed');
  assert.equal(b.error_file_id, null);
  const [line] = await linesOf(b.output_file_id);
  assert.equal(line.response.body.choices[0].text, (await oa.completions.create(body)).choices[0].text);
}]);

tests.push(['a Responses batch: each answer is the same request sent alone; background is that line\'s 400', async () => {
  const bodies = [{ model, input: 'Tell me a story.', max_output_tokens: 6, temperature: 0 },
                  { model, input: [{ role: 'user', content: 'hi' }], instructions: 'Be brief.', max_output_tokens: 3,
                    temperature: 0, store: false }];
  const lines = bodies.map((body, i) => ({ custom_id: `r${i}`, method: 'POST', url: '/v1/responses', body }));
  lines.push({ custom_id: 'bg', method: 'POST', url: '/v1/responses', body: { ...bodies[0], background: true } });
  lines.push({ custom_id: 'odd', method: 'POST', url: '/v1/responses', body: { ...bodies[0], stream: 'yes' } });
  const b = await ended((await oa.batches.create({ input_file_id: (await upload(jsonl(lines))).id,
                                                   endpoint: '/v1/responses', completion_window: '24h' })).id);
  assert.equal(b.status, 'completed');
  assert.equal(b.endpoint, '/v1/responses');
  assert.deepEqual(b.request_counts, { total: 4, completed: 2, failed: 2 });
  const out = await linesOf(b.output_file_id);
  assert.deepEqual(out.map((l) => l.custom_id), ['r0', 'r1']);
  for (const [i, line] of out.entries()) {
    const r = line.response.body;
    assert.equal(r.object, 'response');
    const alone = await oa.responses.create(bodies[i]);
    assert.equal(r.status, alone.status);
    const text = r.output.filter((o) => o.type === 'message').flatMap((o) => o.content)
      .filter((c) => c.type === 'output_text').map((c) => c.text).join('');
    assert.equal(text, alone.output_text, line.custom_id);
    assert.equal(r.usage.input_tokens, alone.usage.input_tokens);  // (cached_tokens differ: the prefix cache)
    assert.equal(r.usage.output_tokens, alone.usage.output_tokens);
  }
  // A stored line's response can be read back (and continued) as any other.
  const kept = await oa.responses.retrieve(out[0].response.body.id);
  assert.equal(kept.id, out[0].response.body.id);
  await assert.rejects(oa.responses.retrieve(out[1].response.body.id), (e) => e.status === 404);  // store: false
  const [bg, odd] = await linesOf(b.error_file_id);
  assert.equal(bg.custom_id, 'bg');
  assert.equal(bg.response.status_code, 400);
  assert.equal(bg.response.body.error.param, 'background');
  // A stream that is not a boolean is the route's own 400, as for a client.
  assert.equal(odd.custom_id, 'odd');
  assert.equal(odd.response.status_code, 400);
  assert.equal(odd.response.body.error.param, 'stream');
}]);

tests.push(['an input file that does not validate makes a failed batch, its errors by line', async () => {
  const text = [
    JSON.stringify(chatLine('a', 'hi', 1)),
    'not json',
    JSON.stringify({ ...chatLine('b', 'hi', 1), url: '/v1/completions' }),
    JSON.stringify(chatLine('a', 'hi', 1)),
    '',
    JSON.stringify({ custom_id: 'c', method: 'GET', url: '/v1/chat/completions', body: {} }),
    JSON.stringify({ custom_id: 'd', method: 'POST', url: '/v1/chat/completions' }),
  ].join('\n');
  const b = await oa.batches.create({ input_file_id: (await upload(text)).id, endpoint: '/v1/chat/completions',
                                      completion_window: '24h' });
  assert.equal(b.status, 'failed');
  assert.ok(b.failed_at > 0);
  assert.deepEqual(b.errors.data.map((e) => [e.line, e.code]), [
    [2, 'invalid_json_line'], [3, 'invalid_url'], [4, 'duplicate_custom_id'], [6, 'invalid_method'], [7, 'invalid_request'],
  ]);
  assert.equal((await oa.batches.retrieve(b.id)).status, 'failed');
}]);

tests.push(['cancel: the line in flight stops, lines not started never run; the files hold what ran', async () => {
  const n = 20;
  const file = await upload(jsonl(Array.from({ length: n }, (_, i) => chatLine(`l${i}`, `line ${i}`, 2))));
  const release = await holdTheEngine(model);
  let done;
  try {
    const b = await oa.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    // Its first line waits in the engine's queue behind the held request (--max-running-requests 1).
    const end = Date.now() + 20000;
    for (;;) {
      const m = (await http('GET', '/metrics')).text;
      if (/^dpserve_num_queue_reqs\{dp_rank="0"\} 1$/m.test(m)) break;
      assert.ok(Date.now() < end, 'the batch line never reached the engine queue');
      await new Promise((res) => setTimeout(res, 20));
    }
    const c = await oa.batches.cancel(b.id);
    assert.ok(['cancelling', 'cancelled'].includes(c.status), c.status);
    // Cancelled while the engine is still held: the waiting line was stopped, not waited for.
    done = await ended(c.id);
  } finally {
    await release();
  }
  assert.equal(done.status, 'cancelled');
  assert.ok(done.cancelled_at > 0 && done.cancelling_at > 0);
  assert.deepEqual(done.request_counts, { total: n, completed: 0, failed: 0 });
  assert.equal(done.output_file_id, null);
  assert.equal(done.error_file_id, null);
  assert.equal((await oa.batches.cancel(done.id)).status, 'cancelled');  // again: as it is
  // The engine is free again and serves the next request.
  assert.equal((await oa.chat.completions.create(chatLine('x', 'hi', 2).body)).choices.length, 1);
}]);

tests.push(['completion_window: at its end the line in flight stops and the batch expires; what ended is kept', async () => {
  // One line in flight (--max-running-requests 1): 'a' ends at once, 'b' runs 16 choices of ~4000 tokens
  // each, 'c' waits. The window of 2 s ends during 'b': one choice of 4000 tokens took this tiny model
  // under 2 s once its decode got faster (0.5 s in the engine), and 'b' completed; 16 take over 8 s.
  const long = { ...chatLine('b', 'go on', 4000), body: { ...chatLine('b', 'go on', 4000).body, ignore_eos: true, n: 16 } };
  const file = await upload(jsonl([chatLine('a', 'hi', 2), long, chatLine('c', 'hi', 2)]));
  const generated = async () => Number((await http('GET', '/metrics')).text.match(/^dpserve_generation_tokens_total (\d+)$/m)[1]);
  const before = await generated();
  const created = await oa.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions',
                                            completion_window: '2s' });
  assert.equal(created.completion_window, '2s');
  assert.equal(created.expires_at, created.created_at + 2);
  const b = await ended(created.id);
  assert.equal(b.status, 'expired', JSON.stringify(b));
  assert.ok(b.expired_at >= created.created_at + 2 && b.completed_at === null, JSON.stringify(b));
  assert.deepEqual(b.request_counts, { total: 3, completed: 1, failed: 2 });
  const out = await linesOf(b.output_file_id);
  assert.deepEqual(out.map((l) => l.custom_id), ['a']);
  assert.equal(out[0].response.status_code, 200);
  const errs = await linesOf(b.error_file_id);
  assert.deepEqual(errs.map((l) => l.custom_id), ['b', 'c']);
  for (const e of errs) {
    assert.equal(e.response, null);
    assert.equal(e.error.code, 'batch_expired');
    assert.match(e.id, /^batch_req_/);
  }
  // 'b' was stopped at the deadline, not run to its end: once the engine is idle, under a quarter of
  // its 16 x 4000 tokens were generated (and the engine serves the next request). Measured 3043; a
  // line of several choices used to run on to its end (35031: the route looked for a client gone
  // only while no choice had a token to deliver).
  const r = await oa.chat.completions.create(chatLine('x', 'hi', 2).body);
  assert.equal(r.choices[0].finish_reason, 'length');
  const made = (await generated()) - before;
  assert.ok(made >= 2 + 2 && made < 16 * 4000 / 4, `${made} tokens generated`);
}]);

tests.push(['expires_after on uploads and output_expires_after on batches: the files say when they go', async () => {
  const file = await oa.files.create({ file: await toFile(Buffer.from(jsonl([chatLine('a', 'hi', 2)])), 'e.jsonl'),
                                       purpose: 'batch', expires_after: { anchor: 'created_at', seconds: 3600 } });
  assert.equal(file.expires_at, file.created_at + 3600);
  assert.equal((await oa.files.retrieve(file.id)).expires_at, file.expires_at);
  const b = await ended((await oa.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions',
                                                   completion_window: '24h',
                                                   output_expires_after: { anchor: 'created_at', seconds: 7200 } })).id);
  assert.equal(b.status, 'completed');
  const out = await oa.files.retrieve(b.output_file_id);
  assert.equal(out.expires_at, out.created_at + 7200);
  // Without one, none.
  assert.equal((await upload(jsonl([chatLine('b', 'hi', 2)]))).expires_at, null);
  // OpenAI's bounds: an hour to 30 days, anchored at created_at; both parts.
  const form = (fields) => {
    const fd = new FormData();
    fd.append('purpose', 'batch');
    fd.append('file', new Blob(['{}\n']), 'x.jsonl');
    for (const [k, v] of fields) fd.append(k, v);
    return fetch(`${URL_BASE}/v1/files`, { method: 'POST', body: fd, headers: { Authorization: `Bearer ${API_KEY}` } })
      .then(async (r) => { const text = await r.text(); return { status: r.status, text, json: JSON.parse(text) }; });
  };
  for (const [fields, param] of [
    [[['expires_after[anchor]', 'created_at'], ['expires_after[seconds]', '3599']], 'expires_after.seconds'],
    [[['expires_after[anchor]', 'created_at'], ['expires_after[seconds]', '2592001']], 'expires_after.seconds'],
    [[['expires_after[anchor]', 'last_active_at'], ['expires_after[seconds]', '3600']], 'expires_after.anchor'],
    [[['expires_after[seconds]', '3600']], 'expires_after'],
  ]) assertOpenAIError(await form(fields), 400, param);
  const ok = { input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' };
  for (const [e, param] of [[{ anchor: 'created_at', seconds: 60 }, 'output_expires_after.seconds'],
                            [{ anchor: 'created_at', seconds: 3600.5 }, 'output_expires_after.seconds'],
                            [{ anchor: 'now', seconds: 3600 }, 'output_expires_after.anchor'],
                            [{ anchor: 'created_at', seconds: 3600, x: 1 }, 'output_expires_after.x'],
                            ['1h', 'output_expires_after']])
    assertOpenAIError(await http('POST', '/v1/batches', { ...ok, output_expires_after: e }), 400, param);
}]);

tests.push(['results that outgrow --max-file-store-mb stop the batch: failed, file_store_full', async () => {
  // Each answer carries 16 tokens x 20 alternatives (~18 KB): 150 of them are ~2.7 MB against the 1 MiB store.
  const n = 150;
  const lines = Array.from({ length: n }, (_, i) => ({ ...chatLine(`r${i}`, `line ${i}`, 16),
    body: { ...chatLine(`r${i}`, `line ${i}`, 16).body, ignore_eos: true, logprobs: true, top_logprobs: 20 } }));
  const file = await upload(jsonl(lines));
  const b = await ended((await oa.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions',
                                                   completion_window: '24h' })).id);
  assert.equal(b.status, 'failed');
  assert.equal(b.errors.data[0].code, 'file_store_full');
  assert.equal(b.output_file_id, null);
  // It stopped once its results held the store's room, not after running every line.
  const ran = b.request_counts.completed + b.request_counts.failed;
  assert.ok(ran > 0 && ran < n / 2, JSON.stringify(b.request_counts));
  await oa.files.delete(file.id);
}]);

if (process.env.BATCH_PRIORITY === '1') {
  // --enable-priority-scheduling: a line that sets no priority yields to clients' requests. One line of
  // 200 tokens and then a client's streamed request wait behind a held engine (--max-running-requests
  // 1); on release the client's runs first, though it came later: its 4 tokens are done while the
  // batch's line has not finished (in arrival order they would come only after its 200 tokens).
  tests.push(['under priority scheduling a batch line yields to a client\'s request', async () => {
    const line = { ...chatLine('long', 'Tell me everything.', 200), body: { ...chatLine('long', 'x', 200).body,
                                                                          ignore_eos: true } };
    const file = await upload(jsonl([line]));
    const release = await holdTheEngine(model);
    let b, reader;
    try {
      b = await oa.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
      const end = Date.now() + 20000;
      while (!/^dpserve_num_queue_reqs\{dp_rank="0"\} 1$/m.test((await http('GET', '/metrics')).text)) {
        assert.ok(Date.now() < end, 'the batch line never reached the engine queue');
        await new Promise((res) => setTimeout(res, 20));
      }
      const res = await fetch(`${URL_BASE}/v1/chat/completions`, {
        method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${API_KEY}` },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, stream: true }),
      });
      assert.equal(res.status, 200);
      reader = res.body.getReader();
      while (!/^dpserve_num_queue_reqs\{dp_rank="0"\} 2$/m.test((await http('GET', '/metrics')).text)) {
        assert.ok(Date.now() < end, 'the client request never reached the engine queue');
        await new Promise((res) => setTimeout(res, 20));
      }
    } finally {
      await release();
    }
    let text = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
    assert.ok(text.includes('data: [DONE]'), text.slice(-200));
    const after = await oa.batches.retrieve(b.id);
    assert.equal(after.request_counts.completed, 0, JSON.stringify(after.request_counts));
    const done = await ended(b.id);
    assert.deepEqual(done.request_counts, { total: 1, completed: 1, failed: 0 });
  }]);
}

tests.push(['bad requests are 400s / 404s naming the field; the store bound', async () => {
  const file = await upload(jsonl([chatLine('a', 'hi', 1)]));
  const ok = { input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' };
  for (const [body, param] of [
    [{ ...ok, endpoint: '/v1/moderations' }, 'endpoint'],
    ...['0h', '24', 'h', '31d', '24H', '1.5h', 24].map((w) => [{ ...ok, completion_window: w }, 'completion_window']),
    [{ ...ok, input_file_id: 5 }, 'input_file_id'],
    [{ endpoint: ok.endpoint, completion_window: '24h' }, 'input_file_id'],
    [{ ...ok, extra: 1 }, 'extra'],
    [{ ...ok, metadata: { k: 5 } }, 'metadata.k'],
  ]) assertOpenAIError(await http('POST', '/v1/batches', body), 400, param);
  assertOpenAIError(await http('POST', '/v1/batches', { ...ok, input_file_id: 'file-nothere' }), 404, 'input_file_id');
  assertOpenAIError(await http('GET', '/v1/batches/batch_nothere'), 404, 'batch_id');
  assertOpenAIError(await http('GET', '/v1/files/file-nothere'), 404, 'file_id');
  assertOpenAIError(await http('GET', '/v1/files?limit=0'), 400, 'limit');
  assertOpenAIError(await http('GET', '/v1/files?x=1'), 400, 'x');
  // Uploads: a purpose other than batch, no file, no purpose, a JSON body.
  const form = (parts) => {
    const fd = new FormData();
    for (const [k, v] of parts) fd.append(k, v);
    return fetch(`${URL_BASE}/v1/files`, { method: 'POST', body: fd, headers: { Authorization: `Bearer ${API_KEY}` } })
      .then(async (r) => ({ status: r.status, text: await r.clone().text(), json: await r.json() }));
  };
  const blob = new Blob(['{}\n']);
  assertOpenAIError(await form([['purpose', 'fine-tune'], ['file', blob, 'x.jsonl']]), 400, 'purpose');
  assertOpenAIError(await form([['purpose', 'batch']]), 400, 'file');
  assertOpenAIError(await form([['file', blob, 'x.jsonl']]), 400, 'purpose');
  assertOpenAIError(await form([['purpose', 'batch'], ['file', blob, 'x.jsonl'], ['expires_after', 'x']]), 400, 'expires_after');
  assert.equal(assertOpenAIError(await http('POST', '/v1/files', { purpose: 'batch' }), 400).code, 'invalid_multipart');
  // --max-file-store-mb 1: a file beyond what is left is refused, and nothing else is lost.
  const big = await form([['purpose', 'batch'], ['file', new Blob([Buffer.alloc(1100000, 97)]), 'big.jsonl']]);
  assert.equal(assertOpenAIError(big, 400, 'file').code, 'file_store_full');
  assert.equal((await oa.files.retrieve(file.id)).id, file.id);
}]);

// The priority server runs only its own test (the others need the key and store flags of the first).
run(process.env.BATCH_PRIORITY === '1' ? tests.filter(([name]) => name === 'model' || name.startsWith('under priority'))
                                       : tests);
