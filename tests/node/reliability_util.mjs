// Helpers for the reliability tests (overload, KV exhaustion, hostile clients, soak) against a real
// `dpserve serve` started by tests/e2e/run_e2e.sh: /metrics parsing, plain completions over fetch,
// SSE reading, waiting for the server to go idle, and the RSS of the server's process tree.
import { readFileSync, readdirSync } from 'node:fs';
import { assert, URL_BASE } from './e2e_util.mjs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// {"name{labels}": value} for every sample line of /metrics.
export async function metrics() {
  const res = await fetch(`${URL_BASE}/metrics`, { signal: AbortSignal.timeout(30000) });
  assert.equal(res.status, 200, '/metrics');
  const out = {};
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

// Sum of a metric over all its label sets (e.g. every dp_rank), 0 when absent.
export function total(m, name) {
  let s = 0;
  for (const [k, v] of Object.entries(m)) if (k === name || k.startsWith(`${name}{`)) s += v;
  return s;
}

// Values of a metric per label set.
export function series(m, name) {
  return Object.entries(m).filter(([k]) => k === name || k.startsWith(`${name}{`)).map(([, v]) => v);
}

// POST a JSON body; returns {status, headers, json, text}.
export async function post(path, body, { timeoutMs = 300000, signal } = {}) {
  const res = await fetch(`${URL_BASE}${path}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: signal || AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, json, text };
}

// A non-streaming completion: {text, finish, completion_tokens}.
export async function complete(body) {
  const r = await post('/v1/completions', { ...body, stream: false });
  assert.equal(r.status, 200, `completion: ${r.text.slice(0, 300)}`);
  const c = r.json.choices[0];
  return { text: c.text, finish: c.finish_reason, completion_tokens: r.json.usage.completion_tokens };
}

// A streaming completion read to the end: {text, finish, completion_tokens, chunks}.
export async function completeStream(body) {
  const res = await fetch(`${URL_BASE}/v1/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
    signal: AbortSignal.timeout(300000),
  });
  assert.equal(res.status, 200, `stream status ${res.status}`);
  const raw = await res.text();
  const events = raw.split('\n\n').filter((e) => e.length > 0).map((e) => e.replace(/^data: /, ''));
  assert.equal(events[events.length - 1], '[DONE]', 'stream ends with [DONE]');
  let text = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  for (const e of events.slice(0, -1)) {
    const j = JSON.parse(e);
    if (j.usage && (!j.choices || j.choices.length === 0)) { usage = j.usage; continue; }
    chunks++;
    text += j.choices[0].text;
    finish = j.choices[0].finish_reason || finish;
  }
  assert.ok(usage, 'stream carries usage');
  return { text, finish, completion_tokens: usage.completion_tokens, chunks };
}

// Opens a stream, reads `chunksToRead` SSE events, then drops the connection.
export async function abortedStream(body, chunksToRead = 1) {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 120000);
  try {
    const res = await fetch(`${URL_BASE}/v1/completions`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: ac.signal,
      body: JSON.stringify({ ...body, stream: true }),
    });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    let seen = 0;
    let buf = '';
    while (seen < chunksToRead) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += Buffer.from(value).toString('utf8');
      seen = buf.split('\n\n').length - 1;
    }
    ac.abort();
    return seen;
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
}

// Waits until no generation request is in flight, running or queued; returns the metrics then.
export async function waitIdle(timeoutMs = 120000) {
  const t0 = Date.now();
  for (;;) {
    const m = await metrics();
    if (total(m, 'dpserve_http_requests_inflight') === 0 && total(m, 'dpserve_num_running_reqs') === 0 &&
        total(m, 'dpserve_num_queue_reqs') === 0) return m;
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(`server not idle after ${timeoutMs} ms: inflight ${total(m, 'dpserve_http_requests_inflight')}, ` +
        `running ${total(m, 'dpserve_num_running_reqs')}, queued ${total(m, 'dpserve_num_queue_reqs')}`);
    }
    await sleep(100);
  }
}

// KV pages held by requests (not by the prefix cache) summed over DP groups: 0 when nothing leaks.
export function kvPagesHeldByRequests(m) {
  return total(m, 'dpserve_kv_pages_used') - total(m, 'dpserve_kv_pages_cached');
}

// `pid` and all its descendants (mpirun's ranks when the server relaunched itself under mpirun).
export function processTree(pid) {
  const children = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let stat;
    try { stat = readFileSync(`/proc/${d}/stat`, 'utf8'); } catch { continue; }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(Number(d));
  }
  const out = [];
  const todo = [Number(pid)];
  while (todo.length) {
    const p = todo.pop();
    out.push(p);
    for (const c of children.get(p) || []) todo.push(c);
  }
  return out;
}

// VmRSS in KiB of one process (0 if it is gone) and its command name.
export function rssKiB(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const name = (s.match(/^Name:\s+(.*)$/m) || [])[1] || '?';
    const m = s.match(/^VmRSS:\s+(\d+) kB$/m);
    return { name, kib: m ? Number(m[1]) : 0 };
  } catch {
    return { name: '?', kib: 0 };
  }
}
