// Hostile request bodies against a fresh server (its peak RSS is this test's): ~30 MB of tiny JSON
// values must be answered promptly with a 4xx, with the server's peak memory a small multiple of
// the body and its resident memory back near where it was afterwards. Before dpserve parsed bodies
// itself, 10M `{}` kept threads busy for minutes (quadratic parsing) and `[[],...]` in an ignored
// field took 0.9 GB, 450 MB of it kept.
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { URL_BASE, assert, http, run } from './e2e_util.mjs';
import { sleep } from './reliability_util.mjs';

const PID = Number(process.env.DPSERVE_PID);
const { hostname: HOST, port: PORT } = new URL(URL_BASE);

// The serving process's resident and peak memory, in MiB.
function memory() {
  const status = readFileSync(`/proc/${PID}/status`, 'utf8');
  const kib = (key) => Number(status.match(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm'))[1]);
  return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
}

// POSTs `body` (a Buffer) on a raw socket and returns {status, json}.
function postRaw(path, body) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: HOST, port: Number(PORT) });
    const chunks = [];
    s.on('data', (d) => chunks.push(d));
    s.on('error', reject);
    s.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const status = Number(text.split(' ')[1]);
      const at = text.indexOf('\r\n\r\n');
      let json;
      try { json = JSON.parse(text.slice(at + 4)); } catch { json = undefined; }
      resolve({ status, json, text: text.slice(0, 300) });
    });
    s.on('connect', () => {
      s.write(`POST ${path} HTTP/1.1\r\nHost: ${HOST}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
      s.write(body);
    });
  });
}

// `${head}[item,item,...]${tail}` of about `mib` MiB.
function repeated(head, item, tail, mib) {
  const n = Math.floor((mib << 20) / (item.length + 1));
  return Buffer.from(head + Array(n).fill(item).join(',') + tail);
}

async function settled() {
  // The connection's thread frees the body after the reply is sent; give it a moment.
  await sleep(500);
  return memory();
}

let base;
run([
  ['baseline', async () => {
    const r = await http('POST', '/v1/completions', { prompt: 'Once', max_tokens: 2 });
    assert.equal(r.status, 200);
    base = await settled();
    console.log(`  baseline rss ${base.rss.toFixed(0)} MiB, peak ${base.peak.toFixed(0)} MiB`);
  }],
  ['~30 MB of [] in a field the route does not know: 400 naming it, the value never parsed', async () => {
    const body = repeated('{"prompt": "hi", "x": [', '[]', ']}', 30);
    const r = await postRaw('/v1/completions', body);
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.error.param, 'x');
    const m = await settled();
    const mib = body.length / (1 << 20);
    console.log(`  body ${mib.toFixed(0)} MiB: peak +${(m.peak - base.rss).toFixed(0)} MiB, after +${(m.rss - base.rss).toFixed(0)} MiB`);
    assert.ok(m.peak - base.rss < 3 * mib, `peak ${m.peak} MiB from ${base.rss} MiB for a ${mib} MiB body`);
    assert.ok(m.rss - base.rss < 16, `resident ${m.rss} MiB after, ${base.rss} before`);
  }],
  ['~30 MB of [] in a known field: 413 once the parsed value would outgrow its budget, memory returned', async () => {
    const body = repeated('{"prompt": [', '[]', ']}', 30);
    const mib = body.length / (1 << 20);
    for (let i = 0; i < 3; i++) {  // repeated: what is kept must not add up
      const r = await postRaw('/v1/completions', body);
      assert.equal(r.status, 413, r.text);
      assert.equal(r.json.error.code, 'body_too_complex');
      const m = await settled();
      console.log(`  body ${mib.toFixed(0)} MiB: peak +${(m.peak - base.rss).toFixed(0)} MiB, after +${(m.rss - base.rss).toFixed(0)} MiB`);
      assert.ok(m.peak - base.rss < 8 * mib, `peak ${m.peak} MiB from ${base.rss} MiB for a ${mib} MiB body`);
      assert.ok(m.rss - base.rss < 32, `resident ${m.rss} MiB after round ${i}, ${base.rss} before`);
    }
  }],
  ['~30 MB of {} objects (10M) in a known field is answered at once, not after minutes', async () => {
    for (const [path, head] of [['/v1/completions', '{"prompt": ['], ['/v1/chat/completions', '{"messages": [']]) {
      const r = await postRaw(path, repeated(head, '{}', ']}', 30));
      assert.ok(r.status === 413 || r.status === 400, `${path}: ${r.text}`);
    }
    const m = await settled();
    assert.ok(m.rss - base.rss < 32, `resident ${m.rss} MiB after, ${base.rss} before`);
  }],
  ['deep nesting is refused while parsing', async () => {
    const r = await postRaw('/v1/completions', Buffer.from('{"prompt": ' + '['.repeat(100000) + ']'.repeat(100000) + '}'));
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error.message, /nests deeper than 64/);
  }],
  ['the server still serves', async () => {
    const r = await http('POST', '/v1/completions', { prompt: 'Once', max_tokens: 2 });
    assert.equal(r.status, 200, r.text);
  }],
]);
