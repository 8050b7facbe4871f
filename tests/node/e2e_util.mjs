// Helpers for the black-box HTTP tests of `dpserve serve` (started by tests/e2e/run_e2e.sh, which
// exports DPSERVE_URL / DPSERVE_PID / DPSERVE_BIN). A tiny sequential runner: each test is bounded.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import OpenAI from 'openai';

export const URL_BASE = process.env.DPSERVE_URL;
if (!URL_BASE) {
  console.error('DPSERVE_URL is not set: run through tests/e2e/run_e2e.sh');
  process.exit(2);
}
export const API_KEY = process.env.DPSERVE_API_KEY || 'none';

export function client(opts = {}) {
  return new OpenAI({ baseURL: `${URL_BASE}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: 120000, ...opts });
}

// Raw HTTP: returns {status, headers, text, json}.
export async function http(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers } };
  if (API_KEY !== 'none' && !('Authorization' in init.headers)) init.headers.Authorization = `Bearer ${API_KEY}`;
  if (body !== undefined) {
    init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    if (!('Content-Type' in init.headers)) init.headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(`${URL_BASE}${path}`, { ...init, signal: AbortSignal.timeout(120000) });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json };
}

// Reads an SSE response body into the list of `data:` payloads (strings), checking the framing.
export async function sse(path, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (API_KEY !== 'none') headers.Authorization = `Bearer ${API_KEY}`;
  const res = await fetch(`${URL_BASE}${path}`, {
    method: 'POST', headers, body: JSON.stringify(body), signal: AbortSignal.timeout(120000),
  });
  assert.equal(res.status, 200, `SSE ${path}: status ${res.status}`);
  assert.match(res.headers.get('content-type') || '', /^text\/event-stream/);
  const raw = await res.text();
  assert.ok(raw.endsWith('\n\n'), 'SSE body must end with a blank line');
  const events = raw.split('\n\n').slice(0, -1);
  return events.map((e) => {
    assert.ok(e.startsWith('data: '), `SSE event must be a data line: ${JSON.stringify(e.slice(0, 80))}`);
    assert.ok(!e.includes('\n'), 'one data line per event');
    return e.slice(6);
  });
}

export function assertOpenAIError(r, status, param) {
  assert.equal(r.status, status, `want ${status}, got ${r.status}: ${r.text.slice(0, 300)}`);
  assert.ok(r.json && r.json.error, `error body must be {"error": {...}}: ${r.text.slice(0, 300)}`);
  const e = r.json.error;
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0);
  assert.equal(typeof e.type, 'string');
  assert.ok('param' in e && 'code' in e, 'error has param and code');
  if (param !== undefined) assert.equal(e.param, param, `param: ${e.message}`);
  return e;
}

// tokenize() and offlineGreedy() run the CLI synchronously, which blocks the event loop: a pooled
// keep-alive socket the server closes meanwhile (idle > 5 s, e.g. under ASan) is then reused before
// its FIN is seen, and the next request fails with a connection error. So both remember their
// answers; call them before a test's first request (see openai_client.test.mjs) where they are slow.
const cliAnswers = new Map();
function cli(args, timeout, stderr = 'pipe') {
  const key = JSON.stringify(args);
  if (!cliAnswers.has(key))
    cliAnswers.set(key, execFileSync(process.env.DPSERVE_BIN, args,
      { encoding: 'utf8', timeout, stdio: ['ignore', 'pipe', stderr] }));
  return cliAnswers.get(key);
}

// Token ids of `text` by the CLI's tokenizer for the default model.
export function tokenize(text, addSpecial = true) {
  const args = ['tokenize', '--text', text, '--json'];
  if (addSpecial) args.push('--add-special-tokens');
  return JSON.parse(cli(args, 60000));
}

// Greedy text from the offline `dpserve generate` (no server, no batching): an independent path.
export function offlineGreedy(prompt, n) {
  return cli(['generate', '--prompt', prompt, '-n', String(n), '--temperature', '0'], 120000, 'ignore');
}

// A streamed chat completion of ~4000 tokens (ignore_eos): under --max-running-requests 1 it holds
// the engine's one running place, so that other requests wait in the queue, until the returned
// function closes it.
export async function holdTheEngine(model) {
  const ctl = new AbortController();
  const headers = { 'Content-Type': 'application/json' };
  if (API_KEY !== 'none') headers.Authorization = `Bearer ${API_KEY}`;
  const res = await fetch(`${URL_BASE}/v1/chat/completions`, {
    method: 'POST', signal: ctl.signal, headers,
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4000, ignore_eos: true,
                           stream: true }),
  });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  assert.ok(!(await reader.read()).done);
  return async () => {
    ctl.abort();
    await reader.cancel().catch(() => {});
  };
}

export async function modelName() {
  const list = await client().models.list();
  return list.data[0].id;
}

export async function run(tests) {
  let failed = 0;
  for (const [name, fn] of tests) {
    const t0 = Date.now();
    let timer;
    try {
      await Promise.race([
        fn(),
        new Promise((_, rej) => { timer = setTimeout(() => rej(new Error('test timed out after 180 s')), 180000); }),
      ]);
      console.log(`ok   ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    } finally {
      clearTimeout(timer);
    }
  }
  console.log(failed ? `${failed} of ${tests.length} failed` : `all ${tests.length} passed`);
  process.exit(failed ? 1 : 0);
}

export { assert };
