// HTTP/1.1 framing at the edges, over raw sockets (what fetch would normalise away): pipelined
// requests answered in order, Content-Length that is not a number, chunked bodies with trailer
// fields, both framings at once, Expect: 100-continue, and Range headers on API routes.
import net from 'node:net';
import { URL_BASE, assert, http, run } from './e2e_util.mjs';

const { hostname: HOST, port: PORT } = new URL(URL_BASE);

// Writes `data` on a new connection and collects everything the server sends until it closes the
// connection or `ms` pass; `half` also ends our side after writing.
function exchange(data, { ms = 15000, half = false } = {}) {
  return new Promise((resolve) => {
    const s = net.connect({ host: HOST, port: Number(PORT) });
    const chunks = [];
    let closed = false;
    const done = () => resolve({ text: Buffer.concat(chunks).toString('utf8'), closed });
    const timer = setTimeout(() => { s.destroy(); done(); }, ms);
    s.on('data', (d) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => { closed = true; clearTimeout(timer); done(); });
    s.on('connect', () => { s.write(data); if (half) s.end(); });
  });
}

// Splits a byte stream of HTTP/1.1 responses (Content-Length framed) into [{status, headers, body}].
function responses(text) {
  const out = [];
  let rest = text;
  while (rest.startsWith('HTTP/1.1 ')) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const head = rest.slice(0, end).split('\r\n');
    const status = Number(head[0].split(' ')[1]);
    const headers = {};
    for (const line of head.slice(1)) {
      const i = line.indexOf(':');
      headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
    }
    const len = Number(headers['content-length'] || 0);
    out.push({ status, headers, body: rest.slice(end + 4, end + 4 + len) });
    rest = rest.slice(end + 4 + len);
  }
  return out;
}

function post(path, body, extra = '') {
  return `POST ${path} HTTP/1.1\r\nHost: ${HOST}\r\nContent-Type: application/json\r\n${extra}` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

run([
  ['pipelined requests are all answered, in order', async () => {
    // Three requests in one write; each asks for a different number of tokens, so the answers'
    // order is visible. cpp-httplib alone answered the first and dropped the rest.
    const bodies = [1, 2, 3].map((k) => JSON.stringify({ prompt: `Tom ${k}`, max_tokens: k, temperature: 0, ignore_eos: true }));
    const r = await exchange(bodies.map((b, i) => post('/v1/completions', b, i === 2 ? 'Connection: close\r\n' : '')).join(''));
    const rs = responses(r.text);
    assert.equal(rs.length, 3, `three answers, got ${rs.length}: ${r.text.slice(0, 300)}`);
    rs.forEach((x, i) => {
      assert.equal(x.status, 200, x.body);
      assert.equal(JSON.parse(x.body).usage.completion_tokens, i + 1, `answer ${i} is to request ${i}`);
    });
    assert.ok(r.closed, 'closed after the request that asked for it');
  }],
  ['a pipelined request after a bad one is not taken as part of its body', async () => {
    // The bad request's framing cannot be trusted, so the connection ends after its 400.
    const good = post('/v1/completions', JSON.stringify({ prompt: 'Hi', max_tokens: 1 }));
    const r = await exchange(`POST /v1/completions HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 12x\r\n\r\n${good}`);
    const rs = responses(r.text);
    assert.equal(rs.length, 1, r.text.slice(0, 300));
    assert.equal(rs[0].status, 400);
    assert.equal(JSON.parse(rs[0].body).error.type, 'invalid_request_error');
    assert.ok(r.closed);
  }],
  ['a negative Content-Length is a 400 naming the header, not a wait for a body', async () => {
    for (const cl of ['-5', '+5', '0x10', '5 5', '99999999999999999999']) {
      const r = await exchange(`POST /v1/completions HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${cl}\r\n\r\n`);
      const rs = responses(r.text);
      assert.equal(rs.length, 1, `${cl}: ${r.text.slice(0, 200)}`);
      assert.equal(rs[0].status, 400, `${cl}: ${rs[0].body}`);
      assert.match(JSON.parse(rs[0].body).error.message, /Content-Length/);
      assert.ok(r.closed, `${cl}: connection closed`);
    }
  }],
  ['a chunked body with extensions and trailer fields is read whole', async () => {
    const body = JSON.stringify({ prompt: 'Once upon a time', max_tokens: 3, temperature: 0 });
    const a = body.slice(0, 10), b = body.slice(10);
    const chunked = `${a.length.toString(16)};note=first\r\n${a}\r\n${b.length.toString(16)}\r\n${b}\r\n0\r\n` +
      'X-Checksum: abc\r\nX-Other: 1\r\n\r\n';
    const r = await exchange(`POST /v1/completions HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n` +
      `Content-Type: application/json\r\nConnection: close\r\n\r\n${chunked}`);
    const rs = responses(r.text);
    assert.equal(rs.length, 1, r.text.slice(0, 300));
    assert.equal(rs[0].status, 200, rs[0].body);
    assert.equal(JSON.parse(rs[0].body).usage.completion_tokens, 3);
  }],
  ['a malformed chunk size or both framings at once is a 400', async () => {
    const bad = [
      'Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
      'Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
      'Transfer-Encoding: gzip\r\n\r\n{}',
    ];
    for (const b of bad) {
      const r = await exchange(`POST /v1/completions HTTP/1.1\r\nHost: ${HOST}\r\n${b}`);
      const rs = responses(r.text);
      assert.equal(rs.length, 1, `${JSON.stringify(b)}: ${r.text.slice(0, 200)}`);
      assert.equal(rs[0].status, 400, rs[0].body);
      assert.ok(r.closed);
    }
  }],
  ['Expect: 100-continue gets the interim answer, then the final one', async () => {
    const body = JSON.stringify({ prompt: 'Hi', max_tokens: 1 });
    const r = await exchange(post('/v1/completions', body, 'Expect: 100-continue\r\nConnection: close\r\n'));
    assert.ok(r.text.startsWith('HTTP/1.1 100 Continue\r\n\r\n'), r.text.slice(0, 100));
    const rs = responses(r.text.slice('HTTP/1.1 100 Continue\r\n\r\n'.length));
    assert.equal(rs.length, 1);
    assert.equal(rs[0].status, 200, rs[0].body);
  }],
  ['Range headers are ignored on API routes: the whole answer, never multipart', async () => {
    const whole = await http('GET', '/v1/models');
    // 2000 ranges in one header line (under cpp-httplib's 8 KiB line limit): once a 284 KB multipart reply.
    const ranges = Array.from({ length: 2000 }, () => '0-0').join(',');
    for (const path of ['/metrics', '/v1/models', '/health']) {
      const r = await exchange(`GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\nRange: bytes=${ranges}\r\nConnection: close\r\n\r\n`);
      const rs = responses(r.text);
      assert.equal(rs.length, 1, `${path}: ${r.text.slice(0, 200)}`);
      assert.equal(rs[0].status, 200, `${path}: ${rs[0].status}`);
      assert.ok(!/multipart/.test(rs[0].headers['content-type'] || ''), `${path}: ${rs[0].headers['content-type']}`);
      if (path === '/v1/models') assert.equal(rs[0].body, whole.text);
    }
    const one = await exchange(`GET /v1/models HTTP/1.1\r\nHost: ${HOST}\r\nRange: bytes=0-3\r\nConnection: close\r\n\r\n`);
    assert.equal(responses(one.text)[0].status, 200);
    assert.equal(responses(one.text)[0].body, whole.text);
  }],
  ['the server still serves normal clients', async () => {
    const r = await http('POST', '/v1/completions', { prompt: 'Once', max_tokens: 2 });
    assert.equal(r.status, 200, r.text);
  }],
]);
