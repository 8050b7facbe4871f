// Chat with a ChatML template given by --chat-template (stories260K has none of its own): the OpenAI
// client's chat results equal a completion of the same rendered prompt.
import { assert, client, modelName, run, tokenize } from './e2e_util.mjs';

const oa = client();
const MESSAGES = [{ role: 'system', content: 'You tell stories.' }, { role: 'user', content: 'Tell me about a cat' }];
const RENDERED = '<|im_start|>system\nYou tell stories.<|im_end|>\n<|im_start|>user\nTell me about a cat<|im_end|>\n<|im_start|>assistant\n';
let model;
let want;

run([
  ['chat (greedy) equals the completion of the rendered template', async () => {
    model = await modelName();
    const ids = tokenize(RENDERED, false);
    const comp = await oa.completions.create({ model, prompt: ids, max_tokens: 32, temperature: 0 });
    want = comp.choices[0].text;
    const r = await oa.chat.completions.create({ model, messages: MESSAGES, max_tokens: 32, temperature: 0 });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].message.content, want);
    assert.equal(r.usage.prompt_tokens, ids.length);
    assert.equal(r.usage.completion_tokens, comp.usage.completion_tokens);
  }],
  ['chat streaming: role first, content deltas concatenate, usage', async () => {
    const stream = await oa.chat.completions.create({ model, messages: MESSAGES, max_completion_tokens: 32, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let role = null;
    let finish = null;
    let usage = null;
    for await (const ch of stream) {
      if (ch.usage) { usage = ch.usage; continue; }
      assert.equal(ch.object, 'chat.completion.chunk');
      const d = ch.choices[0].delta;
      if (d.role) { assert.equal(role, null, 'role once'); role = d.role; }
      if (d.content) text += d.content;
      finish = ch.choices[0].finish_reason || finish;
    }
    assert.equal(role, 'assistant');
    assert.equal(text, want);
    assert.ok(['length', 'stop'].includes(finish));
    assert.equal(usage.prompt_tokens, tokenize(RENDERED, false).length);
  }],
  ['chat logprobs and n', async () => {
    const r = await oa.chat.completions.create({ model, messages: MESSAGES, max_tokens: 16, temperature: 0, logprobs: true, top_logprobs: 2, n: 2 });
    assert.equal(r.choices.length, 2);
    for (const c of r.choices) {
      assert.equal(c.message.content, r.choices[0].message.content);
      assert.equal(c.logprobs.content.length, r.usage.completion_tokens / 2);
      for (const t of c.logprobs.content) {
        assert.ok(t.top_logprobs.length <= 2 && t.top_logprobs.length >= 1);
        assert.ok(t.logprob >= t.top_logprobs[0].logprob - 1e-4);
        assert.deepEqual(t.bytes, [...Buffer.from(t.token, 'utf8')]);
      }
    }
  }],
  ['chat top_logprobs: most likely first, and under greedy the first is the chosen token', async () => {
    // Greedy picks the argmax, so the most likely alternative is the token itself; the list is in
    // decreasing order (as OpenAI and SGLang's sorted torch.topk give it).
    const r = await oa.chat.completions.create({ model, messages: MESSAGES, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 5 });
    const content = r.choices[0].logprobs.content;
    assert.ok(content.length >= 1);
    for (const t of content) {
      assert.equal(t.top_logprobs.length, 5);
      assert.equal(t.top_logprobs[0].token, t.token);
      assert.ok(Math.abs(t.top_logprobs[0].logprob - t.logprob) <= 1e-6, `${t.top_logprobs[0].logprob} vs ${t.logprob}`);
      for (let i = 1; i < t.top_logprobs.length; i++) {
        assert.ok(t.top_logprobs[i].logprob <= t.top_logprobs[i - 1].logprob, JSON.stringify(t.top_logprobs));
      }
    }
  }],
  ['empty messages is a 400 naming messages; server still serves', async () => {
    await assert.rejects(oa.chat.completions.create({ model, messages: [] }), (e) => e.status === 400 && e.param === 'messages');
    const r = await oa.chat.completions.create({ model, messages: MESSAGES, max_tokens: 32, temperature: 0 });
    assert.equal(r.choices[0].message.content, want);
  }],
]);
