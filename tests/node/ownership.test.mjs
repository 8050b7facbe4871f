// Request ownership, run with --api-key key-a,key-b --admin-api-key key-admin: ids nobody can guess;
// /abort_request cancels only the caller's own requests (any request with the admin key); abort_all
// takes the admin key; a client rid in use by a running request cannot be taken by another.
import { URL_BASE, assert, http, run } from './e2e_util.mjs';
import { sleep } from './reliability_util.mjs';

const A = 'key-a', B = 'key-b', ADMIN = 'key-admin';
const auth = (key) => ({ Authorization: `Bearer ${key}` });

// A streamed /generate of n choices (64 unless given) under `key` (the server runs 2 sequences at a time, so most of
// them wait, live, for seconds). `started` resolves to the first event's id once one
// arrived; `done` to every choice's finish reason when the stream ends.
function longGenerate(key, body, n = 64) {
  let markStarted;
  const started = new Promise((r) => { markStarted = r; });
  const done = (async () => {
    const res = await fetch(`${URL_BASE}/generate`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', ...auth(key) },
      body: JSON.stringify({ text: 'Once upon a time', stream: true,
        sampling_params: { max_new_tokens: 450, temperature: 0, ignore_eos: true, n }, ...body }),
      signal: AbortSignal.timeout(120000),
    });
    if (res.status !== 200) assert.fail(`generate: ${res.status} ${await res.text()}`);
    const finishes = new Array(n).fill(null);
    let buf = '';
    for await (const chunk of res.body) {
      buf += Buffer.from(chunk).toString('utf8');
      let k;
      while ((k = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, k).replace(/^data: /, '');
        buf = buf.slice(k + 2);
        if (ev === '[DONE]') continue;
        const e = JSON.parse(ev);
        markStarted(e.meta_info.id);
        finishes[e.index ?? 0] = e.meta_info.finish_reason?.type ?? null;
      }
    }
    return { finishes };
  })();
  return { started, done };
}

const abort = (key, body) => http('POST', '/abort_request', body, auth(key));

run([
  ['request ids are 128 random bits, not a counter', async () => {
    const ids = [];
    for (let i = 0; i < 6; i++) {
      const r = await http('POST', '/v1/completions', { prompt: 'Hi', max_tokens: 1 }, auth(A));
      assert.equal(r.status, 200, r.text);
      ids.push(r.json.id);
    }
    for (const id of ids) assert.match(id, /^cmpl-[0-9a-f]{32}$/);
    // Consecutive ids share no more hex digits than chance (32 digits, 1/16 each: ~2 on average).
    for (let i = 1; i < ids.length; i++) {
      const a = ids[i - 1].slice(5), b = ids[i].slice(5);
      let same = 0;
      for (let k = 0; k < a.length; k++) same += a[k] === b[k] ? 1 : 0;
      assert.ok(same < 12, `${ids[i - 1]} and ${ids[i]} share ${same} of 32 digits`);
    }
  }],
  ['a caller aborts its own request, not another key\'s', async () => {
    const g = longGenerate(A, { rid: 'job-1' });
    await g.started;
    let r = await abort(B, { rid: 'job-1' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.aborted, 0, 'key-b cannot abort key-a\'s request');
    r = await abort(A, { rid: 'job-1' });
    assert.ok(r.json.aborted >= 1, 'key-a aborts its own');
    // Choices still queued end with abort; one already sampling its last token may still finish.
    const { finishes } = await g.done;
    const aborted = finishes.filter((f) => f === 'abort').length;
    assert.ok(aborted >= 1 && aborted <= r.json.aborted, finishes.join());
  }],
  ['a server-made id aborts that request for its owner only', async () => {
    const g = longGenerate(A, {});
    const first = await g.started;
    assert.match(first, /^gen-[0-9a-f]{32}-\d+$/);
    const rid = first.replace(/-\d+$/, '-63');  // the last choice: still waiting its turn
    assert.equal((await abort(B, { rid })).json.aborted, 0);
    assert.equal((await abort(A, { rid })).json.aborted, 1);
    const { finishes } = await g.done;
    assert.equal(finishes[63], 'abort');
    assert.equal(finishes.filter((f) => f === 'abort').length, 1, finishes.join());
  }],
  ['the admin key aborts anyone\'s request', async () => {
    const g = longGenerate(B, { rid: 'job-2' });
    await g.started;
    assert.ok((await abort(ADMIN, { rid: 'job-2' })).json.aborted >= 1);
    assert.ok((await g.done).finishes.includes('abort'));
  }],
  ['abort_all takes the admin key', async () => {
    // Key B's 64 choices first: once its first token is out, 63 copies x 450 tokens wait behind it at
    // 2 sequences at a time, so abort_all surely finds it live. (Started second, behind key A's 63
    // queued copies, it could start only as they ended and, on a loaded host, end before the abort
    // was sent: a race this order avoids.)
    const g2 = longGenerate(B, { rid: 'all-2' });
    let timer;
    const bound = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('key B\'s request running within a minute')), 60000); });
    await Promise.race([g2.started, bound]);
    clearTimeout(timer);
    // Key A's request, one choice, queued behind B's copies (or not yet arrived when the abort is sent).
    const g1 = longGenerate(A, { rid: 'all-1' }, 1);
    const r = await abort(A, { abort_all: true });
    assert.equal(r.status, 403, r.text);
    assert.equal(r.json.error.param, 'abort_all');
    const ok = await abort(ADMIN, { abort_all: true });
    assert.equal(ok.status, 200, ok.text);
    assert.ok(ok.json.aborted >= 1, `aborted ${ok.json.aborted}`);
    const f2 = (await g2.done).finishes;
    assert.ok(f2.includes('abort'), `aborted ${ok.json.aborted}: ${f2.join()}`);
    // Key A's choice ends one way or the other: aborted if it was registered in time, else by its length.
    const f1 = (await g1.done).finishes;
    assert.ok(f1.every((f) => f === 'abort' || f === 'length'), JSON.stringify(f1));
  }],
  ['a client rid that is live cannot be reused; it can once that request ended', async () => {
    const g = longGenerate(A, { rid: 'dup' });
    await g.started;
    const r = await http('POST', '/generate', { text: 'Hi', rid: 'dup', sampling_params: { max_new_tokens: 2 } }, auth(A));
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.param, 'rid');
    // Another key has its own rids.
    const other = await http('POST', '/generate', { text: 'Hi', rid: 'dup', sampling_params: { max_new_tokens: 2 } }, auth(B));
    assert.equal(other.status, 200, other.text);
    const twice = await http('POST', '/generate', { text: ['a', 'b'], rid: ['x', 'x'], sampling_params: { max_new_tokens: 2 } }, auth(A));
    assert.equal(twice.status, 400, twice.text);
    await abort(A, { rid: 'dup' });
    await g.done;
    await sleep(100);
    const again = await http('POST', '/generate', { text: 'Hi', rid: 'dup', sampling_params: { max_new_tokens: 2 } }, auth(A));
    assert.equal(again.status, 200, again.text);
  }],
  ['the admin key passes the API-key check; a wrong key does not', async () => {
    assert.equal((await http('GET', '/v1/models', undefined, auth(ADMIN))).status, 200);
    assert.equal((await http('GET', '/v1/models', undefined, auth('nope'))).status, 401);
  }],
]);
