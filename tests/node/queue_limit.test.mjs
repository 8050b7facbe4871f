// --max-queued-requests 64 --max-queued-tokens 28000 (set by the CTest registration): admission counts
// sequences (prompts x n) and tokens (prompt + max_tokens of each), not requests. With 4 requests of
// n=16 in flight (64 sequences), new ones get 429 with an OpenAI error body and Retry-After (what
// OpenAI clients back off and retry on); the admitted ones still complete, and once they drain new
// requests are accepted again. A request that alone needs more than a bound gets 400; one that fits
// the sequences but not the tokens left waits like any other (429). Echoed prompt logprobs count each
// alternative as a token (issue 36: the answer holds n x prompt x k entries).
import OpenAI from 'openai';
import { URL_BASE, assert, assertOpenAIError, client, http, modelName, run } from './e2e_util.mjs';
import { complete, metrics, post, sleep, total, waitIdle } from './reliability_util.mjs';

const SEQUENCES = Number(process.env.DPSERVE_QUEUE_LIMIT || 64);
const TOKENS = Number(process.env.DPSERVE_QUEUE_TOKENS || 28000);
const HELD = 4, N = 16;  // HELD x N = SEQUENCES

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
  ['beyond --max-queued-requests sequences new requests get 429; admitted ones complete; accepted again after', async () => {
    const model = await modelName();
    const info = (await http('GET', '/get_server_info')).json;
    assert.equal(info.max_queued_requests, SEQUENCES);
    const maxTokens = Math.min(Number(info.context_length) - 16, 400);
    const n = N;  // 4 x 16 choices of 400 tokens, 2 running at a time: seconds of work
    await waitIdle();
    const held = [];
    for (let i = 0; i < HELD; i++) {
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
    assert.equal(total(m, 'dpserve_http_requests_inflight'), HELD, 'the admitted requests are still running');
    assert.equal(total(m, 'dpserve_http_sequences_inflight'), SEQUENCES, 'their sequences are counted');
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
    const again = await Promise.all(Array.from({ length: HELD }, (_, i) => complete({ prompt: `After ${i}`, max_tokens: 8, temperature: 0 })));
    for (const r of again) assert.ok(['length', 'stop'].includes(r.finish));
  }],
  ['a request that alone needs more sequences or tokens than the bounds is a 400, not a 429', async () => {
    // 5 prompts x n 13 = 65 sequences.
    const seq = await post('/v1/completions', { prompt: ['a', 'b', 'c', 'd', 'e'], n: 13, max_tokens: 4 });
    assertOpenAIError(seq, 400, 'n');
    assert.match(seq.json.error.message, /--max-queued-requests/);
    // 64 sequences x (prompt + 480) tokens > 28000.
    const tok = await post('/v1/completions', { prompt: ['a', 'b', 'c', 'd'], n: 16, max_tokens: 480 });
    assertOpenAIError(tok, 400, 'n');
    assert.match(tok.json.error.message, /--max-queued-tokens/);
    // /generate counts the same way (one prompt x n 64 = 64 sequences fits; its tokens decide).
    const gen = await post('/generate', { text: 'a', sampling_params: { n: 64, max_new_tokens: 480 } });
    assertOpenAIError(gen, 400, 'n');
  }],
  ['echoed prompt logprobs count like tokens: n 5 x 300 prompt ids x 20 alternatives is over the bound', async () => {
    await waitIdle();
    const ids = Array.from({ length: 300 }, (_, i) => 100 + (i % 300));
    // 5 x (300 + 1) = 1505 tokens without the logprobs: admitted.
    const plain = await post('/v1/completions', { prompt: ids, n: 5, max_tokens: 1, echo: true });
    assert.equal(plain.status, 200, JSON.stringify(plain.json).slice(0, 300));
    // 5 x (300 x (1 + 2) + 1) = 4505: admitted, and every choice carries the prompt's entries.
    const few = await post('/v1/completions', { prompt: ids, n: 5, max_tokens: 1, echo: true, logprobs: 2 });
    assert.equal(few.status, 200, JSON.stringify(few.json).slice(0, 300));
    for (const c of few.json.choices) assert.equal(c.logprobs.tokens.length, 301);
    // 5 x (300 x (1 + 20) + 1) = 31505 > 28000: refused whole (400), before any work.
    const many = await post('/v1/completions', { prompt: ids, n: 5, max_tokens: 1, echo: true, logprobs: 20 });
    assertOpenAIError(many, 400, 'n');
    assert.match(many.json.error.message, /--max-queued-tokens/);
    assert.match(many.json.error.message, /31505 tokens/);
  }],
  ['logprob entries the replies would hold are bounded too (--max-queued-logprobs 40000)', async () => {
    await waitIdle();
    // 16 choices x 400 tokens x (1 + 5) = 38400 entries: admitted. 20 choices: 48000, a 400 naming
    // logprobs, though its 20 x (1 + 400) tokens are far under --max-queued-tokens. Before this bound,
    // a 12 KB completions request (echo, logprobs 20, n 64, 4000 prompt ids) made the server hold 1.3 GB.
    const ok = await post('/v1/completions', { prompt: 'Hi', n: 16, max_tokens: 400, logprobs: 5, ignore_eos: true });
    assert.equal(ok.status, 200, JSON.stringify(ok.json).slice(0, 300));
    for (const c of ok.json.choices) assert.equal(c.logprobs.top_logprobs.length, 400);
    const big = await post('/v1/completions', { prompt: 'Hi', n: 20, max_tokens: 400, logprobs: 5 });
    assertOpenAIError(big, 400, 'logprobs');
    assert.match(big.json.error.message, /48000 logprob entries/);
    assert.match(big.json.error.message, /--max-queued-logprobs/);
    const chat = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], n: 20, max_tokens: 400,
                                                      logprobs: true, top_logprobs: 5 });
    assertOpenAIError(chat, 400, 'logprobs');
    // Echoed prompt entries count with the generated ones: 4 x (300 + 200) x (1 + 20) = 42000 > 40000,
    // though 4 x (300 x 21 + 200) = 26000 tokens fit.
    const ids = Array.from({ length: 300 }, (_, i) => 100 + (i % 300));
    const echo = await post('/v1/completions', { prompt: ids, n: 4, max_tokens: 200, echo: true, logprobs: 20 });
    assertOpenAIError(echo, 400, 'logprobs');
    assert.match(echo.json.error.message, /42000 logprob entries/);
  }],
  ['a request that fits the sequences but not the tokens left waits its turn (429)', async () => {
    await waitIdle();
    // 2 x 16 sequences of ~406 tokens in flight: ~13000 of 28000 tokens, 32 of 64 sequences.
    const held = [heldStream('Story A:', N, 400), heldStream('Story B:', N, 400)];
    for (let k = 0; total(await metrics(), 'dpserve_http_requests_inflight') < 2; k++) {
      assert.ok(k < 2000, 'held requests admitted');
      await sleep(5);
    }
    const m = await metrics();
    assert.ok(total(m, 'dpserve_http_tokens_inflight') > 12000, `tokens in flight ${total(m, 'dpserve_http_tokens_inflight')}`);
    // 32 more sequences fit the sequence bound exactly, but 32 x ~500 tokens do not fit what is left.
    const r = await post('/v1/completions', { prompt: 'Hi', n: 32, max_tokens: 495 });
    const e = assertOpenAIError(r, 429);
    assert.match(e.message, /tokens/);
    // Small work still gets in beside them.
    const small = await post('/v1/completions', { prompt: 'Hi', n: 4, max_tokens: 8 });
    assert.equal(small.status, 200, small.text);
    for (const d of await Promise.all(held)) assert.ok(d.done);
  }],
]);
