// OpenAI's predicted outputs (chat's `prediction`) against the real `dpserve serve` on the tiny
// random Qwen3 with the real Qwen3 tokenizer. A prediction only supplies drafts that the model's
// own choices verify, so every answer must be the answer of the same request without it (greedy,
// and sampled with a seed: verification draws from the request's random stream as plain decoding
// does), whole and streamed; usage reports OpenAI's accepted / rejected prediction tokens.
import { assert, assertOpenAIError, http, modelName, run, sse } from './e2e_util.mjs';

let model;
const tests = [];
const messages = [{ role: 'user', content: 'Write a poem about the sea' }];
const base = { messages, max_tokens: 40, temperature: 0, chat_template_kwargs: { enable_thinking: false } };

async function chat(body) {
  const r = await http('POST', '/v1/chat/completions', { model, ...base, ...body });
  assert.equal(r.status, 200, r.text.slice(0, 400));
  return r.json;
}

let plain;
tests.push(['a right prediction: the same answer, its tokens accepted', async () => {
  model = await modelName();
  plain = await chat({});
  assert.equal(plain.usage.completion_tokens_details?.accepted_prediction_tokens, undefined);  // none without one
  const text = plain.choices[0].message.content;
  const r = await chat({ prediction: { type: 'content', content: text } });
  assert.equal(r.choices[0].message.content, text);
  assert.equal(r.usage.completion_tokens, plain.usage.completion_tokens);
  const d = r.usage.completion_tokens_details;
  assert.ok(d.accepted_prediction_tokens > 0 && d.accepted_prediction_tokens < plain.usage.completion_tokens,
            JSON.stringify(d));
  assert.ok(d.rejected_prediction_tokens >= 0, JSON.stringify(d));
  // Content as text parts is the same prediction.
  const parts = await chat({ prediction: { type: 'content', content: [{ type: 'text', text: text.slice(0, 9) },
                                                                       { type: 'text', text: text.slice(9) }] } });
  assert.equal(parts.choices[0].message.content, text);
  assert.deepEqual(parts.usage.completion_tokens_details, d);
}]);

tests.push(['an edited or unrelated prediction changes nothing but the counts', async () => {
  const text = plain.choices[0].message.content;
  for (const p of [text.slice(0, 20) + ' and then something else entirely ' + text.slice(20), 'zzzz qqqq',
                   '', text.repeat(3)]) {
    const r = await chat({ prediction: { type: 'content', content: p } });
    assert.equal(r.choices[0].message.content, text, JSON.stringify(p));
  }
}]);

if (process.env.PREDICTED_DRAFT_MODEL === '1') {
  tests.push(['under a draft model: the model\'s drafts are not counted as the prediction\'s', async () => {
    const text = plain.choices[0].message.content;
    const metric = async () => Number(/^dpserve_spec_accepted_tokens_total (\d+)$/m.exec((await http('GET', '/metrics')).text)[1]);
    const before = await metric();
    // Nothing in it matches the answer: every draft is the draft model's (the target itself, so all
    // of them are right), and none is the prediction's.
    const r = await chat({ prediction: { type: 'content', content: 'zzzz qqqq' } });
    assert.equal(r.choices[0].message.content, text);
    assert.equal(r.usage.completion_tokens_details.accepted_prediction_tokens, 0, JSON.stringify(r.usage));
    assert.ok(await metric() > before, 'the draft model drafted');
  }]);
}

tests.push(['sampled with a seed, n = 2: each choice is the one without the prediction', async () => {
  const sampled = { temperature: 0.9, seed: 11, n: 2 };
  const a = await chat(sampled);
  const b = await chat({ ...sampled, prediction: { type: 'content', content: a.choices[0].message.content } });
  assert.deepEqual(b.choices.map((c) => c.message.content), a.choices.map((c) => c.message.content));
  assert.ok(b.usage.completion_tokens_details.accepted_prediction_tokens > 0);
}]);

tests.push(['streamed: the deltas add up to the same answer; the usage chunk carries the counts', async () => {
  const text = plain.choices[0].message.content;
  const events = await sse('/v1/chat/completions', { model, ...base, stream: true,
                                                     stream_options: { include_usage: true },
                                                     prediction: { type: 'content', content: text } });
  let got = '';
  let usage;
  for (const raw of events) {
    if (raw === '[DONE]') continue;
    const e = JSON.parse(raw);
    if (e.usage) usage = e.usage;
    for (const c of e.choices ?? []) got += c.delta?.content ?? '';
  }
  assert.equal(got, text);
  assert.ok(usage.completion_tokens_details.accepted_prediction_tokens > 0, JSON.stringify(usage));
}]);

tests.push(['a prediction of another shape is a 400 naming the part', async () => {
  for (const [p, param] of [['text', 'prediction'], [{ type: 'text', content: 'x' }, 'prediction.type'],
                            [{ type: 'content' }, 'prediction.content'], [{ type: 'content', content: 5 }, 'prediction.content'],
                            [{ type: 'content', content: [{ type: 'image_url', image_url: 'x' }] }, 'prediction.content'],
                            [{ type: 'content', content: 'x', extra: 1 }, 'prediction.extra']]) {
    assertOpenAIError(await http('POST', '/v1/chat/completions', { model, ...base, prediction: p }), 400, param);
  }
  await chat({ prediction: null });  // null: none, as OpenAI's SDKs send an unset field
}]);

await run(tests);
