// Every kind of bad input gets a 4xx with an OpenAI-style error body naming the problem, and the
// server keeps serving: after each bad request a good one must still succeed.
import { assert, assertOpenAIError, http, modelName, run } from './e2e_util.mjs';

let model;
async function stillServes() {
  const r = await http('POST', '/v1/completions', { model, prompt: 'Once', max_tokens: 4, temperature: 0 });
  assert.equal(r.status, 200, `server stopped serving: ${r.text}`);
  assert.equal(r.json.usage.completion_tokens > 0, true);
}

const long = ' the'.repeat(700);
const cases = [
  // [name, path, body (object or raw string), status, param]
  ['malformed JSON', '/v1/completions', '{"prompt": "a",', 400, null],
  ['body is not an object', '/v1/completions', '[1,2]', 400, null],
  ['empty body', '/v1/completions', '', 400, null],
  ['invalid UTF-8', '/v1/completions', Buffer.concat([Buffer.from('{"prompt": "a'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]), 400, null],
  ['lone surrogate escape', '/v1/completions', '{"prompt": "\\ud800 x"}', 400, null],
  ['missing prompt', '/v1/completions', { max_tokens: 3 }, 400, 'prompt'],
  ['prompt wrong type', '/v1/completions', { prompt: 12 }, 400, 'prompt'],
  ['token id outside vocab', '/v1/completions', { prompt: [1, 99999] }, 400, 'prompt'],
  ['unknown model', '/v1/completions', { model: 'gpt-nonexistent', prompt: 'a' }, 404, 'model'],
  ['prompt longer than context', '/v1/completions', { prompt: long }, 400, 'prompt'],
  ['max_tokens 0', '/v1/completions', { prompt: 'a', max_tokens: 0 }, 400, 'max_tokens'],
  ['max_tokens negative', '/v1/completions', { prompt: 'a', max_tokens: -5 }, 400, 'max_tokens'],
  ['max_tokens too large', '/v1/completions', { prompt: 'a', max_tokens: 100000 }, 400, 'max_tokens'],
  ['max_tokens wrong type', '/v1/completions', { prompt: 'a', max_tokens: 'ten' }, 400, 'max_tokens'],
  ['temperature wrong type', '/v1/completions', { prompt: 'a', temperature: 'hot' }, 400, 'temperature'],
  ['temperature out of range', '/v1/completions', { prompt: 'a', temperature: 5 }, 400, 'temperature'],
  ['top_p out of range', '/v1/completions', { prompt: 'a', top_p: 0 }, 400, 'top_p'],
  ['top_k zero', '/v1/completions', { prompt: 'a', top_k: 0 }, 400, 'top_k'],
  ['min_p out of range', '/v1/completions', { prompt: 'a', min_p: 1.5 }, 400, 'min_p'],
  ['frequency_penalty out of range', '/v1/completions', { prompt: 'a', frequency_penalty: 9 }, 400, 'frequency_penalty'],
  ['presence_penalty out of range', '/v1/completions', { prompt: 'a', presence_penalty: -9 }, 400, 'presence_penalty'],
  ['n zero', '/v1/completions', { prompt: 'a', n: 0 }, 400, 'n'],
  ['too many stop strings', '/v1/completions', { prompt: 'a', stop: ['a', 'b', 'c', 'd', 'e'] }, 400, 'stop'],
  ['logprobs too many', '/v1/completions', { prompt: 'a', logprobs: 50 }, 400, 'logprobs'],
  ['chat empty messages', '/v1/chat/completions', { messages: [] }, 400, 'messages'],
  ['chat messages wrong type', '/v1/chat/completions', { messages: 'hi' }, 400, 'messages'],
  ['chat bad role', '/v1/chat/completions', { messages: [{ role: 'robot', content: 'x' }] }, 400, 'messages[0].role'],
  ['chat without template', '/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }] }, 400, 'messages'],
  ['generate with nothing to generate from', '/generate', { sampling_params: {} }, 400, 'text'],
  // 0 is the prompt alone, as in SGLang (e2e_sglang_generate); below 0 is nothing to generate.
  ['generate max_new_tokens -1', '/generate', { text: 'a', sampling_params: { max_new_tokens: -1 } }, 400, 'max_new_tokens'],
  ['generate ragged input_embeds', '/generate', { input_embeds: [[1, 2], [3]] }, 400, 'input_embeds'],
  ['abort_request without rid', '/abort_request', {}, 400, 'rid'],
  // Integers at and past 2^63 are out of range, never wrapped to negative (2^64-1 was top_k -1).
  ['max_tokens 2^64-1', '/v1/completions', '{"prompt": "a", "max_tokens": 18446744073709551615}', 400, 'max_tokens'],
  ['max_tokens 2^63', '/v1/completions', '{"prompt": "a", "max_tokens": 9223372036854775808}', 400, 'max_tokens'],
  ['top_k 2^64-1', '/v1/completions', '{"prompt": "a", "top_k": 18446744073709551615}', 400, 'top_k'],
  ['seed 2^64-1', '/v1/completions', '{"prompt": "a", "seed": 18446744073709551615}', 400, 'seed'],
  ['n 2^63', '/v1/completions', '{"prompt": "a", "n": 9223372036854775808}', 400, 'n'],
  ['token id 2^63', '/v1/completions', '{"prompt": [1, 9223372036854775808]}', 400, 'prompt'],
  ['max_new_tokens 1e19', '/generate', '{"text": "a", "sampling_params": {"max_new_tokens": 1e19}}', 400, 'max_new_tokens'],
  // Values the engine would see as 0 (1e-300 as a 32-bit float) are refused here, naming the field.
  ['top_p 1e-300', '/v1/completions', { prompt: 'a', top_p: 1e-300 }, 400, 'top_p'],
  ['repetition_penalty 1e-300', '/v1/completions', { prompt: 'a', repetition_penalty: 1e-300 }, 400, 'repetition_penalty'],
  ['generate top_p 1e-300', '/generate', { text: 'a', sampling_params: { top_p: 1e-300 } }, 400, 'top_p'],
  // Fields the route does not know, or OpenAI fields this server does not implement, are named.
  ['unknown field', '/v1/completions', { prompt: 'a', max_tokenz: 3 }, 400, 'max_tokenz'],
  ['unknown sampling_params field', '/generate', { text: 'a', sampling_params: { temprature: 0 } }, 400, 'sampling_params.temprature'],
  ['logit_bias beyond 100', '/v1/completions', { prompt: 'a', logit_bias: { 5: 101 } }, 400, 'logit_bias'],
  ['logit_bias key not a token id', '/v1/completions', { prompt: 'a', logit_bias: { x: 1 } }, 400, 'logit_bias'],
  ['logit_bias id past the vocabulary', '/v1/completions', { prompt: 'a', logit_bias: { 100000000: 1 } }, 400, 'logit_bias'],
  ['unknown response_format type', '/v1/completions', { prompt: 'a', response_format: { type: 'yaml' } }, 400, 'response_format.type'],
  ['generate regex with a backreference', '/generate', { text: 'a', sampling_params: { regex: '(a)\\1' } }, 400, 'sampling_params.regex'],
  // stories260K's vocabulary has no fill-in-the-middle tokens.
  ['suffix on a model without FIM tokens', '/v1/completions', { prompt: 'a', suffix: 'end' }, 400, 'suffix'],
  // max_tokens 0 is for scoring a prompt, which only echo returns.
  ['max_tokens 0 without echo', '/v1/completions', { prompt: 'a', echo: false, max_tokens: 0, logprobs: 1 }, 400, 'max_tokens'],
  // One request cannot ask for more than 256 sequences (prompts x n).
  ['too many choices', '/v1/completions', { prompt: Array.from({ length: 16 }, () => 'a'), n: 17 }, 400, 'n'],
];

const tests = [['model name', async () => { model = await modelName(); }]];
for (const [name, path, body, status, param] of cases) {
  tests.push([name, async () => {
    const raw = typeof body === 'string' || Buffer.isBuffer(body);
    const r = await http('POST', path, raw ? new Uint8Array(body instanceof Buffer ? body : Buffer.from(body)) : body);
    const e = assertOpenAIError(r, status, param === null ? undefined : param);
    if (status === 400) assert.equal(e.type, 'invalid_request_error');
    await stillServes();
  }]);
}
tests.push(['accepted: the largest int64 seed, a negative seed, OpenAI defaults of unsupported fields, user', async () => {
  for (const body of ['{"prompt": "a", "max_tokens": 2, "seed": 9223372036854775807}',
    '{"prompt": "a", "max_tokens": 2, "seed": -1}',
    '{"prompt": "a", "max_tokens": 2, "logit_bias": {}, "user": "u-1", "suffix": null}']) {
    const r = await http('POST', '/v1/completions', new Uint8Array(Buffer.from(body)));
    assert.equal(r.status, 200, `${body}: ${r.text}`);
  }
}]);
tests.push(['an unknown field is code unknown_parameter on every route (docs/api.md errors table)', async () => {
  for (const [path, body] of [['/v1/completions', { prompt: 'a', bogus: 1 }], ['/generate', { text: 'a', bogus: 1 }],
    ['/tokenize', { prompt: 'a', bogus: 1 }], ['/v1/tokenize', { prompt: 'a', bogus: 1 }],
    ['/detokenize', { tokens: [1], bogus: 1 }]]) {
    const e = assertOpenAIError(await http('POST', path, body), 400, 'bogus');
    assert.equal(e.code, 'unknown_parameter', `${path}: ${e.code}`);
  }
  await stillServes();
}]);
// This server has no --reasoning-parser: Anthropic's thinking cannot be told from the answer, so
// asking for it is a 400 in Anthropic's shape naming the flag.
tests.push(['Messages: thinking without a reasoning parser is a 400 naming the flag', async () => {
  const ask = { model, max_tokens: 2048, messages: [{ role: 'user', content: 'Once upon a time' }] };
  for (const thinking of [{ type: 'enabled', budget_tokens: 1024 }, { type: 'adaptive' }]) {
    const r = await http('POST', '/v1/messages', { ...ask, thinking });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.type, 'error');
    assert.equal(r.json.error.type, 'invalid_request_error');
    assert.match(r.json.error.message, /^thinking needs .*--reasoning-parser/, r.json.error.message);
  }
}]);

tests.push(['unknown route is a 404 with an error body', async () => {
  assertOpenAIError(await http('GET', '/v1/nothing-here'), 404);
  await stillServes();
}]);
tests.push(['oversized body is a 413 with an error body', async () => {
  const big = JSON.stringify({ prompt: 'x'.repeat(33 << 20) });
  const r = await http('POST', '/v1/completions', big);
  assertOpenAIError(r, 413);
  await stillServes();
}]);
tests.push(['client disconnect cancels the request', async () => {
  const ac = new AbortController();
  const p = fetch(`${process.env.DPSERVE_URL}/v1/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: ac.signal,
    body: JSON.stringify({ model, prompt: 'Once', max_tokens: 400, temperature: 0, ignore_eos: true, stream: true }),
  });
  const res = await p;
  const reader = res.body.getReader();
  await reader.read();
  ac.abort();
  // The aborted choice is counted as finished with reason "abort" once the server notices.
  let aborted = 0;
  for (let i = 0; i < 100 && aborted === 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const m = (await http('GET', '/metrics')).text.match(/^dpserve_finished_choices_total\{reason="abort"\} (\d+)$/m);
    aborted = m ? Number(m[1]) : 0;
  }
  assert.ok(aborted >= 1, 'the server cancelled the abandoned request');
  await stillServes();
}]);
tests.push(['/metrics labels requests by route pattern, not by the ids clients make up', async () => {
  // Unknown query fields make these 400s (a 404 is labelled "unmatched" anyway).
  for (let i = 0; i < 5; i++) {
    assertOpenAIError(await http('GET', `/v1/responses/made-up-${i}?x=1`), 400);
    assertOpenAIError(await http('GET', `/v1/responses/made-up-${i}/input_items?x=1`), 400);
  }
  const text = (await http('GET', '/metrics')).text;
  assert.ok(!text.includes('made-up-'), 'a client-chosen id became a label');
  for (const route of ['/v1/responses/{}', '/v1/responses/{}/input_items']) {
    const line = text.split('\n').find((l) => l.startsWith(`dpserve_http_requests_total{route="${route}",status="400"} `));
    assert.ok(line && Number(line.split(' ')[1]) >= 5, `${route}: ${line}`);
  }
}]);
tests.push(['client leaving a non-streaming request cancels it while it waits', async () => {
  const count = async (reason) => {
    const re = new RegExp(`^dpserve_finished_choices_total\\{reason="${reason}"\\} (\\d+)$`, 'm');
    const m = (await http('GET', '/metrics')).text.match(re);
    return m ? Number(m[1]) : 0;
  };
  const before = { abort: await count('abort'), length: await count('length') };
  // 64 choices of 450 tokens take seconds; the client gives up after 300 ms without reading anything.
  await fetch(`${process.env.DPSERVE_URL}/v1/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: AbortSignal.timeout(300),
    body: JSON.stringify({ model, prompt: 'Once', max_tokens: 450, n: 64, temperature: 1, ignore_eos: true }),
  }).then(() => assert.fail('the request should not have completed'), () => {});
  // Every choice ends: aborted, or (copy 0 runs alone until its first token, and the others join
  // only then: on a loaded host it may finish its 450 tokens first) at its length. Without the
  // cancel all 64 would run to their length.
  let aborted = 0, finished = 0;
  for (let i = 0; i < 100 && aborted + finished < 64; i++) {
    await new Promise((r) => setTimeout(r, 100));
    aborted = (await count('abort')) - before.abort;
    finished = (await count('length')) - before.length;
  }
  assert.equal(aborted + finished, 64, `every choice ended (aborted ${aborted}, at length ${finished})`);
  assert.ok(aborted >= 32, `most choices were aborted while they waited (aborted ${aborted})`);
  await stillServes();
}]);
run(tests);
