// /v1/embeddings with the official `openai` Node client (client.embeddings.create: base64 by default,
// which the client decodes, and encoding_format 'float'), /v1/rerank and vLLM's /v1/score over fetch, against the real
// `dpserve serve --is-embedding` on the tiny random Qwen3 with the real Qwen3 tokenizer (no
// sentence-transformers files: last-token pooling, L2-normalised). The values themselves are checked
// against the NumPy reference in tests/model/test_embeddings_reference.py; here: the client's view,
// the shapes, agreement between the encodings, batching and one-by-one, and every bad input.
//
// EMBEDDINGS_OFF=1: the same model served for generation: /v1/embeddings is a 400 naming --is-embedding,
// /v1/rerank still works (Qwen3-Reranker is a CausalLM, run without --is-embedding as in SGLang), and vLLM's
// /v1/score gives the rerank score (on the embedding server: the cosine of the two embeddings).
//
// EMBEDDINGS_BOUNDS=1: a server with small queue bounds and --shutdown-timeout 1 (tests/e2e/CMakeLists.txt):
// the bounds' 400 / 429, a client leaving mid-batch, and SIGTERM cutting a batch off (last: it stops the server).
import net from 'node:net';

import { assert, assertOpenAIError, client, http, modelName, run, URL_BASE } from './e2e_util.mjs';
import { metrics, sleep, total } from './reliability_util.mjs';

const oa = client();
const OFF = process.env.EMBEDDINGS_OFF === '1';
const BOUNDS = process.env.EMBEDDINGS_BOUNDS === '1';
let model;
let hidden;

async function tokens(text) {
  const r = await http('POST', '/tokenize', { prompt: text });
  assert.equal(r.status, 200, r.text);
  return r.json.tokens;
}

function norm(v) {
  return Math.sqrt(v.reduce((s, x) => s + x * x, 0));
}

const rerankBody = (extra = {}) => ({
  model, query: 'Where is the Eiffel tower?', documents: ['It is in Paris.', 'Pandas eat bamboo.', 'no'], ...extra,
});

async function checkRerank() {
  const r = await http('POST', '/v1/rerank', rerankBody({ top_n: 2 }));
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.model, model);
  assert.equal(r.json.results.length, 2);
  for (const x of r.json.results) {
    assert.ok(Number.isInteger(x.index) && x.index >= 0 && x.index < 3);
    assert.ok(x.relevance_score > 0 && x.relevance_score < 1, `score ${x.relevance_score}`);
    assert.equal(x.document.text, rerankBody().documents[x.index]);
  }
  assert.ok(r.json.results[0].relevance_score >= r.json.results[1].relevance_score);
  assert.ok(r.json.usage.prompt_tokens > 0);
  // vLLM's other paths of the same route.
  for (const path of ['/rerank', '/v2/rerank']) {
    const a = await http('POST', path, rerankBody({ top_n: 2 }));
    assert.equal(a.status, 200, a.text);
    assert.deepEqual(a.json.results, r.json.results, path);
  }
}

function cosine(a, b) {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) { ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; }
  return ab / Math.sqrt(aa * bb);
}

// vLLM's /v1/score (and /score) body and its answer's scores, checked for vLLM's shape.
async function pairScores(body, path = '/v1/score') {
  const r = await http('POST', path, { model, ...body });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.object, 'list');
  assert.equal(r.json.model, model);
  assert.match(r.json.id, /^score-/);
  assert.ok(Number.isInteger(r.json.created));
  r.json.data.forEach((d, j) => {
    assert.equal(d.index, j);
    assert.equal(d.object, 'score');
  });
  assert.equal(r.json.usage.completion_tokens, 0);
  assert.equal(r.json.usage.total_tokens, r.json.usage.prompt_tokens);
  return { scores: r.json.data.map((d) => d.score), usage: r.json.usage };
}

// Refusals of vLLM's scoring shape on either kind of server.
async function pairScoreRefusals() {
  const cases = [
    [{ text_1: 'q' }, 'text_2'],
    [{ text_2: ['a'] }, 'text_1'],
    [{ text_1: 'q', text_2: [] }, 'text_2'],
    [{ text_1: 'q', text_2: ['a', ''] }, 'text_2'],
    [{ text_1: ['a', 'b'], text_2: ['c', 'd', 'e'] }, 'text_2'],
    [{ text_1: [3], text_2: ['a'] }, 'text_1'],
    [{ text_1: { type: 'image_url' }, text_2: ['a'] }, 'text_1'],
    [{ text_1: 'q', text_2: ['a'], query: 'q' }, 'query'],  // SGLang's shape mixed in
    [{ text_1: 'q', text_2: ['a'], label_token_ids: [1] }, 'label_token_ids'],
    [{ text_1: 'q', text_2: ['a'], encoding_format: 'float' }, 'encoding_format'],
    [{ text_1: 'q', text_2: Array(1025).fill('a') }, 'text_2'],
  ];
  for (const [body, param] of cases) assertOpenAIError(await http('POST', '/v1/score', { model, ...body }), 400, param);
}

const on = [
  ['embeddings.create default (base64, decoded by the client) equals encoding_format float', async () => {
    const b = await oa.embeddings.create({ model, input: 'The quick brown fox' });
    const f = await oa.embeddings.create({ model, input: 'The quick brown fox', encoding_format: 'float' });
    assert.equal(b.object, 'list');
    assert.equal(b.model, model);
    assert.equal(b.data.length, 1);
    assert.equal(b.data[0].object, 'embedding');
    assert.equal(b.data[0].index, 0);
    const vb = Array.from(b.data[0].embedding);
    const vf = f.data[0].embedding;
    assert.ok(Array.isArray(vf));
    assert.equal(vb.length, hidden);
    assert.equal(vf.length, hidden);
    // base64 carries the float32 values; JSON prints them as float32 too: the same numbers.
    for (let i = 0; i < hidden; i++) assert.equal(Math.fround(vf[i]), vb[i], `value ${i}`);
    assert.ok(Math.abs(norm(vf) - 1) < 1e-5, `L2-normalised: norm ${norm(vf)}`);
    const n = (await tokens('The quick brown fox')).length;
    assert.equal(f.usage.prompt_tokens, n);
    assert.equal(f.usage.total_tokens, n);
  }],
  ['a list of strings, token ids and lists of ids: in order, each equal to its single answer', async () => {
    const texts = ['hello', 'a longer sentence about embeddings and rerankers', 'hello'];
    const batch = await oa.embeddings.create({ model, input: texts, encoding_format: 'float', user: 'u-1' });
    assert.deepEqual(batch.data.map((d) => d.index), [0, 1, 2]);
    const ids = await tokens(texts[1]);
    const one = await oa.embeddings.create({ model, input: texts[1], encoding_format: 'float' });
    const byIds = await oa.embeddings.create({ model, input: ids, encoding_format: 'float' });
    const byIdLists = await oa.embeddings.create({ model, input: [ids, ids.slice(0, 3)], encoding_format: 'float' });
    for (const other of [one.data[0], byIds.data[0], byIdLists.data[0]])
      for (let i = 0; i < hidden; i++)
        assert.ok(Math.abs(other.embedding[i] - batch.data[1].embedding[i]) < 1e-5, `value ${i}`);
    assert.equal(byIdLists.data.length, 2);
    assert.equal(byIdLists.usage.prompt_tokens, ids.length + 3);
    // The same text twice gives the same vector; two different texts do not.
    assert.deepEqual(batch.data[0].embedding, batch.data[2].embedding);
    assert.notDeepEqual(batch.data[0].embedding, batch.data[1].embedding);
  }],
  ['float values are written as float32 (shortest form), not as the doubles they widen to', async () => {
    const r = await http('POST', '/v1/embeddings', { model, input: 'The quick brown fox', encoding_format: 'float' });
    assert.equal(r.status, 200, r.text);
    const b = await oa.embeddings.create({ model, input: 'The quick brown fox' });
    const texts = r.text.slice(r.text.indexOf('"embedding":[') + 13, r.text.indexOf(']')).split(',');
    assert.equal(texts.length, hidden);
    texts.forEach((t, i) => {
      // float32 needs at most 9 significant digits to read back exactly; a double's form has up to 17.
      const digits = t.replace(/^-/, '').replace(/e.*$/i, '').replace('.', '').replace(/^0+/, '');
      assert.ok(digits.length <= 9, `value ${i} written as ${t}`);
      assert.equal(Math.fround(Number(t)), b.data[0].embedding[i], `value ${i} reads back as the same float32`);
    });
  }],
  ['one flat list of ids is one input: bounded by the context, not by the 2048 inputs per request', async () => {
    const r = await http('POST', '/v1/embeddings', { model, input: Array(2049).fill(7), encoding_format: 'float' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.data.length, 1);
    assert.equal(r.json.usage.prompt_tokens, 2049);
    assertOpenAIError(await http('POST', '/v1/embeddings', { model, input: Array(2049).fill([7]) }), 400, 'input');
  }],
  ['truncate_prompt_tokens (vLLM): an input keeps its last k tokens, as if only they were sent', async () => {
    const text = 'a longer sentence about embeddings and rerankers';
    const ids = await tokens(text);
    const k = 4;
    assert.ok(ids.length > k, `${ids.length} tokens`);
    const cut = await http('POST', '/v1/embeddings',
      { model, input: [ids, ids, ids.slice(0, 2)], truncate_prompt_tokens: k, encoding_format: 'float' });
    assert.equal(cut.status, 200, cut.text);
    const cutText = await http('POST', '/v1/embeddings', { model, input: text, truncate_prompt_tokens: k, encoding_format: 'float' });
    assert.equal(cutText.status, 200, cutText.text);
    assert.equal(cutText.json.usage.prompt_tokens, k);
    const tail = await oa.embeddings.create({ model, input: ids.slice(-k), encoding_format: 'float' });
    for (const d of [...cut.json.data.slice(0, 2), cutText.json.data[0]])
      for (let i = 0; i < hidden; i++)
        assert.ok(Math.abs(d.embedding[i] - tail.data[0].embedding[i]) < 1e-5, `input ${d.index} value ${i}`);
    // A shorter input is left whole.
    const short = await oa.embeddings.create({ model, input: ids.slice(0, 2), encoding_format: 'float' });
    assert.deepEqual(cut.json.data[2].embedding, short.data[0].embedding);
    assert.equal(cut.json.usage.prompt_tokens, k + k + 2);
    // -1: what the context holds, so an input past the context is cut instead of refused.
    const long = await http('POST', '/v1/embeddings', { model, input: Array(5000).fill(7), truncate_prompt_tokens: -1 });
    assert.equal(long.status, 200, long.text);
    assert.ok(long.json.usage.prompt_tokens < 5000, `${long.json.usage.prompt_tokens} tokens`);
    assertOpenAIError(await http('POST', '/v1/embeddings', { model, input: Array(5000).fill(7) }), 400, 'input');
    for (const bad of [0, -2, 'x', 1.5, 10 ** 7])
      assertOpenAIError(await http('POST', '/v1/embeddings', { model, input: 'hi', truncate_prompt_tokens: bad }),
        400, 'truncate_prompt_tokens');
  }],
  ['null user and encoding_format mean the defaults', async () => {
    const r = await http('POST', '/v1/embeddings', { model, input: 'hi', user: null, encoding_format: null, dimensions: null });
    assert.equal(r.status, 200, r.text);
    assert.ok(Array.isArray(r.json.data[0].embedding), 'encoding_format null is float');
    assert.equal((await http('POST', '/v1/rerank', { ...rerankBody(), user: null })).status, 200);
  }],
  ['metrics: an embedding input or rerank document is a pooled output, not a generated token', async () => {
    const before = await metrics();
    const e = await oa.embeddings.create({ model, input: ['one', 'two', 'three'] });
    const r = await http('POST', '/v1/rerank', rerankBody());
    assert.equal(r.status, 200, r.text);
    const after = await metrics();
    const d = (name) => total(after, name) - total(before, name);
    assert.equal(d('dpserve_generation_tokens_total'), 0);
    assert.equal(d('sglang:generation_tokens_total'), 0);
    assert.equal(d('dpserve_pooled_outputs_total'), 3 + 3);
    assert.equal(d('dpserve_http_prompt_tokens_total'), e.usage.prompt_tokens + r.json.usage.prompt_tokens);
    assert.equal(d('dpserve_e2e_request_latency_seconds_count'), 2);
  }],
  ['concurrent requests batch together and each gets its own vector', async () => {
    const texts = Array.from({ length: 8 }, (_, i) => `sentence number ${i} ${'x'.repeat(i * 5)}`);
    const alone = await oa.embeddings.create({ model, input: texts, encoding_format: 'float' });
    const each = await Promise.all(texts.map((t) => oa.embeddings.create({ model, input: t, encoding_format: 'float' })));
    each.forEach((r, k) => {
      for (let i = 0; i < hidden; i++) assert.ok(Math.abs(r.data[0].embedding[i] - alone.data[k].embedding[i]) < 1e-5);
    });
  }],
  ['bad input: 400 naming the field', async () => {
    const big = Array.from({ length: 40000 }, () => 9);
    const cases = [
      [{ model, input: [] }, 'input'],
      [{ model, input: '' }, 'input'],
      [{ model, input: ['ok', ''] }, 'input'],
      [{ model, input: [[]] }, 'input'],
      [{ model, input: [151936] }, 'input'],
      [{ model, input: [-1] }, 'input'],
      [{ model, input: [[1, 2], [1e12]] }, 'input'],
      [{ model, input: big }, 'input'],
      [{ model, input: [1, 'a'] }, 'input'],
      [{ model, input: ['a', [1]] }, 'input'],  // mixed items (docs/api.md): strings and id lists
      [{ model, input: [[1], 'a'] }, 'input'],
      [{ model, input: { text: 'a' } }, 'input'],
      [{ model }, 'input'],
      [{ model, input: 'a', encoding_format: 'int8' }, 'encoding_format'],
      [{ model, input: 'a', dimensions: 8 }, 'dimensions'],
      [{ model, input: 'a', user: 5 }, 'user'],
      [{ model, input: 'a', truncate: true }, 'truncate'],
      [{ model: 5, input: 'a' }, 'model'],
    ];
    for (const [body, param] of cases) assertOpenAIError(await http('POST', '/v1/embeddings', body), 400, param);
    assertOpenAIError(await http('POST', '/v1/embeddings', { model: 'other', input: 'a' }), 404, 'model');
    // Ids and strings in one list: said so, not "a list of token ids holds integers only".
    assert.match(assertOpenAIError(await http('POST', '/v1/embeddings', { model, input: [1, 'a'] }), 400).message,
      /mixes token ids and strings/);
    // Through the client too: its error carries the status and the server's message.
    await assert.rejects(oa.embeddings.create({ model, input: '' }), (e) => e.status === 400 && /input/.test(e.message));
    // The server goes on serving.
    assert.equal((await oa.embeddings.create({ model, input: 'still here' })).data.length, 1);
  }],
  ['generation routes are refused on an embedding server, naming --is-embedding', async () => {
    for (const [path, body] of [['/v1/chat/completions', { model, messages: [{ role: 'user', content: 'hi' }] }],
      ['/v1/completions', { model, prompt: 'hi' }], ['/generate', { text: 'hi' }],
      ['/v1/responses', { model, input: 'hi' }]]) {
      const e = assertOpenAIError(await http('POST', path, body), 400);
      assert.match(e.message, /--is-embedding/, path);
    }
    // SGLang's model info says so too (what routers read to send a model only embedding work).
    assert.equal((await http('GET', '/get_model_info')).json.is_generation, false);
  }],
  ['rerank on the embedding server', checkRerank],
  ['vLLM /v1/score and /score (text_1, text_2): the cosine of the two texts\' embeddings, 1:N and pair by pair', async () => {
    const texts = ['Where is the Eiffel tower?', 'It is in Paris.', 'Pandas eat bamboo.', 'a longer sentence about rerankers'];
    const e = (await oa.embeddings.create({ model, input: texts, encoding_format: 'float' })).data.map((d) => d.embedding);
    const n = await Promise.all(texts.map(async (t) => (await tokens(t)).length));
    const close = (got, want, what) => got.forEach((g, j) => assert.ok(Math.abs(g - want[j]) < 1e-5, `${what} ${j}: ${g} vs ${want[j]}`));
    // One text_1 against each text_2 (its own text among them: a cosine of 1).
    const one = await pairScores({ text_1: texts[0], text_2: texts });
    close(one.scores, texts.map((_, j) => cosine(e[0], e[j])), '1:N pair');
    assert.ok(Math.abs(one.scores[0] - 1) < 1e-5, `a text against itself: ${one.scores[0]}`);
    assert.equal(one.usage.prompt_tokens, n[0] + n.reduce((a, b) => a + b, 0));  // text_1 embedded once
    // Pair by pair, and at vLLM's other path.
    const pairs = await pairScores({ text_1: [texts[0], texts[2]], text_2: [texts[1], texts[3]] }, '/score');
    close(pairs.scores, [cosine(e[0], e[1]), cosine(e[2], e[3])], 'N:N pair');
    assert.equal(pairs.usage.prompt_tokens, n[0] + n[1] + n[2] + n[3]);
    // One string each is one pair.
    close((await pairScores({ text_1: [texts[1]], text_2: texts[2] })).scores, [cosine(e[1], e[2])], '1:1 pair');
    // truncate_prompt_tokens cuts every text as /v1/embeddings does.
    const k = 3;
    const cut = (await oa.embeddings.create({ model, input: texts.slice(0, 2), encoding_format: 'float', truncate_prompt_tokens: k }))
      .data.map((d) => d.embedding);
    const t = await pairScores({ text_1: texts[0], text_2: texts[1], truncate_prompt_tokens: k });
    close(t.scores, [cosine(cut[0], cut[1])], 'truncated pair');
    assert.equal(t.usage.prompt_tokens, 2 * k);
  }],
  ['vLLM /v1/score bad input: 400 naming the field', pairScoreRefusals],
  ['rerank bad input: 400 naming the field', async () => {
    const cases = [
      [{ model, documents: ['a'] }, 'query'],
      [{ model, query: '', documents: ['a'] }, 'query'],
      [{ model, query: 'q' }, 'documents'],
      [{ model, query: 'q', documents: [] }, 'documents'],
      [{ model, query: 'q', documents: [{ text: 'a' }] }, 'documents'],
      [{ model, query: 'q', documents: ['a'], top_n: 0 }, 'top_n'],
      [{ model, query: 'q', documents: ['a'], return_documents: 'yes' }, 'return_documents'],
      [{ model, query: 'q', documents: ['a'], instruct: 3 }, 'instruct'],
      [{ model, query: 'q', documents: ['a'], rank_fields: ['x'] }, 'rank_fields'],
      [{ model, query: 'q', documents: ['word '.repeat(40000)] }, 'documents'],
      [{ model, query: 'word '.repeat(40000), documents: ['a'] }, 'query'],  // the query alone is too long
    ];
    for (const [body, param] of cases) assertOpenAIError(await http('POST', '/v1/rerank', body), 400, param);
  }],
];

const off = [
  ['/v1/embeddings without --is-embedding: 400 naming the flag', async () => {
    const e = assertOpenAIError(await http('POST', '/v1/embeddings', { model, input: 'a' }), 400);
    assert.match(e.message, /--is-embedding/);
    await assert.rejects(oa.embeddings.create({ model, input: 'a' }), (x) => x.status === 400 && /--is-embedding/.test(x.message));
  }],
  ['rerank on a generation server', checkRerank],
  ['vLLM /v1/score (text_1, text_2) on a generation server: the reranker score /v1/rerank gives', async () => {
    const q = rerankBody().query, docs = rerankBody().documents;
    const rr = async (query, documents) => {
      const r = await http('POST', '/v1/rerank', { model, query, documents });
      assert.equal(r.status, 200, r.text);
      const out = [];
      for (const x of r.json.results) out[x.index] = x.relevance_score;
      return { scores: out, tokens: r.json.usage.prompt_tokens };
    };
    const want = await rr(q, docs);
    const got = await pairScores({ text_1: q, text_2: docs });
    got.scores.forEach((g, j) => assert.ok(Math.abs(g - want.scores[j]) < 1e-6, `pair ${j}: ${g} vs ${want.scores[j]}`));
    assert.equal(got.usage.prompt_tokens, want.tokens);
    // Pair by pair: each text_1 is the query of its own pair.
    const q2 = 'What do pandas eat?';
    const pairs = await pairScores({ text_1: [q, q2], text_2: [docs[0], docs[1]] }, '/score');
    assert.ok(Math.abs(pairs.scores[0] - want.scores[0]) < 1e-6);
    assert.ok(Math.abs(pairs.scores[1] - (await rr(q2, [docs[1]])).scores[0]) < 1e-6);
    // A reranker prompt is never cut: truncate_prompt_tokens is an embedding server's.
    assertOpenAIError(await http('POST', '/v1/score', { model, text_1: q, text_2: docs, truncate_prompt_tokens: 4 }),
      400, 'truncate_prompt_tokens');
  }],
  ['vLLM /v1/score bad input on a generation server: 400 naming the field', pairScoreRefusals],
  ['generation still works', async () => {
    const r = await oa.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 3 });
    assert.ok(r.choices[0].message.content !== undefined);
    assert.equal((await http('GET', '/get_model_info')).json.is_generation, true);
  }],
];

// Run with --max-queued-tokens 1100000 --max-queued-embedding-values 100000 (1562 inputs of this
// model's vectors) --shutdown-timeout 1.
const LEN = 1000;
// `n` distinct inputs (distinct first ids: no shared prefix to reuse) of `len` ids: seconds of work here.
const bigBody = (n, len) =>
  JSON.stringify({ model, input: Array.from({ length: n }, (_, i) => [1000 + i, ...Array(len - 1).fill(9)]) });

// Sends `body` to /v1/embeddings on a raw socket (nothing read back); resolves once it is admitted.
async function sendRaw(body) {
  const before = total(await metrics(), 'dpserve_http_requests_inflight');
  const u = new URL(URL_BASE);
  const sock = net.connect(Number(u.port), u.hostname);
  sock.on('error', () => {});
  sock.write('POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
  sock.write(body);
  for (let i = 0; i < 600 && total(await metrics(), 'dpserve_http_requests_inflight') <= before; i++) await sleep(50);
  return sock;
}

async function waitIdle() {
  for (let i = 0; i < 1200; i++) {
    const m = await metrics();
    if (total(m, 'dpserve_http_requests_inflight') === 0 && total(m, 'dpserve_num_running_reqs') === 0 &&
        total(m, 'dpserve_num_queue_reqs') === 0) return;
    await sleep(100);
  }
  assert.fail('the server did not go idle within 120 s');
}

const notGeneration = (msg) => assert.doesNotMatch(msg, /max_tokens|logprob/, msg);

const bounds = [
  ['a request alone over a bound: 400 naming input, in words of inputs', async () => {
    let e = assertOpenAIError(await http('POST', '/v1/embeddings', { model, input: Array(2048).fill([9]) }), 400, 'input');
    assert.match(e.message, /--max-queued-embedding-values/);
    notGeneration(e.message);
    const long = JSON.stringify({ model, input: Array(1200).fill(Array(LEN).fill(9)) });
    e = assertOpenAIError(await http('POST', '/v1/embeddings', long), 400, 'input');
    assert.match(e.message, /1200 inputs/);
    notGeneration(e.message);
  }],
  ['a client leaving mid-batch cancels its remaining inputs; meanwhile others get a 429 speaking of inputs', async () => {
    const before = await metrics();
    assert.ok('dpserve_pooled_outputs_total' in before, 'the engine counts the inputs it computed');
    // Short inputs: their vectors come every few ms, so the route is never left waiting on one
    // (which is when the old loop looked at the connection).
    const inputs = 1500;
    const sock = await sendRaw(bigBody(inputs, 100));
    // 600 more vectors do not fit beside the 1500 in flight.
    const e = assertOpenAIError(await http('POST', '/v1/embeddings', { model, input: Array(600).fill([9]) }), 429);
    assert.match(e.message, /600 inputs/);
    notGeneration(e.message);
    sock.destroy();
    await waitIdle();
    const computed = total(await metrics(), 'dpserve_pooled_outputs_total') - total(before, 'dpserve_pooled_outputs_total');
    // Before the fix the route noticed the close only once the batch was done: all of them were computed.
    assert.ok(computed <= inputs * 0.75, `${computed} of ${inputs} inputs computed though the client left`);
    assert.equal((await oa.embeddings.create({ model, input: 'still serving' })).data.length, 1);
  }],
  ['SIGTERM: a batch cut off by --shutdown-timeout is a 503 (retry elsewhere), not a 400', async () => {
    const pending = http('POST', '/v1/embeddings', bigBody(1000, LEN));
    for (let i = 0; i < 600 && total(await metrics(), 'dpserve_http_requests_inflight') === 0; i++) await sleep(50);
    process.kill(Number(process.env.DPSERVE_PID), 'SIGTERM');
    const e = assertOpenAIError(await pending, 503);
    assert.equal(e.code, 'server_draining');
  }],
];

model = await modelName();
hidden = (await http('GET', '/get_server_info')).json.hidden_size;
assert.ok(hidden > 0);
await run(OFF ? off : BOUNDS ? bounds : on);
