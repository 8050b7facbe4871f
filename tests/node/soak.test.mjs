// Soak: a mixed load (streaming, non-streaming and SGLang requests, streams dropped mid-way, malformed
// and invalid requests) for DPSERVE_SOAK_SECONDS (default 300) against the server run_e2e started,
// sampling the VmRSS of the server's process tree (the launcher and every rank). Memory must stay
// bounded: total RSS at the end within 5 % of the RSS at the end of warm-up (the first half of the
// run: on a loaded machine the allocator's arenas were still filling at 20 %, then flat; a leak per
// request keeps growing through the second half as it did through the first). Also: every well-formed request succeeded, every bad one got a 4xx, and the server is idle
// with no KV held by requests at the end. Stops by itself; run_e2e stops the server.
import { URL_BASE, assert } from './e2e_util.mjs';
import { abortedStream, complete, completeStream, metrics, post, processTree, rssKiB, sleep, total, waitIdle,
  kvPagesHeldByRequests } from './reliability_util.mjs';

const SECONDS = Number(process.env.DPSERVE_SOAK_SECONDS || 300);
const WORKERS = Number(process.env.DPSERVE_SOAK_WORKERS || 3);
const MAX_GROWTH = 0.05;
const PID = Number(process.env.DPSERVE_PID);
assert.ok(SECONDS >= 10 && PID > 0, 'DPSERVE_SOAK_SECONDS >= 10 and DPSERVE_PID set');

// Deterministic choice of request kinds, so a failure can be replayed.
let seed = 12345;
const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };

const counts = {};
const failures = [];
const bump = (k) => { counts[k] = (counts[k] || 0) + 1; };

const PROMPTS = ['Once upon a time', 'The little dog', 'Lily and Ben', 'Tom had a red ball', 'One day, a cat', 'Mom said'];

async function one(deadline) {
  const p = PROMPTS[Math.floor(rnd() * PROMPTS.length)] + (rnd() < 0.5 ? ` ${Math.floor(rnd() * 1000)}` : '');
  const maxTokens = 8 + Math.floor(rnd() * 56);
  const x = rnd();
  if (x < 0.35) {
    const r = await completeStream({ prompt: p, max_tokens: maxTokens, temperature: 0 });
    assert.ok(['length', 'stop'].includes(r.finish));
    bump('stream');
  } else if (x < 0.6) {
    const r = await complete({ prompt: p, max_tokens: maxTokens, temperature: rnd() < 0.5 ? 0 : 0.8, seed: 7 });
    assert.ok(['length', 'stop'].includes(r.finish));
    bump('non_stream');
  } else if (x < 0.7) {
    const r = await post('/generate', { text: p, sampling_params: { max_new_tokens: maxTokens, temperature: 0 } });
    assert.equal(r.status, 200, r.text.slice(0, 200));
    bump('generate');
  } else if (x < 0.85) {
    await abortedStream({ prompt: p, max_tokens: 200, temperature: 0, ignore_eos: true }, 1 + Math.floor(rnd() * 4));
    bump('dropped_stream');
  } else {
    const bad = [
      '{"prompt": "unterminated',
      { prompt: p, max_tokens: -3 },
      { prompt: p, temperature: 'hot' },
      { messages: 'not a list' },
      { prompt: [[1, 2, 99999999]], max_tokens: 4 },
    ][Math.floor(rnd() * 5)];
    const path = typeof bad === 'object' && 'messages' in bad ? '/v1/chat/completions' : '/v1/completions';
    const r = await post(path, bad);
    assert.ok(r.status >= 400 && r.status < 500, `bad request got ${r.status}: ${r.text.slice(0, 200)}`);
    assert.ok(r.json && r.json.error, 'bad request gets an error body');
    bump('bad_request');
  }
}

async function worker(deadline) {
  while (Date.now() < deadline) {
    try {
      await one(deadline);
    } catch (e) {
      failures.push(String(e && e.stack ? e.stack : e));
      if (failures.length > 20) return;
    }
  }
}

function sampleRss() {
  const procs = processTree(PID).map((pid) => ({ pid, ...rssKiB(pid) })).filter((p) => p.kib > 0);
  const server = procs.filter((p) => p.name.startsWith('dpserve'));
  return { t: 0, total: server.reduce((s, p) => s + p.kib, 0), procs };
}

async function main() {
  const t0 = Date.now();
  const deadline = t0 + SECONDS * 1000;
  const every = Math.max(1000, (SECONDS * 1000) / 60);
  const samples = [];
  let running = true;
  const sampler = (async () => {
    while (running) {
      const s = sampleRss();
      s.t = (Date.now() - t0) / 1000;
      samples.push(s);
      await sleep(every);
    }
  })();
  await Promise.all(Array.from({ length: WORKERS }, () => worker(deadline)));
  const idle = await waitIdle();
  await sleep(500);
  running = false;
  await sampler;
  const last = sampleRss();
  last.t = (Date.now() - t0) / 1000;
  samples.push(last);

  console.log(`soak ${SECONDS} s, ${WORKERS} workers: ${JSON.stringify(counts)}`);
  console.log('RSS series (t s: total KiB of dpserve processes):');
  console.log(samples.map((s) => `${s.t.toFixed(0)}:${s.total}`).join(' '));
  console.log('processes at the end:', last.procs.map((p) => `${p.name}[${p.pid}] ${p.kib} KiB`).join(', '));
  const warm = samples.find((s) => s.t >= SECONDS * 0.5);
  const growth = (last.total - warm.total) / warm.total;
  console.log(`RSS at end of warm-up (t=${warm.t.toFixed(0)} s) ${warm.total} KiB, at end ${last.total} KiB: ` +
    `growth ${(growth * 100).toFixed(2)} % (limit ${MAX_GROWTH * 100} %); peak ${Math.max(...samples.map((s) => s.total))} KiB`);

  let ok = true;
  const check = (cond, msg) => { if (!cond) { ok = false; console.log(`FAIL ${msg}`); } };
  check(failures.length === 0, `${failures.length} requests failed:\n${failures.slice(0, 5).join('\n')}`);
  for (const k of ['stream', 'non_stream', 'generate', 'dropped_stream', 'bad_request']) check((counts[k] || 0) > 0, `no ${k} request ran`);
  check(last.procs.some((p) => p.name.startsWith('dpserve')), 'server processes found');
  check(growth < MAX_GROWTH, `RSS grew ${(growth * 100).toFixed(2)} % after warm-up`);
  check(kvPagesHeldByRequests(idle) === 0, `KV pages held by requests at the end: ${kvPagesHeldByRequests(idle)}`);
  check(total(idle, 'dpserve_http_requests_inflight') === 0, 'no request in flight at the end');
  const m = await metrics();
  check(total(m, 'dpserve_healthy') === 1, 'server still healthy');
  console.log(ok ? 'soak passed' : 'soak FAILED');
  process.exit(ok ? 0 : 1);
}

// Bounded even if a request hangs: duration plus two minutes to drain.
setTimeout(() => { console.log('soak: timed out'); process.exit(1); }, (SECONDS + 120) * 1000).unref();
main().catch((e) => { console.log(`soak: ${e && e.stack ? e.stack : e}`); process.exit(1); });
