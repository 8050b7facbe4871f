// Bad requests arriving while other requests stream must fail alone: rank 0 decides them before
// any broadcast, the step loop keeps broadcasting, and every rank carries on. Run against a
// multi-rank DP-attention server, so "every rank carries on" means real MPI ranks in lockstep.
// The good requests' greedy text must equal what the same prompts give one at a time (batch
// invariance: batching and neighbours never change a greedy token).
import { assert, assertOpenAIError, http, modelName, run, sse } from './e2e_util.mjs';

let model;
let hidden;
const prompts = ['Once upon a time', 'The little dog', 'Lily and Tom went', 'One day a bird'];
const refs = [];

async function complete(prompt, n) {
  const r = await http('POST', '/v1/completions', { model, prompt, max_tokens: n, temperature: 0, ignore_eos: true });
  assert.equal(r.status, 200, r.text);
  return r.json.choices[0].text;
}

async function metric(name) {
  const r = await http('GET', '/metrics');
  let sum = 0;
  for (const line of r.text.split('\n')) if (line.startsWith(name)) sum += Number(line.split(' ').pop());
  return sum;
}

// Every way a payload can be refused on the entry rank, sent while good requests run.
function badPayloads() {
  const row = (w, v = 0.01) => Array.from({ length: w }, (_, i) => v * ((i % 7) - 3));
  return [
    ['/generate', { input_embeds: [row(hidden), row(hidden + 1)] }, 'input_embeds'],
    ['/generate', { input_embeds: [row(hidden + 3)] }, 'input_embeds'],
    ['/generate', { input_embeds: [[...row(hidden - 1), 'x']] }, 'input_embeds'],
    ['/generate', { input_embeds: [row(hidden)], input_ids: [1, 2] }, 'text'],
    ['/generate', { input_ids: [1, 2, 1 << 30] }, null],
    ['/generate', { input_ids: [-4] }, null],
    ['/v1/completions', { model, prompt: [1, 99999999] }, 'prompt'],
    ['/v1/completions', { model, prompt: 'a', max_tokens: 1e9 }, 'max_tokens'],
    ['/v1/completions', { model, prompt: 'a', temperature: -1 }, 'temperature'],
    ['/v1/completions', '{"prompt": [1, 2', null],
  ];
}

const tests = [
  ['model name and hidden size', async () => {
    model = await modelName();
    // The server names the width it wants when given the wrong one.
    const r = await http('POST', '/generate', { input_embeds: [[0.5]] });
    const e = assertOpenAIError(r, 400, 'input_embeds');
    const m = /hidden size (\d+)/.exec(e.message);
    assert.ok(m, `error does not name the hidden size: ${e.message}`);
    hidden = Number(m[1]);
    assert.ok(hidden > 1);
  }],
  ['reference: each prompt alone', async () => {
    for (const p of prompts) refs.push(await complete(p, 48));
    assert.ok(refs.every((t) => t.length > 0));
  }],
  ['bad payloads during streaming fail alone; every rank keeps stepping', async () => {
    const steps0 = await metric('dpserve_engine_steps_total');
    const good = prompts.map((p) => complete(p, 48));
    // A valid input_embeds request rides along, so embeds really cross the ranks meanwhile.
    const embeds = http('POST', '/generate', {
      input_embeds: Array.from({ length: 3 }, (_, k) => Array.from({ length: hidden }, (_, i) => 0.02 * Math.sin(i + k))),
      sampling_params: { max_new_tokens: 16, temperature: 0, ignore_eos: true },
    });
    let refused = 0;
    for (let round = 0; round < 3; ++round) {
      const results = await Promise.all(badPayloads().map(async ([path, body, param]) => {
        const r = await http('POST', path, body);
        assertOpenAIError(r, 400, param === null ? undefined : param);
        return 1;
      }));
      refused += results.length;
    }
    const texts = await Promise.all(good);
    for (let i = 0; i < prompts.length; ++i)
      assert.equal(texts[i], refs[i], `prompt ${i} changed while bad requests were refused`);
    const e = await embeds;
    assert.equal(e.status, 200, e.text);
    assert.equal(e.json.meta_info.completion_tokens, 16);
    const steps1 = await metric('dpserve_engine_steps_total');
    assert.ok(steps1 > steps0 + 40, `engine steps went from ${steps0} to ${steps1}`);
    assert.equal(refused, 30);
  }],
  ['input_embeds beyond each rank\'s cache (--embed-cache-requests 2) fail alone, the rest complete', async () => {
    // Six long embeds requests, round-robin over two groups: three live per group, one more than
    // the rank cache holds, so each group evicts its oldest, on every rank of the group alike.
    const body = (k) => ({
      input_embeds: Array.from({ length: 3 }, (_, r) => Array.from({ length: hidden }, (_, i) => 0.02 * Math.sin(i + r + k))),
      sampling_params: { max_new_tokens: 64, temperature: 0, ignore_eos: true },
    });
    const rs = await Promise.all([0, 1, 2, 3, 4, 5].map((k) => http('POST', '/generate', body(k))));
    const done = rs.filter((r) => r.status === 200);
    const evicted = rs.filter((r) => r.status !== 200);
    assert.equal(done.length, 4, rs.map((r) => r.status).join(','));
    for (const r of done) assert.equal(r.json.meta_info.completion_tokens, 64);
    for (const r of evicted) {
      const e = assertOpenAIError(r, r.status);
      assert.match(e.message, /evicted/);
    }
  }],
  ['a stream ended by an engine fault (an evicted input_embeds) gets an error event before [DONE]', async () => {
    const body = (k) => ({
      input_embeds: Array.from({ length: 3 }, (_, r) => Array.from({ length: hidden }, (_, i) => 0.03 * Math.cos(i + r + k))),
      sampling_params: { max_new_tokens: 64, temperature: 0, ignore_eos: true }, stream: true,
    });
    const streams = await Promise.all([0, 1, 2, 3, 4, 5].map((k) => sse('/generate', body(k))));
    let faulted = 0;
    for (const events of streams) {
      assert.equal(events[events.length - 1], '[DONE]', 'every stream ends with [DONE]');
      const parsed = events.slice(0, -1).map((e) => JSON.parse(e));
      const errors = parsed.filter((e) => e.error);
      const last = parsed.filter((e) => !e.error).pop();
      if (last.meta_info.finish_reason.type === 'error') {
        ++faulted;
        assert.equal(errors.length, 1, 'one error event');
        assert.match(errors[0].error.message, /evicted/);
        assert.equal(typeof errors[0].error.type, 'string');
        assert.ok(parsed.indexOf(errors[0]) === parsed.length - 1, 'the error event is the last before [DONE]');
      } else {
        assert.equal(errors.length, 0, 'no error event in a stream that completed');
        assert.equal(last.meta_info.completion_tokens, 64);
      }
    }
    assert.equal(faulted, 2, 'two evicted (one per group)');
  }],
  ['healthy afterwards and a generation still completes', async () => {
    const h = await http('GET', '/health');
    assert.equal(h.status, 200);
    const g = await http('GET', '/health_generate');
    assert.equal(g.status, 200, g.text);
    assert.equal(await complete(prompts[0], 48), refs[0]);
  }],
];

run(tests);
