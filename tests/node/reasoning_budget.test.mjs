// The thinking budget (vLLM's thinking_token_budget, llama.cpp's thinking_budget_tokens and
// --reasoning-budget, Anthropic's thinking.budget_tokens) against the real `dpserve serve` on the tiny
// random Qwen3 (real Qwen3 tokenizer, --reasoning-parser qwen3).
//
// A random model writes anything, so logit_bias pins what it would do without a budget: a bias of
// -100 on </think> keeps it thinking to the end, +100 on <think> makes it open its own block. Each
// output position is then read from the chat logprobs (the token strings the model emitted), so where
// the block closed is counted, not inferred from text.
//
// REASONING_BUDGET_SERVER unset: the Qwen3 template (the model opens <think> itself), no server cap;
// with REASONING_BUDGET_MODELS / _TOKENIZERS (the tiny models' and the tokenizers' folders) the
// start-up errors of the flags are checked too.
// REASONING_BUDGET_SERVER=N, REASONING_BUDGET_MESSAGE=text: a template that opens <think> (as QwQ /
// DeepSeek-R1 do), served with --reasoning-budget N --reasoning-budget-message text.
import { spawnSync } from 'node:child_process';

import Anthropic from '@anthropic-ai/sdk';

import { API_KEY, URL_BASE, assert, assertOpenAIError, http, modelName, run, sse } from './e2e_util.mjs';

const serverBudget = process.env.REASONING_BUDGET_SERVER === undefined ? -1 : Number(process.env.REASONING_BUDGET_SERVER);
const message = process.env.REASONING_BUDGET_MESSAGE ?? '';
const an = new Anthropic({ apiKey: API_KEY, baseURL: URL_BASE, maxRetries: 0, timeout: 120000 });
const ask = [{ role: 'user', content: 'Think, then answer.' }];
let model, OPEN, CLOSE;

async function ids(text) {
  const r = await http('POST', '/tokenize', { model, prompt: text, add_special_tokens: false });
  assert.equal(r.status, 200, r.text);
  return r.json.tokens;
}

// A whole chat answer with every output token's string (logprobs).
async function chat(extra) {
  const r = await http('POST', '/v1/chat/completions',
                       { model, messages: ask, temperature: 0, logprobs: true, ...extra });
  assert.equal(r.status, 200, r.text.slice(0, 400));
  const ch = r.json.choices[0];
  return { tokens: ch.logprobs.content.map((t) => t.token), reasoning: ch.message.reasoning_content ?? '',
           content: ch.message.content ?? '', finish: ch.finish_reason, usage: r.json.usage };
}

const tests = [];

tests.push(['the tags are single tokens of the vocabulary', async () => {
  model = await modelName();
  [OPEN] = await ids('<think>');
  [CLOSE] = await ids('</think>');
  assert.deepEqual([(await ids('<think>')).length, (await ids('</think>')).length], [1, 1]);
}]);

if (serverBudget < 0) {
  // The model opens its own block (+100 on <think>) and never closes it (-100 on </think>).
  const pinned = () => ({ logit_bias: { [OPEN]: 100, [CLOSE]: -100 } });

  tests.push(['without a budget a block the model never closes runs to max_tokens', async () => {
    const r = await chat({ max_tokens: 12, ...pinned() });
    assert.deepEqual(r.tokens, Array(12).fill('<think>'));
    assert.equal(r.reasoning, '<think>'.repeat(11));
    assert.equal(r.finish, 'length');
    assert.equal(r.usage.completion_tokens_details.reasoning_tokens, 12, 'never closed: every token is reasoning');
  }]);

  tests.push(['thinking_token_budget N: the model\'s block is closed after N thinking tokens, over logit_bias', async () => {
    for (const n of [0, 1, 6]) {
      for (const field of ['thinking_token_budget', 'thinking_budget_tokens']) {
        const r = await chat({ max_tokens: n + 5, [field]: n, ...pinned() });
        // The model's opening tag, N thinking tokens, the forced close, then the answer (+100 still on <think>).
        const want = ['<think>', ...Array(n).fill('<think>'), '</think>', ...Array(3).fill('<think>')];
        assert.deepEqual(r.tokens, want, `${field} ${n}`);
        assert.equal(r.reasoning, '<think>'.repeat(n), `${field} ${n}`);
        assert.equal(r.content, '<think>'.repeat(3), `${field} ${n}`);
        assert.equal(r.usage.completion_tokens, n + 5);
        // OpenAI's reasoning_tokens: the tokens up to and including the </think> that closed the block
        // (an empty block is no reasoning).
        assert.equal(r.usage.completion_tokens_details.reasoning_tokens, n === 0 ? 0 : n + 2);
      }
    }
  }]);

  tests.push(['only the block is counted: tokens before the model opens it are free', async () => {
    // A regex makes the model write "hello there" (two or more tokens) before it may open the block.
    const r = await chat({ max_tokens: 14, thinking_token_budget: 2, logit_bias: { [OPEN]: 100 },
                           regex: 'hello there<think>[a-z ]*</think>[a-z ]*' });
    const open = r.tokens.indexOf('<think>');
    assert.ok(open >= 2, JSON.stringify(r.tokens));
    assert.equal(r.tokens.slice(0, open).join(''), 'hello there');
    assert.ok(!r.tokens.slice(open + 1, open + 3).includes('</think>'), JSON.stringify(r.tokens));
    assert.equal(r.tokens[open + 3], '</think>', JSON.stringify(r.tokens));
  }]);

  tests.push(['streamed deltas split as the whole answer does', async () => {
    const body = { model, messages: ask, temperature: 0, max_tokens: 9, thinking_token_budget: 4, ...pinned() };
    const whole = await chat(body);
    const events = await sse('/v1/chat/completions', { ...body, logprobs: false, stream: true,
                                                       stream_options: { include_usage: true } });
    const usage = JSON.parse(events.at(-2)).usage;
    assert.equal(usage.completion_tokens_details.reasoning_tokens, 6);
    assert.equal(events.at(-1), '[DONE]');
    let reasoning = '', content = '';
    for (const e of events.slice(0, -1)) {
      const d = JSON.parse(e).choices[0]?.delta ?? {};
      reasoning += d.reasoning_content ?? '';
      content += d.content ?? '';
    }
    assert.equal(reasoning, whole.reasoning);
    assert.equal(content, whole.content);
    assert.equal(reasoning, '<think>'.repeat(4));
  }]);

  tests.push(['a hard rule that forbids the closing tag fails the request by name, others go on', async () => {
    const r = await http('POST', '/v1/chat/completions', { model, messages: ask, max_tokens: 10, thinking_token_budget: 2,
                                                           allowed_token_ids: [OPEN] });
    const e = assertOpenAIError(r, 400);
    assert.match(e.message, /thinking budget ran out after 2 tokens.*allowed_token_ids/);
    const ok = await chat({ max_tokens: 4, thinking_token_budget: 1, ...pinned() });
    assert.deepEqual(ok.tokens, ['<think>', '<think>', '</think>', '<think>']);
  }]);

  tests.push(['bad budgets are 400s naming the field', async () => {
    for (const [field, v] of [['thinking_token_budget', -2], ['thinking_token_budget', 1.5], ['thinking_budget_tokens', '5'],
                              ['thinking_token_budget', 2 ** 31]]) {
      const r = await http('POST', '/v1/chat/completions', { model, messages: ask, max_tokens: 4, [field]: v });
      assertOpenAIError(r, 400, field);
    }
    const both = await http('POST', '/v1/chat/completions',
                            { model, messages: ask, max_tokens: 4, thinking_token_budget: 3, thinking_budget_tokens: 3 });
    const e = assertOpenAIError(both, 400);
    assert.match(e.message, /same setting/);
  }]);
  tests.push(['bad --reasoning-budget flags stop the server at start naming the flag', async () => {
    const models = process.env.REASONING_BUDGET_MODELS, toks = process.env.REASONING_BUDGET_TOKENIZERS;
    if (!models) return;
    const qwen = ['--model-path', `${models}/qwen3-tiny`, '--tokenizer-path', `${toks}/qwen3`];
    const cases = [
      [[...qwen, '--reasoning-budget', '3'], /--reasoning-budget requires --reasoning-parser/],
      [[...qwen, '--reasoning-budget-message', 'x'], /--reasoning-budget-message requires --reasoning-parser/],
      [[...qwen, '--reasoning-parser', 'qwen3', '--reasoning-budget', '-2'], /--reasoning-budget: Value -2 not in range/],
      [[...qwen, '--reasoning-parser', 'qwen3', '--reasoning-budget', '3', '--reasoning-budget-message', 'a </think>'],
       /--reasoning-budget-message must not contain/],
      // Llama-3's vocabulary has no <think> token: nothing the budget could force.
      [['--model-path', `${models}/llama3-tiny`, '--tokenizer-path', `${toks}/llama3`, '--reasoning-parser', 'qwen3',
        '--reasoning-budget', '3'], /--reasoning-budget: this tokenizer has no single token for <think> and <\/think>/],
    ];
    for (const [args, want] of cases) {
      const r = spawnSync(process.env.DPSERVE_BIN, ['serve', '--host', '127.0.0.1', '--port', '0', ...args],
                          { encoding: 'utf8', timeout: 120000 });
      assert.notEqual(r.status, 0, `${args.join(' ')}: ${r.stderr.slice(-300)}`);
      assert.match(r.stderr + r.stdout, want, args.join(' '));
    }
  }]);
} else {
  // The template opened the block; -100 on </think> keeps the model in it.
  const pinned = () => ({ logit_bias: { [CLOSE]: -100 } });
  let msg;

  tests.push(['--reasoning-budget: the block closes after the server\'s N tokens, with the message before </think>', async () => {
    msg = (await ids(message)).length;
    assert.ok(msg >= 1);
    const r = await chat({ max_tokens: serverBudget + msg + 4, ...pinned() });
    assert.ok(!r.tokens.slice(0, serverBudget).includes('</think>'), JSON.stringify(r.tokens));
    assert.equal(r.tokens.slice(serverBudget, serverBudget + msg).join(''), message);
    assert.equal(r.tokens[serverBudget + msg], '</think>');
    assert.equal(r.usage.completion_tokens_details.reasoning_tokens, serverBudget + msg + 1);
    assert.ok(r.reasoning.endsWith(message), JSON.stringify(r.reasoning));
    assert.ok(!r.content.includes('</think>'));
    assert.equal(r.usage.completion_tokens, serverBudget + msg + 4);
  }]);

  tests.push(['a request\'s budget overrides the server\'s; -1 lifts it', async () => {
    const one = await chat({ max_tokens: msg + 4, thinking_token_budget: 1, ...pinned() });
    assert.notEqual(one.tokens[0], '</think>');
    assert.equal(one.tokens.slice(1, 1 + msg).join(''), message);
    assert.equal(one.tokens[1 + msg], '</think>');
    const zero = await chat({ max_tokens: msg + 2, thinking_token_budget: 0, ...pinned() });
    assert.equal(zero.tokens.slice(0, msg).join(''), message);
    assert.equal(zero.tokens[msg], '</think>');
    assert.equal(zero.reasoning.trim(), message.trim());
    const free = await chat({ max_tokens: serverBudget + msg + 6, thinking_token_budget: -1, ...pinned() });
    assert.ok(!free.tokens.includes('</think>'), JSON.stringify(free.tokens));
    assert.equal(free.content, '');
    assert.equal(free.finish, 'length');
  }]);

  tests.push(['Anthropic: thinking.budget_tokens is the budget; adaptive thinking takes the server\'s', async () => {
    const adaptive = await an.messages.create({ model, max_tokens: serverBudget + msg + 6, messages: ask, temperature: 0,
                                                thinking: { type: 'adaptive' } });
    assert.equal(adaptive.content[0].type, 'thinking');
    assert.ok(adaptive.content[0].thinking.endsWith(message), JSON.stringify(adaptive.content));
    const viaChat = await chat({ max_tokens: serverBudget + msg + 6, chat_template_kwargs: { enable_thinking: true } });
    assert.equal(adaptive.content[0].thinking, viaChat.reasoning);
    // 1024 (Anthropic's least budget): the same answer as chat's with that budget, whose logprobs show
    // where the block closed: by the model before 1024 tokens, or forced at 1024 after the message;
    // or it never closed because the model ended its answer inside the block first (a random model
    // may: which one it does depends on the kernels' rounding).
    const budget = 1024, max = 1100;
    const m = await an.messages.create({ model, max_tokens: max, messages: ask, temperature: 0,
                                         thinking: { type: 'enabled', budget_tokens: budget } });
    const c = await chat({ max_tokens: max, thinking_token_budget: budget, chat_template_kwargs: { enable_thinking: true } });
    assert.equal(m.content[0].type, 'thinking');
    assert.equal(m.content[0].thinking, c.reasoning);
    const closed = c.tokens.indexOf('</think>');
    if (closed < 0) {
      assert.equal(c.finish, 'stop', `never closed, finish ${c.finish}`);
      assert.ok(c.tokens.length <= budget, `never closed in ${c.tokens.length} tokens`);
      assert.equal(m.stop_reason, 'end_turn');
    } else {
      assert.ok(closed <= budget + msg, `closed at ${closed}`);
      if (closed > budget) assert.equal(c.tokens.slice(budget, budget + msg).join(''), message);
    }
    assert.equal(m.usage.output_tokens, c.usage.completion_tokens);
  }]);

  tests.push(['Responses: the server\'s budget closes the reasoning item as it does chat\'s reasoning', async () => {
    const max = serverBudget + msg + 6;
    const r = await http('POST', '/v1/responses', { model, input: ask[0].content, max_output_tokens: max, temperature: 0 });
    assert.equal(r.status, 200, r.text);
    const item = r.json.output.find((o) => o.type === 'reasoning');
    const c = await chat({ max_tokens: max });
    assert.equal(item.content[0].text, c.reasoning);
    const closed = c.tokens.indexOf('</think>');
    assert.ok(closed >= 0 && closed <= serverBudget + msg, `closed at ${closed}: ${JSON.stringify(c.tokens)}`);
    if (closed > serverBudget) assert.equal(c.tokens.slice(serverBudget, serverBudget + msg).join(''), message);
  }]);
}

await run(tests);
