// Hostile or careless clients must not hurt others. run_e2e starts the server with
// --http-read-timeout 2 --http-request-timeout 20 --max-total-tokens 1024:
//  - a client trickling its body (never silent for 2 s) is cut off by the 20 s body deadline
//    (--http-request-timeout, counted from the end of its headers), and one that stops mid-body by
//    the 2 s read timeout; normal clients are served meanwhile;
//  - 300 connections that send nothing or trickle headers (more than cpp-httplib's old fixed pool
//    of 256 threads, each holding a thread) do not keep a normal client from being served; once
//    silent they are ended by the read and keep-alive timeouts, and /metrics counts them while open.
//    (Headers have no overall deadline: a client trickling headers forever holds its thread; see
//    docs/reliability.md.)
//  - clients that drop their streams mid-way free their KV: nothing stays held once idle, and the
//    whole pool is usable again without preemption.
import net from 'node:net';
import { URL_BASE, assert, http, run } from './e2e_util.mjs';
import { abortedStream, complete, metrics, sleep, total, waitIdle, kvPagesHeldByRequests } from './reliability_util.mjs';

const { hostname: HOST, port: PORT } = new URL(URL_BASE);

// A raw TCP client; `closedBy` is set when the server ends the connection.
function rawClient() {
  const s = net.connect({ host: HOST, port: Number(PORT) });
  const st = { sock: s, closed: false, received: '', closedAt: 0 };
  s.on('data', (d) => { st.received += d.toString('utf8'); });
  s.on('close', () => { st.closed = true; st.closedAt = Date.now(); });
  s.on('error', () => {});
  st.ready = new Promise((res, rej) => { s.once('connect', res); s.once('error', rej); });
  return st;
}

async function normalRequests(k) {
  for (let i = 0; i < k; i++) {
    const r = await complete({ prompt: `Tom went ${i}`, max_tokens: 8, temperature: 0 });
    assert.ok(['length', 'stop'].includes(r.finish));
  }
  assert.equal((await http('GET', '/health')).status, 200);
}

async function waitFor(pred, ms, what) {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

run([
  ['slow and stalled bodies are cut off and do not block other clients', async () => {
    const before = total(await metrics(), 'dpserve_http_slow_requests_closed_total');
    const body = JSON.stringify({ prompt: 'Once upon a time there was a very slow client', max_tokens: 4, padding: 'x'.repeat(200) });
    const head = `POST /v1/completions HTTP/1.1\r\nHost: ${HOST}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    // Trickler: 3 bytes every 0.5 s (never silent for the 2 s read timeout), ~50 s for the whole body.
    const trickle = rawClient();
    await trickle.ready;
    trickle.sock.write(head);
    let sent = 0;
    const ticker = setInterval(() => {
      if (trickle.closed || sent >= body.length) return;
      trickle.sock.write(body.slice(sent, sent + 3));
      sent += 3;
    }, 500);
    // Staller: half the body, then nothing.
    const stall = rawClient();
    await stall.ready;
    stall.sock.write(head + body.slice(0, body.length >> 1));
    try {
      await normalRequests(5);
      await waitFor(() => stall.closed, 30000, 'the server to close the stalled body');
      await waitFor(() => trickle.closed, 90000, 'the server to close the trickled body');
    } finally {
      clearInterval(ticker);
      trickle.sock.destroy();
      stall.sock.destroy();
    }
    console.log(`  trickler cut off after ${sent} of ${body.length} body bytes`);
    assert.ok(sent < body.length, 'the trickler was cut off before its body was complete');
    assert.ok(!/^HTTP\/1\.1 200/.test(trickle.received), 'no completion for a cut-off request');
    const after = total(await metrics(), 'dpserve_http_slow_requests_closed_total');
    assert.ok(after - before >= 1, 'the request deadline closed it (counted in /metrics)');
    await normalRequests(2);
  }],
  ['300 idle and header-trickling connections do not block a normal client', async () => {
    const base = total(await metrics(), 'dpserve_http_connections');
    const idle = Array.from({ length: 150 }, () => rawClient());
    const slowHeaders = Array.from({ length: 150 }, () => rawClient());
    await Promise.all([...idle, ...slowHeaders].map((c) => c.ready));
    for (const c of slowHeaders) c.sock.write(`GET /health HTTP/1.1\r\nHost: ${HOST}\r\n`);
    let n = 0;
    const ticker = setInterval(() => {
      n++;
      for (const c of slowHeaders) if (!c.closed) c.sock.write(`X-Slow-${n}: 1\r\n`);
    }, 500);
    try {
      // The server has accepted all 300 (each on its own thread) before the normal client comes.
      let conns = 0;
      for (let i = 0; i < 600 && conns < 300; i++) {
        conns = total(await metrics(), 'dpserve_http_connections');
        if (conns < 300) await sleep(50);
      }
      assert.ok(conns >= 300, `the server holds the 300 connections (it reports ${conns})`);
      await normalRequests(5);
      // Served while the 150 header tricklers (each holding a server thread) were all still connected.
      const open = slowHeaders.filter((c) => !c.closed).length;
      console.log(`  served 5 completions with ${open} header-trickling and ${idle.filter((c) => !c.closed).length} silent connections open`);
      assert.equal(open, slowHeaders.length, 'the header tricklers were still connected');
      // Silent, they are ended by the server: the header tricklers by the 2 s read timeout (then the
      // keep-alive timeout), the idle ones by the keep-alive timeout.
      clearInterval(ticker);
      await waitFor(() => slowHeaders.every((c) => c.closed), 30000, 'the server to close the silenced header tricklers');
      await waitFor(() => idle.every((c) => c.closed), 30000, 'the server to close the silent connections');
    } finally {
      clearInterval(ticker);
      for (const c of [...idle, ...slowHeaders]) c.sock.destroy();
    }
    assert.ok(slowHeaders.every((c) => !/^HTTP\/1\.1 200/.test(c.received)), 'no header trickler got a 200');
    // The gauge counts them only while they are open.
    let conns = Infinity;
    for (let i = 0; i < 600 && conns > base + 10; i++) {
      conns = total(await metrics(), 'dpserve_http_connections');
      if (conns > base + 10) await sleep(50);
    }
    assert.ok(conns <= base + 10, `the server reports ${conns} connections after they closed (${base} before)`);
    await normalRequests(1);
  }],
  ['clients dropping streams mid-way free their KV', async () => {
    const m0 = await waitIdle();
    assert.equal(kvPagesHeldByRequests(m0), 0, 'idle server holds no request pages');
    const abortedBefore = m0['dpserve_finished_choices_total{reason="abort"}'] || 0;
    const info = (await http('GET', '/get_server_info')).json;
    const pool = Number(info.max_total_tokens);
    const long = Math.min(Number(info.context_length) - 16, Math.floor(pool / 3));
    const N = 40;
    for (let b = 0; b < N; b += 10) {
      await Promise.all(Array.from({ length: 10 }, (_, i) =>
        abortedStream({ prompt: `Story ${b + i} begins`, max_tokens: long, temperature: 0, ignore_eos: true }, 1 + (i % 3))));
    }
    let m;
    for (let i = 0; i < 200; i++) {
      m = await waitIdle();
      if ((m['dpserve_finished_choices_total{reason="abort"}'] || 0) - abortedBefore >= N) break;
      await sleep(100);
    }
    assert.equal((m['dpserve_finished_choices_total{reason="abort"}'] || 0) - abortedBefore, N, 'every dropped stream was aborted');
    assert.equal(kvPagesHeldByRequests(m), 0, 'no pages held by requests after the aborts');
    console.log(`  after ${N} dropped streams: ${total(m, 'dpserve_kv_pages_used')} pages used, ` +
      `${total(m, 'dpserve_kv_pages_cached')} of them prefix cache, ${total(m, 'dpserve_kv_pages_total')} total`);
    // The whole pool is usable: requests filling ~90 % of it run side by side without preemption.
    const p0 = total(m, 'dpserve_preemptions_total');
    const fill = Math.floor((pool * 0.9) / 3) - 8;
    const rs = await Promise.all([0, 1, 2].map((i) => complete({ prompt: `Fill ${i}`, max_tokens: fill, temperature: 0, ignore_eos: true })));
    for (const r of rs) assert.equal(r.completion_tokens, fill);
    assert.equal(total(await metrics(), 'dpserve_preemptions_total'), p0, 'no preemption: the dropped streams left no KV behind');
  }],
]);
