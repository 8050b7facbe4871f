// The official OpenAI Node client sends chat completions with images (data: URLs of the PNG and JPEG
// that tests/e2e/vl_client_fixture.py made with Pillow) to the real `dpserve serve` on a tiny random
// Qwen2.5-VL; greedy answers must equal the offline `dpserve generate --image` (no HTTP, no chat
// template: it gets the prompt jinja2 rendered from the same template) on the same images: the text,
// the token counts, and each token's logprob against the log-softmax of generate's --dump-logits rows
// (a random model repeats a few tokens, so the logprobs are what sees a slightly different image).
// VL_FIXTURE names the fixture's folder (cases.json: the model, each case's parts and rendered prompt).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toFile } from 'openai';

import { assert, assertOpenAIError, client, http, modelName, run } from './e2e_util.mjs';

const fix = JSON.parse(readFileSync(`${process.env.VL_FIXTURE}/cases.json`, 'utf8'));
const N = 12;
const TOL = 1e-4;  // logprob agreement: the same kernels on the same batch shape
const oa = client();
let model;
// Per case: generate's {prompt_ids, output_ids, text, finish_reason} and logprobs[i], the log-softmax
// of the output's i-th token in the row that chose it.
const offline = [];

function content(parts) {
  return parts.map((p) => (p.text !== undefined
    ? { type: 'text', text: p.text }
    : { type: 'image_url', image_url: { url: `data:${p.mime};base64,${readFileSync(p.image).toString('base64')}` } }));
}

function generate(c, dir, k) {
  const dump = join(dir, `logits${k}.bin`);
  const args = ['generate', '--model-path', fix.model, '--prompt', c.rendered, '-n', String(N), '--temperature', '0',
    '--json', '--threads', '1', '--no-bos', '--dump-logits', dump];  // the template writes every special token
  for (const p of c.parts) if (p.image) args.push('--image', p.image);
  const out = JSON.parse(execFileSync(process.env.DPSERVE_BIN, args,
    { encoding: 'utf8', timeout: 120000, stdio: ['ignore', 'pipe', 'ignore'] }));
  const buf = readFileSync(dump);
  const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const rows = out.prompt_ids.length + out.output_ids.length - 1;
  assert.equal(all.length % rows, 0, 'dumped logits are whole rows');
  const vocab = all.length / rows;
  out.logprobs = out.output_ids.map((id, i) => {
    const at = (out.prompt_ids.length - 1 + i) * vocab;
    const row = all.subarray(at, at + fix.token_limit);  // the ids with a token: what logprobs cover
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    let sum = 0;
    for (const v of row) sum += Math.exp(v - max);
    return row[id] - max - Math.log(sum);
  });
  return out;
}

// /metrics as {name or name{labels}: value}.
async function metrics() {
  const r = await http('GET', '/metrics');
  assert.equal(r.status, 200);
  const m = {};
  for (const line of r.text.split('\n')) {
    const hit = /^([a-z_:]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (hit) m[hit[1]] = Number(hit[2]);
  }
  return m;
}

// The server's request log lines for chat completions from line `from` on (DPSERVE_LOG: run_e2e.sh).
async function chatLogLines(from, want) {
  for (let tries = 0; ; tries++) {
    const lines = readFileSync(process.env.DPSERVE_LOG, 'utf8').split('\n').slice(from)
      .filter((l) => l.includes('POST /v1/chat/completions'));
    if (lines.length >= want || tries > 50) return lines;
    await new Promise((res) => setTimeout(res, 100));
  }
}

function request(c, extra = {}) {
  return oa.chat.completions.create({
    model, messages: [{ role: 'user', content: content(c.parts) }], max_tokens: N, temperature: 0, ...extra,
  });
}

run([
  ['offline generate: the images change the answer (else this test could not see a dropped image)', async () => {
    // Before any HTTP call: execFileSync blocks the event loop, so a keep-alive socket idle across
    // it would miss the server's close (5 s) and the next request would hang up on it.
    const dir = mkdtempSync(join(tmpdir(), 'dpserve-image-client-'));
    try {
      for (const [k, c] of fix.cases.entries()) offline.push(generate(c, dir, k));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    model = await modelName();
    assert.ok(offline[0].output_ids.length > 0);
    assert.notDeepEqual(offline[0].output_ids, offline[1].output_ids, 'the PNG and the JPEG give the same tokens');
    assert.notDeepEqual(offline[2].logprobs, offline[1].logprobs, 'a second image changes nothing');
  }],
  ['chat with one image (PNG, JPEG) and with two: the offline answer and logprobs', async () => {
    for (const [i, c] of fix.cases.entries()) {
      const r = await request(c, { logprobs: true, top_logprobs: 2 });
      const want = offline[i];
      assert.equal(r.object, 'chat.completion');
      assert.equal(r.choices[0].message.role, 'assistant');
      assert.equal(r.choices[0].message.content, want.text, `case ${i}`);
      assert.equal(r.choices[0].finish_reason, want.finish_reason, `case ${i}`);
      assert.equal(r.usage.completion_tokens, want.output_ids.length, `case ${i}`);
      // The image's token count after the resize, counted by the server as generate counts it.
      assert.equal(r.usage.prompt_tokens, want.prompt_ids.length, `case ${i}`);
      const lp = r.choices[0].logprobs.content;
      assert.equal(lp.length, want.output_ids.length);
      assert.equal(Buffer.concat(lp.map((t) => Buffer.from(t.bytes))).toString('utf8'), want.text);
      for (const [j, t] of lp.entries()) {
        assert.ok(Math.abs(t.logprob - want.logprobs[j]) <= TOL,
          `case ${i} token ${j}: logprob ${t.logprob}, generate's logits give ${want.logprobs[j]}`);
        assert.ok(t.logprob >= t.top_logprobs[0].logprob - 1e-4, 'greedy picks the argmax');
      }
    }
  }],
  ['Responses: an input_image by file_id (a "vision" file) is that image: the offline answer', async () => {
    const files = new Map();
    for (const c of fix.cases)
      for (const p of c.parts)
        if (p.image && !files.has(p.image))
          files.set(p.image, await oa.files.create({ file: await toFile(readFileSync(p.image), p.image.split('/').pop()),
                                                     purpose: 'vision' }));
    const input = (c) => [{ role: 'user', content: c.parts.map((p) => (p.text !== undefined
      ? { type: 'input_text', text: p.text } : { type: 'input_image', file_id: files.get(p.image).id })) }];
    for (const [i, c] of fix.cases.entries()) {
      const r = await oa.responses.create({ model, input: input(c), max_output_tokens: N, temperature: 0 });
      assert.equal(r.output_text, offline[i].text, `case ${i}`);
      assert.equal(r.usage.input_tokens, offline[i].prompt_ids.length, `case ${i}`);
    }
    // The stored input keeps the file's id (and no URL), as OpenAI lists it.
    const r = await oa.responses.create({ model, input: input(fix.cases[0]), max_output_tokens: 1 });
    const items = await oa.responses.inputItems.list(r.id, { include: ['message.input_image.image_url'] });
    const img = files.get(fix.cases[0].parts[1].image);
    assert.deepEqual(items.data[0].content[1], { type: 'input_image', image_url: null, file_id: img.id, detail: 'auto' });
    // Bad ids: not the caller's, not an image, or beside an image_url.
    const ask = (part) => http('POST', '/v1/responses', { model, max_output_tokens: 1,
                                                          input: [{ role: 'user', content: [part] }] });
    assert.equal(assertOpenAIError(await ask({ type: 'input_image', file_id: 'file-nope' }), 400, 'input').code,
                 'file_not_found');
    const text = await oa.files.create({ file: await toFile(Buffer.from('not an image'), 'x.txt'), purpose: 'vision' });
    assertOpenAIError(await ask({ type: 'input_image', file_id: text.id }), 400, 'input');
    assertOpenAIError(await ask({ type: 'input_image', file_id: img.id, image_url: 'data:image/png;base64,AA==' }), 400,
                      'input[0].content[0].file_id');
    // A follow-up replays the stored conversation: the file must still be there.
    await oa.files.delete(img.id);
    assert.equal(assertOpenAIError(await http('POST', '/v1/responses', { model, max_output_tokens: 1, input: 'More?',
                                                                         previous_response_id: r.id }), 400, 'input').code,
                 'file_not_found');
  }],
  ['/metrics counts the images sent and their time; the request log splits each one\'s time to first token', async () => {
    const before = await metrics();
    const logFrom = readFileSync(process.env.DPSERVE_LOG, 'utf8').split('\n').length - 1;
    // Fresh images only (a prefix-cache hit would skip the tower): 1, 2 and 1 images, one streamed;
    // then a bad image (a 400: nothing counted) and a text-only chat (no image fields in its log line).
    const f = fix.fresh;
    const sent = [[f[0]], [f[1], f[2]], [f[3]]];
    for (const [k, imgs] of sent.entries()) {
      const parts = [{ text: 'Describe' }, ...imgs];
      if (k === 2) {
        for await (const ch of await request({ parts }, { stream: true })) assert.ok(ch.choices);
      } else {
        const r = await request({ parts });
        assert.equal(r.choices[0].finish_reason, 'length');
      }
    }
    const truncated = readFileSync(f[0].image).subarray(0, 100).toString('base64');
    const bad = await http('POST', '/v1/chat/completions', { model, max_tokens: 2, messages: [{ role: 'user',
      content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${truncated}` } }] }] });
    assertOpenAIError(bad, 400, 'messages[0].content[0].image_url.url');
    await oa.chat.completions.create({ model, max_tokens: 2, messages: [{ role: 'user', content: 'Hello' }] });

    const after = await metrics();
    const delta = (k) => after[k] - before[k];
    const nImages = sent.flat().length;
    assert.equal(delta('dpserve_images_total'), nImages, 'images materialized');
    assert.equal(delta('dpserve_images_encoded_total'), nImages, 'vision tower runs');
    for (const stage of ['decode', 'preprocess', 'encoder'])
      assert.ok(delta(`dpserve_image_seconds_total{stage="${stage}"}`) > 0, `${stage} seconds grew`);

    const lines = await chatLogLines(logFrom, sent.length + 2);
    assert.equal(lines.length, sent.length + 2, lines.join('\n'));
    const field = (l, k) => { const m = new RegExp(` ${k}=([0-9.]+)`).exec(l); return m ? Number(m[1]) : undefined; };
    let decodeMs = 0;
    let encoderMs = 0;
    let preprocessMs = 0;
    for (const [k, imgs] of sent.entries()) {
      const l = lines[k];
      assert.equal(field(l, 'images'), imgs.length, l);
      for (const key of ['image_decode_ms', 'image_preprocess_ms', 'image_encoder_ms', 'prefill_ms'])
        assert.ok(field(l, key) >= 0, `${key} in ${l}`);
      decodeMs += field(l, 'image_decode_ms');
      preprocessMs += field(l, 'image_preprocess_ms');
      encoderMs += field(l, 'image_encoder_ms');
      // The split fits in the request's own time (the line's last field).
      const total = Number(/ ([0-9.]+)ms$/.exec(l)[1]);
      assert.ok(field(l, 'image_encoder_ms') + field(l, 'prefill_ms') <= total + 0.1, l);
    }
    // The log's figures (rounded to 1 us) add up to the counters' growth.
    const near = (ms, stage) => {
      const want = 1e3 * delta(`dpserve_image_seconds_total{stage="${stage}"}`);
      assert.ok(Math.abs(ms - want) <= 0.0006 * sent.length + 1e-6, `${stage}: the log's ${ms} ms, the counter's ${want} ms`);
    };
    near(decodeMs, 'decode');
    near(preprocessMs, 'preprocess');
    near(encoderMs, 'encoder');
    for (const l of lines.slice(sent.length)) assert.ok(!/ images=/.test(l), `no image fields: ${l}`);
  }],
  ['chat streaming with an image: deltas concatenate to the offline answer, usage last', async () => {
    for (const i of [1, 2]) {
      const stream = await request(fix.cases[i], { stream: true, stream_options: { include_usage: true } });
      let text = '';
      let finish = null;
      let usage = null;
      let chunks = 0;
      for await (const ch of stream) {
        if (ch.usage) { usage = ch.usage; assert.equal(ch.choices.length, 0); continue; }
        chunks++;
        assert.equal(ch.object, 'chat.completion.chunk');
        if (ch.choices[0].delta.content) text += ch.choices[0].delta.content;
        finish = ch.choices[0].finish_reason || finish;
      }
      assert.ok(chunks > 2, 'streamed in several chunks');
      assert.equal(text, offline[i].text, `case ${i}`);
      assert.equal(finish, offline[i].finish_reason);
      assert.equal(usage.prompt_tokens, offline[i].prompt_ids.length);
      assert.equal(usage.completion_tokens, offline[i].output_ids.length);
    }
  }],
]);
