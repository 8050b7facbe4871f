// --max-queued-requests 4 (set by the CTest registration): with 4 generation requests in flight, new
// ones get 429 with an OpenAI error body and Retry-After (what OpenAI clients back off and retry on);
// the admitted ones still complete, and once they drain new requests are accepted again.
import OpenAI from 'openai';
import { URL_BASE, assert, assertOpenAIError, client, http, modelName, run } from './e2e_util.mjs';
import { complete, metrics, post, sleep, total, waitIdle } from './reliability_util.mjs';

const LIMIT = Number(process.env.DPSERVE_QUEUE_LIMIT || 4);

// A long streaming request read to its end: {choices: Map(index -> {tokens, finish}), done}.
async function heldStream(prompt, n, maxTokens) {
  const res = await fetch(`${URL_BASE}/v1/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: AbortSignal.timeout(300000),
    body: JSON.stringify({ prompt, n, max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true, logprobs: 0 }),
  });
  assert.equal(res.status, 200, `held stream admitted (status ${res.status})`);
  const reader = res.body.getReader();
  let buf = '';
  const choices = new Map();
  let done = false;
  const pump = async () => {
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) return;
      buf += Buffer.from(value).toString('utf8');
      let k;
      while ((k = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, k).replace(/^data: /, '');
        buf = buf.slice(k + 2);
        if (ev === '[DONE]') { done = true; continue; }
        for (const c of JSON.parse(ev).choices) {
          const st = choices.get(c.index) || { tokens: 0, finish: null };
          if (c.logprobs) st.tokens += c.logprobs.tokens.length;
          st.finish = c.finish_reason || st.finish;
          choices.set(c.index, st);
        }
      }
    }
  };
  await pump();
  return { choices, done };
}

run([
  ['beyond --max-queued-requests new requests get 429; admitted ones complete; accepted again after', async () => {
    const model = await modelName();
    const info = (await http('GET', '/get_server_info')).json;
    const maxTokens = Math.min(Number(info.context_length) - 16, 400);
    const n = 16;  // 4 x 16 choices of 400 tokens, 2 running at a time: seconds of work
    await waitIdle();
    const held = [];
    for (let i = 0; i < LIMIT; i++) {
      held.push(heldStream(`Story number ${i}:`, n, maxTokens));
      // Admitted (counted in flight) before the next one is sent.
      for (let k = 0; total(await metrics(), 'dpserve_http_requests_inflight') < i + 1; k++) {
        assert.ok(k < 2000, `held request ${i} was not admitted`);
        await sleep(5);
      }
    }
    const rejected0 = total(await metrics(), 'dpserve_http_rejected_overload_total');

    // Over the limit: completions (plain and streaming), chat, SGLang /generate all answer 429.
    const burst = await Promise.all([
      post('/v1/completions', { prompt: 'Hi', max_tokens: 4 }),
      post('/v1/completions', { prompt: 'Hi', max_tokens: 4, stream: true }),
      post('/v1/completions', { prompt: 'Hi', max_tokens: 4, n: 2 }),
      post('/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 }),
      post('/generate', { text: 'Hi', sampling_params: { max_new_tokens: 4 } }),
      post('/v1/completions', { prompt: 'Hello there', max_tokens: 8 }),
    ]);
    for (const r of burst) {
      const e = assertOpenAIError(r, 429);
      assert.equal(e.type, 'rate_limit_error');
      assert.equal(e.code, 'queue_full');
      assert.match(e.message, /--max-queued-requests/);
      assert.equal(r.headers.get('retry-after'), '1', 'Retry-After tells clients when to retry');
    }
    // The OpenAI client surfaces it as its RateLimitError (the class its retry logic backs off on).
    await assert.rejects(client().completions.create({ model, prompt: 'Hi', max_tokens: 4 }),
      (err) => err instanceof OpenAI.RateLimitError && err.status === 429);
    const m = await metrics();
    // The held requests were in flight for the whole burst: had one ended, a burst request would have got in.
    assert.equal(total(m, 'dpserve_http_requests_inflight'), LIMIT, 'the admitted requests are still running');
    assert.equal(total(m, 'dpserve_http_rejected_overload_total') - rejected0, burst.length + 1, '429s counted');
    // Health and metrics are not generation requests: they still answer.
    assert.equal((await http('GET', '/health')).status, 200);

    const done = await Promise.all(held);
    done.forEach((d, i) => {
      assert.ok(d.done, `held ${i}: stream ended with [DONE]`);
      assert.equal(d.choices.size, n, `held ${i}: all choices`);
      for (const [idx, c] of d.choices) {
        assert.equal(c.finish, 'length', `held ${i} choice ${idx}`);
        assert.equal(c.tokens, maxTokens, `held ${i} choice ${idx}: tokens`);
      }
    });
    await waitIdle();
    // Drained: accepted again, up to the limit at once.
    const again = await Promise.all(Array.from({ length: LIMIT }, (_, i) => complete({ prompt: `After ${i}`, max_tokens: 8, temperature: 0 })));
    for (const r of again) assert.ok(['length', 'stop'].includes(r.finish));
  }],
]);
