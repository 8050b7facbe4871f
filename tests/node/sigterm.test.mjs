// SIGTERM during load: in-flight requests finish or end with a finish reason, no client hangs, new
// requests are refused, and (checked by run_e2e.sh) the server exits 0.
import { assert, client, modelName, run } from './e2e_util.mjs';

const oa = client();
run([
  ['SIGTERM while 16 streams are running', async () => {
    const model = await modelName();
    let firstToken;
    const started = new Promise((r) => { firstToken = r; });
    const one = async (i) => {
      const stream = await oa.completions.create({ model, prompt: `Story ${i}:`, max_tokens: 300, temperature: 0, ignore_eos: true, stream: true });
      let finish = null;
      let text = '';
      for await (const ch of stream) {
        text += ch.choices[0]?.text || '';
        firstToken();
        finish = ch.choices[0]?.finish_reason || finish;
      }
      return { finish, text };
    };
    const all = Promise.allSettled(Array.from({ length: 16 }, (_, i) => one(i)));
    await started;
    // Requests sent as the signal lands race the drain: whichever check refuses them (the HTTP
    // gate, admission, or the engine itself once it drains), the answer is a 503 with an OpenAI
    // error body (retryable), never a 400 as if the request were bad.
    const late = (i) => fetch(`${process.env.DPSERVE_URL}/v1/completions`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model, prompt: `late ${i}`, max_tokens: 2 }), signal: AbortSignal.timeout(30000),
    }).then(async (x) => ({ status: x.status, body: await x.text() }), () => ({ status: 'refused' }));
    const racing = Array.from({ length: 24 }, (_, i) => late(i));
    process.kill(Number(process.env.DPSERVE_PID), 'SIGTERM');
    racing.push(...Array.from({ length: 24 }, (_, i) => late(24 + i)));
    // New requests are refused (503 while draining, or the connection is refused once closed).
    const r = await late(-1);
    assert.ok(r.status === 503 || r.status === 'refused', `request after SIGTERM got ${r.status}`);
    for (const x of await Promise.all(racing)) {
      assert.ok([200, 503, 'refused'].includes(x.status), `request racing SIGTERM got ${x.status}: ${x.body}`);
      if (x.status === 503) {
        const e = JSON.parse(x.body).error;
        assert.ok(e && e.message && e.type === 'service_unavailable_error', `503 body: ${x.body}`);
      }
    }
    const results = await all;  // bounded by the runner's per-test timeout: no client may hang
    for (const res of results) {
      if (res.status === 'fulfilled') assert.ok(['length', 'abort', 'stop'].includes(res.value.finish), `finish ${res.value.finish}`);
    }
    assert.ok(results.some((x) => x.status === 'fulfilled'), 'in-flight streams end cleanly');
  }],
]);
