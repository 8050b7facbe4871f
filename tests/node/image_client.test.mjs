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
import { assert, client, modelName, run } from './e2e_util.mjs';

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
