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
    // Health stays open for load balancers.
    assert.equal((await http('GET', '/health', undefined, { Authorization: '' })).status, 200);
  }],
]);
