// The official OpenAI Node client against the real `dpserve serve` (stories260K): completions and
// chat, streaming and not, parsed results checked against the offline generator and the tokenizer.
import { API_KEY, URL_BASE, assert, client, http, modelName, offlineGreedy, run, sse, tokenize } from './e2e_util.mjs';

const PROMPT = 'Once upon a time, there was a little';
const N = 40;
const oa = client();
let model;
let greedy;  // the server's greedy completion of PROMPT (N tokens, or fewer at EOS)
// The offline answers, before any request: they block the event loop (e2e_util.mjs).
for (const p of [PROMPT, 'Lily and Ben']) tokenize(p), offlineGreedy(p, N);

async function greedyCompletion(extra = {}) {
  return oa.completions.create({ model, prompt: PROMPT, max_tokens: N, temperature: 0, ...extra });
}

run([
  ['models list', async () => {
    const list = await oa.models.list();
    assert.equal(list.data.length, 1);
    model = list.data[0].id;
    assert.equal(typeof model, 'string');
    assert.equal(list.data[0].object, 'model');
    const info = await http('GET', '/get_server_info');
    assert.equal(info.status, 200);
    assert.equal(info.json.context_length, 512);  // stories260K
    assert.equal(info.json.served_model_name, model);
    // Multi-rank runs say what topology they asked for; the server must really run it.
    if (process.env.DPSERVE_EXPECT_WORLD) {
      assert.equal(info.json.world_size, Number(process.env.DPSERVE_EXPECT_WORLD));
      assert.equal(info.json.dp_size, Number(process.env.DPSERVE_EXPECT_DP));
      const hg = await http('GET', '/health_generate');
      assert.equal(hg.status, 200, hg.text);
      assert.deepEqual([...new Set(hg.json.dp_ranks)].sort(), [...Array(Number(process.env.DPSERVE_EXPECT_DP)).keys()],
        'a test generation ran in every DP group');
    }
  }],
  ['completion (greedy) matches the offline generator', async () => {
    const r = await greedyCompletion();
    assert.equal(r.object, 'text_completion');
    assert.equal(r.model, model);
    assert.equal(r.choices.length, 1);
    const c = r.choices[0];
    greedy = c.text;
    assert.ok(greedy.length > 0);
    assert.ok(['length', 'stop'].includes(c.finish_reason));
    if (c.finish_reason === 'length') assert.equal(r.usage.completion_tokens, N);
    assert.equal(r.usage.prompt_tokens, tokenize(PROMPT).length);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
    assert.equal(greedy, offlineGreedy(PROMPT, N));
  }],
  ['"created" is when the completion was made, the same in every chunk of a stream', async () => {
    // OpenAI: "The Unix timestamp (in seconds) of when the completion was created". A second after the
    // server started, a completion made now cannot carry the start time.
    await new Promise((r) => setTimeout(r, 1100));
    const t0 = Math.floor(Date.now() / 1000);
    const r = await greedyCompletion({ max_tokens: 2 });
    const stream = await greedyCompletion({ max_tokens: 3, stream: true });
    const created = new Set();
    for await (const ch of stream) created.add(ch.created);
    const t1 = Math.ceil(Date.now() / 1000);
    assert.ok(r.created >= t0 && r.created <= t1, `created ${r.created} outside [${t0}, ${t1}]`);
    assert.equal(created.size, 1, `chunks carry ${[...created]}`);
    const [c] = created;
    assert.ok(c >= t0 && c <= t1, `stream created ${c} outside [${t0}, ${t1}]`);
  }],
  ['completion streaming concatenates to the same text, usage chunk last', async () => {
    const stream = await greedyCompletion({ stream: true, stream_options: { include_usage: true } });
    let text = '';
    let finish = null;
    let usage = null;
    let chunks = 0;
    for await (const ch of stream) {
      chunks++;
      if (ch.usage) { usage = ch.usage; assert.equal(ch.choices.length, 0); continue; }
      assert.equal(ch.object, 'text_completion');
      text += ch.choices[0].text;
      if (ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason;
    }
    assert.ok(chunks > 2, 'streamed in several chunks');
    assert.equal(text, greedy);
    assert.ok(['length', 'stop'].includes(finish));
    assert.ok(usage && usage.completion_tokens > 0 && usage.prompt_tokens === tokenize(PROMPT).length);
  }],
  ['logprobs: one per token, greedy token is the most likely alternative', async () => {
    const r = await greedyCompletion({ logprobs: 3 });
    const lp = r.choices[0].logprobs;
    assert.equal(r.choices[0].text, greedy);
    assert.equal(lp.tokens.length, r.usage.completion_tokens);
    assert.equal(lp.token_logprobs.length, lp.tokens.length);
    for (let i = 0; i < lp.tokens.length; i++) {
      assert.ok(lp.token_logprobs[i] <= 1e-6, `logprob ${lp.token_logprobs[i]} > 0`);
      const alts = Object.values(lp.top_logprobs[i]);
      assert.ok(alts.length >= 1 && alts.length <= 3);
      assert.ok(lp.token_logprobs[i] >= Math.max(...alts) - 1e-4, 'greedy picks the argmax');
    }
  }],
  ['ignore_eos runs exactly max_tokens', async () => {
    const r = await oa.completions.create({ model, prompt: PROMPT, max_tokens: 64, temperature: 0, ignore_eos: true });
    assert.equal(r.usage.completion_tokens, 64);
    assert.equal(r.choices[0].finish_reason, 'length');
  }],
  ['stop string across tokens is removed and ends the request', async () => {
    const long = await oa.completions.create({ model, prompt: PROMPT, max_tokens: 60, temperature: 0, ignore_eos: true });
    const T = long.choices[0].text;
    // A stop string from the middle of the text, first occurring there.
    let stop = null;
    for (let i = 12; i + 5 < T.length && !stop; i++) {
      const s = T.slice(i, i + 5);
      if (T.indexOf(s) === i && s.trim().length >= 3) stop = s;
    }
    assert.ok(stop, 'found a stop string in the greedy text');
    const want = T.slice(0, T.indexOf(stop));
    const r = await oa.completions.create({ model, prompt: PROMPT, max_tokens: 60, temperature: 0, ignore_eos: true, stop: [stop, 'zzzzqq'] });
    assert.equal(r.choices[0].text, want);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.ok(r.usage.completion_tokens < 60);
    const stream = await oa.completions.create({ model, prompt: PROMPT, max_tokens: 60, temperature: 0, ignore_eos: true, stop, stream: true });
    let text = '';
    let finish = null;
    for await (const ch of stream) { text += ch.choices[0].text; finish = ch.choices[0].finish_reason || finish; }
    assert.equal(text, want);
    assert.equal(finish, 'stop');
  }],
  ['echo prepends the prompt', async () => {
    const r = await greedyCompletion({ echo: true });
    assert.equal(r.choices[0].text, PROMPT + greedy);
  }],
  ['n greedy choices are identical; seeded sampling is reproducible', async () => {
    const r = await greedyCompletion({ n: 3 });
    assert.equal(r.choices.length, 3);
    assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
    for (const c of r.choices) assert.equal(c.text, greedy);
    const a = await oa.completions.create({ model, prompt: PROMPT, max_tokens: 30, temperature: 1.0, seed: 1234, n: 2 });
    const b = await oa.completions.create({ model, prompt: PROMPT, max_tokens: 30, temperature: 1.0, seed: 1234, n: 2 });
    assert.deepEqual(a.choices.map((c) => c.text), b.choices.map((c) => c.text));
  }],
  ['several prompts in one request', async () => {
    const r = await oa.completions.create({ model, prompt: [PROMPT, 'Lily and Ben'], max_tokens: N, temperature: 0 });
    assert.equal(r.choices.length, 2);
    assert.equal(r.choices[0].text, greedy);
    assert.equal(r.choices[1].text, offlineGreedy('Lily and Ben', N));
    assert.equal(r.usage.prompt_tokens, tokenize(PROMPT).length + tokenize('Lily and Ben').length);
  }],
  ['token-id prompt', async () => {
    const r = await oa.completions.create({ model, prompt: tokenize(PROMPT), max_tokens: N, temperature: 0 });
    assert.equal(r.choices[0].text, greedy);
  }],
  ['echo + logprobs + max_tokens 0 scores the prompt (lm-eval-harness\'s call)', async () => {
    const ids = tokenize(PROMPT);
    const r = await oa.completions.create({ model, prompt: PROMPT, echo: true, logprobs: 2, max_tokens: 0, temperature: 0 });
    const c = r.choices[0];
    assert.equal(c.text, PROMPT);
    assert.equal(c.finish_reason, 'length');
    assert.equal(r.usage.completion_tokens, 0);
    assert.equal(r.usage.prompt_tokens, ids.length);
    const lp = c.logprobs;
    assert.equal(lp.tokens.length, ids.length);
    assert.equal(lp.token_logprobs[0], null);
    assert.equal(lp.top_logprobs[0], null);
    for (let i = 1; i < ids.length; ++i) {
      assert.ok(lp.token_logprobs[i] <= 0, `logprob ${lp.token_logprobs[i]} at ${i}`);
      const alts = Object.values(lp.top_logprobs[i]);
      assert.ok(alts.length >= 1 && alts.length <= 2);
      // The prompt token is no likelier than the best alternative.
      assert.ok(lp.token_logprobs[i] <= Math.max(...alts) + 1e-6);
    }
    // text_offset points into the echoed text: each token's text (SentencePiece drops the space
    // that opens the text; BOS has none) sits between its offset and the next.
    const off = [...lp.text_offset, c.text.length];
    for (let i = 1; i < ids.length; ++i) {
      assert.ok(off[i] <= off[i + 1], `text_offset not increasing at ${i}: ${lp.text_offset}`);
      assert.equal(c.text.slice(off[i], off[i + 1]).trimStart(), lp.tokens[i].trimStart(), `token ${i} at ${off[i]}`);
    }
  }],
  ['prompt logprobs equal the logprobs of the same tokens when they were generated', async () => {
    // Two code paths: /generate reports each sampled token's logprob from its decode step; echo
    // scores the same tokens as prompt positions, all rows of one prefill.
    const ids = tokenize(PROMPT);
    const g = await http('POST', '/generate', { input_ids: ids, return_logprob: true,
      sampling_params: { max_new_tokens: 8, temperature: 0, ignore_eos: true } });
    assert.equal(g.status, 200, g.text);
    const out = g.json.output_ids;
    const want = g.json.meta_info.output_token_logprobs.map((e) => e[0]);
    assert.equal(out.length, 8);
    const r = await oa.completions.create({ model, prompt: [...ids, ...out], echo: true, logprobs: 0, max_tokens: 0 });
    const got = r.choices[0].logprobs.token_logprobs.slice(ids.length);
    assert.equal(got.length, 8);
    for (let i = 0; i < 8; ++i) assert.ok(Math.abs(got[i] - want[i]) < 1e-3, `token ${i}: ${got[i]} vs ${want[i]}`);
    assert.ok(r.choices[0].text.startsWith(PROMPT), r.choices[0].text);
  }],
  ['chat without a chat template: 400 that says so', async () => {
    await assert.rejects(
      oa.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hi' }] }),
      (e) => e.status === 400 && /chat template/.test(e.message));
    const ok = await greedyCompletion();
    assert.equal(ok.choices[0].text, greedy);
  }],
  ['SGLang /generate, plain and streaming', async () => {
    const r = await http('POST', '/generate', { text: PROMPT, sampling_params: { max_new_tokens: N, temperature: 0 } });
    assert.equal(r.status, 200);
    assert.equal(r.json.text, greedy);
    assert.equal(r.json.meta_info.prompt_tokens, tokenize(PROMPT).length);
    assert.equal(r.json.output_ids.length, r.json.meta_info.completion_tokens);
    const events = await sse('/generate', { text: PROMPT, stream: true, sampling_params: { max_new_tokens: N, temperature: 0 } });
    assert.equal(events.at(-1), '[DONE]');
    const last = JSON.parse(events.at(-2));
    assert.equal(last.text, greedy);
    assert.ok(last.meta_info.finish_reason && ['length', 'stop'].includes(last.meta_info.finish_reason.type));
  }],
  ['every answer names its request in X-Request-Id (the SDK\'s _request_id): the client\'s own plain id, else a fresh one', async () => {
    const { data, request_id } = await oa.completions.create({ model, prompt: PROMPT, max_tokens: 2 }).withResponse();
    assert.equal(data.object, 'text_completion');
    assert.match(request_id ?? '', /^req-[0-9a-f]{32}$/);
    const again = await oa.completions.create({ model, prompt: PROMPT, max_tokens: 2 }).withResponse();
    assert.notEqual(again.request_id, request_id, 'each request gets its own id');
    const mine = await http('POST', '/v1/completions', { model, prompt: PROMPT, max_tokens: 2 }, { 'X-Request-Id': 'trace_42:a.b-c' });
    assert.equal(mine.headers.get('x-request-id'), 'trace_42:a.b-c');
    // Not a plain token (a space, or over 128 characters): not echoed into headers and logs.
    for (const bad of ['has space', 'x'.repeat(129)]) {
      const r = await http('GET', '/v1/models', undefined, { 'X-Request-Id': bad });
      assert.match(r.headers.get('x-request-id') ?? '', /^req-[0-9a-f]{32}$/);
    }
    // Errors and streams carry it too.
    const miss = await http('GET', '/no/such/route');
    assert.equal(miss.status, 404);
    assert.match(miss.headers.get('x-request-id') ?? '', /^req-[0-9a-f]{32}$/);
    const res = await fetch(`${URL_BASE}/v1/completions`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', ...(API_KEY !== 'none' ? { Authorization: `Bearer ${API_KEY}` } : {}) },
      body: JSON.stringify({ model, prompt: PROMPT, max_tokens: 2, stream: true }), signal: AbortSignal.timeout(60000) });
    assert.match(res.headers.get('x-request-id') ?? '', /^req-[0-9a-f]{32}$/);
    await res.text();
  }],
  ['health, health_generate, metrics', async () => {
    assert.equal((await http('GET', '/health')).status, 200);
    const hg = await http('GET', '/health_generate');
    assert.equal(hg.status, 200, hg.text);
    const m = await http('GET', '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.text, /^dpserve_num_running_reqs\{dp_rank="0"\} \d+$/m);
    assert.match(m.text, /^dpserve_kv_usage\{dp_rank="0"\} [0-9.e-]+$/m);
    const ttft = m.text.match(/^dpserve_time_to_first_token_seconds_count (\d+)$/m);
    assert.ok(ttft && Number(ttft[1]) > 0, 'TTFT histogram has observations');
    const gen = m.text.match(/^dpserve_generation_tokens_total (\d+)$/m);
    assert.ok(gen && Number(gen[1]) >= N, 'engine counted generated tokens');
  }],
]);
