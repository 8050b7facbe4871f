// A KV pool smaller than the context (run_e2e: stories260K, context 512, --max-total-tokens 128): a
// long-context model on a small machine. A sequence writes prompt + max_tokens - 1 positions (the last
// sampled token is never fed back), so requests must fit the pool as they fit the context: chat and
// Responses requests without a length get what fits (OpenAI's clients send none by default), and a
// length that cannot fit is a 400 naming it. Before, every chat without max_tokens was a 400
// `engine_rejected` with param null.
import { assert, assertOpenAIError, http, run } from './e2e_util.mjs';

const POOL = 128;
const MESSAGES = [{ role: 'user', content: 'Tell me about a cat' }];

run([
  ['the server says its pool and its context', async () => {
    const info = (await http('GET', '/get_server_info')).json;
    assert.equal(Number(info.max_total_tokens), POOL);
    assert.equal(Number(info.context_length), 512);
  }],
  ['chat without max_tokens generates what the pool holds', async () => {
    const r = await http('POST', '/v1/chat/completions', { messages: MESSAGES, temperature: 0, ignore_eos: true });
    assert.equal(r.status, 200, r.text);
    const u = r.json.usage;
    assert.equal(r.json.choices[0].finish_reason, 'length');
    assert.equal(u.prompt_tokens + u.completion_tokens - 1, POOL, JSON.stringify(u));
  }],
  ['/v1/responses without max_output_tokens too', async () => {
    const r = await http('POST', '/v1/responses', { input: 'Tell me about a cat', temperature: 0 });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.usage.input_tokens + r.json.usage.output_tokens - 1 <= POOL, JSON.stringify(r.json.usage));
  }],
  ['a max_tokens the pool cannot hold is a 400 naming it; one that fits is served', async () => {
    const over = await http('POST', '/v1/chat/completions', { messages: MESSAGES, max_tokens: 300 });
    const e = assertOpenAIError(over, 400, 'max_tokens');
    assert.match(e.message, /KV cache holds 128 positions/);
    const c = await http('POST', '/v1/completions', { prompt: 'Once upon a time', max_tokens: 300 });
    assertOpenAIError(c, 400, 'max_tokens');
    const ok = await http('POST', '/v1/completions', { prompt: 'Once upon a time', max_tokens: 100, ignore_eos: true });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.usage.completion_tokens, 100);
  }],
  ['a prompt longer than the pool is a 400 naming the prompt', async () => {
    const r = await http('POST', '/v1/completions', { prompt: Array(200).fill(5), max_tokens: 1 });
    const e = assertOpenAIError(r, 400, 'prompt');
    assert.match(e.message, /KV cache holds for one sequence/);
  }],
]);
