// Operator routes (/flush_cache) and tenants. Run under three servers (ADMIN_ROUTES_MODE):
//   tenants+admin: --api-key key-a,key-b --admin-api-key key-admin
//   admin-only:    --admin-api-key key-admin (no tenant keys: anyone may generate)
//   tenants-only:  --api-key key-a,key-b (no admin key: the route stays open to key holders, as SGLang)
// With an admin key, a tenant's key gets 403 (permission_error, admin_only) and no key 401; the admin
// key flushes. Generation is unaffected for tenants. A body field is a 400 naming it.
import { assert, assertOpenAIError, http, run } from './e2e_util.mjs';

const MODE = process.env.ADMIN_ROUTES_MODE;
const auth = (key) => (key === undefined ? { Authorization: '' } : { Authorization: `Bearer ${key}` });
const flush = (method, key) => http(method, '/flush_cache', undefined, auth(key));

run([
  ['/flush_cache by key', async () => {
    assert.ok(['tenants+admin', 'admin-only', 'tenants-only'].includes(MODE), `ADMIN_ROUTES_MODE=${MODE}`);
    const tenantKeys = MODE === 'admin-only' ? [] : ['key-a', 'key-b'];
    // Tenants still generate (the server is then idle again, so a flush can succeed).
    for (const k of tenantKeys.length ? tenantKeys : [undefined]) {
      const r = await http('POST', '/v1/completions', { prompt: 'Once', max_tokens: 2 }, auth(k));
      assert.equal(r.status, 200, r.text);
    }
    for (const method of ['GET', 'POST']) {
      if (MODE === 'tenants-only') {
        for (const k of tenantKeys) assert.equal((await flush(method, k)).status, 200, `${method} by ${k}`);
        assertOpenAIError(await flush(method, undefined), 401);
        continue;
      }
      for (const k of tenantKeys) {
        const e = assertOpenAIError(await flush(method, k), 403);
        assert.equal(e.type, 'permission_error');
        assert.equal(e.code, 'admin_only');
        assert.match(e.message, /--admin-api-key/);
      }
      assertOpenAIError(await flush(method, undefined), 401);
      assertOpenAIError(await flush(method, 'wrong-key'), 401);
      const ok = await flush(method, 'key-admin');
      assert.equal(ok.status, 200, ok.text);
      assert.match(ok.text, /Cache flushed/);
    }
  }],
  ['/flush_cache names a body field it does not take, and flushes on {}', async () => {
    const key = MODE === 'tenants-only' ? 'key-a' : 'key-admin';
    const e = assertOpenAIError(await http('POST', '/flush_cache', { timeout: 5 }, auth(key)), 400);
    assert.equal(e.param, 'timeout');
    assert.equal(e.code, 'unknown_parameter');
    const ok = await http('POST', '/flush_cache', {}, auth(key));
    assert.equal(ok.status, 200, ok.text);
  }],
]);
