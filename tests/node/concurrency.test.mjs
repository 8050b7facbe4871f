// Batching must not change results: 1 vs N concurrent identical greedy requests give identical
// text, and 64 concurrent streaming requests all complete with the right token counts.
import { assert, client, modelName, run } from './e2e_util.mjs';

const oa = client();
let model;

async function streamed(prompt, maxTokens) {
  const stream = await oa.completions.create({ model, prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true, logprobs: 0, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let tokens = 0;
  let finish = null;
  let usage = null;
  for await (const ch of stream) {
    if (ch.usage) { usage = ch.usage; continue; }
    const c = ch.choices[0];
    text += c.text;
    if (c.logprobs) tokens += c.logprobs.tokens.length;
    finish = c.finish_reason || finish;
  }
  return { text, tokens, finish, usage };
}

run([
  ['1 vs 8 concurrent identical greedy requests', async () => {
    model = await modelName();
    const body = { model, prompt: 'The little dog', max_tokens: 48, temperature: 0 };
    const one = (await oa.completions.create(body)).choices[0].text;
    const many = await Promise.all(Array.from({ length: 8 }, () => oa.completions.create(body)));
    for (const r of many) assert.equal(r.choices[0].text, one);
    // Mixed with different prompts in the same batches.
    const mixed = await Promise.all(Array.from({ length: 12 }, (_, i) =>
      oa.completions.create(i % 2 ? body : { ...body, prompt: `Tom had ${i} apples` })));
    for (let i = 1; i < 12; i += 2) assert.equal(mixed[i].choices[0].text, one);
  }],
  ['64 concurrent streaming requests complete with the right token counts', async () => {
    const lens = Array.from({ length: 64 }, (_, i) => 8 + (i % 5) * 6);
    const prompts = Array.from({ length: 64 }, (_, i) => (i % 3 === 0 ? 'Once upon a time' : `Sam saw ${i} birds`));
    const results = await Promise.all(lens.map((n, i) => streamed(prompts[i], n)));
    const solo = new Map();
    for (let i = 0; i < 64; i++) {
      const r = results[i];
      assert.equal(r.finish, 'length', `request ${i}`);
      assert.equal(r.tokens, lens[i], `request ${i}: tokens streamed`);
      assert.equal(r.usage.completion_tokens, lens[i], `request ${i}: usage`);
      const key = `${prompts[i]}|${lens[i]}`;
      if (!solo.has(key)) solo.set(key, (await oa.completions.create({ model, prompt: prompts[i], max_tokens: lens[i], temperature: 0, ignore_eos: true })).choices[0].text);
      assert.equal(r.text, solo.get(key), `request ${i}: same text as alone`);
    }
  }],
]);
