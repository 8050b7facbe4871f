// --api-key: requests without the right bearer token get 401 with an OpenAI error body.
import { assert, assertOpenAIError, client, http, run } from './e2e_util.mjs';

const KEY = process.env.DPSERVE_API_KEY;
run([
  ['wrong or missing key is 401, right key works', async () => {
    assert.ok(KEY, 'DPSERVE_API_KEY must be set for this test');
    const body = { prompt: 'Once', max_tokens: 3 };
    assertOpenAIError(await http('POST', '/v1/completions', body, { Authorization: 'Bearer wrong' }), 401);
    assertOpenAIError(await http('GET', '/v1/models', undefined, { Authorization: '' }), 401);
    await assert.rejects(client({ apiKey: 'wrong' }).models.list(), (e) => e.status === 401);
    const list = await client().models.list();
    assert.equal(list.data.length, 1);
    const r = await http('POST', '/v1/completions', body);
    assert.equal(r.status, 200);
    // The scheme is case-insensitive (RFC 9110 11.1); the key is not.
    for (const scheme of ['bearer', 'BEARER', 'BeArEr']) {
      const ok = await http('POST', '/v1/completions', body, { Authorization: `${scheme} ${KEY}` });
      assert.equal(ok.status, 200, `${scheme}: ${ok.text}`);
    }
    assertOpenAIError(await http('POST', '/v1/completions', body, { Authorization: `Bearer ${KEY.toUpperCase()}x` }), 401);
    assertOpenAIError(await http('POST', '/v1/completions', body, { Authorization: `Basic ${KEY}` }), 401);
    // Without --admin-api-key, abort_all is refused to everyone (as SGLang does).
    const all = await http('POST', '/abort_request', { abort_all: true });
    assertOpenAIError(all, 403, 'abort_all');
    // Health stays open for load balancers.
    assert.equal((await http('GET', '/health', undefined, { Authorization: '' })).status, 200);
  }],
]);
