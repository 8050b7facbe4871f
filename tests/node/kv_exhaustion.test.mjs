// KV exhaustion: run_e2e starts the server with a KV pool (--max-total-tokens) that holds about two of
// these long generations, then 12 run at once. The scheduler must preempt (dpserve_preemptions_total
// rises), recompute the preempted requests and still give every one the greedy text it gets alone
// (alone it fits, so nothing is preempted then) and the offline generator's text.
import { assert, http, offlineGreedy, run } from './e2e_util.mjs';
import { complete, completeStream, metrics, total, waitIdle, kvPagesHeldByRequests } from './reliability_util.mjs';

const PROMPTS = ['Once upon a time', 'The little dog', 'Lily and Ben went to the park', 'Tom had a red ball',
  'One day, a cat', 'The sun was hot and'];

run([
  ['long generations that cannot all fit preempt and resume with the same greedy output', async () => {
    const info = (await http('GET', '/get_server_info')).json;
    const pool = Number(info.max_total_tokens);
    const ctx = Number(info.context_length);
    const maxTokens = Math.min(ctx - 16, Math.floor(pool * 0.4));
    assert.ok(3 * (maxTokens + 4) > pool, `premise: three requests of ${maxTokens} tokens overflow the ${pool}-token pool`);
    console.log(`  pool ${pool} tokens, context ${ctx}, ${maxTokens} new tokens per request`);
    const specs = PROMPTS.map((prompt) => ({ prompt, max_tokens: maxTokens, temperature: 0, ignore_eos: true }));

    const m0 = await metrics();
    const solo = [];
    for (const s of specs) solo.push(await complete(s));
    for (const r of solo) assert.equal(r.finish, 'length');
    const m1 = await metrics();
    assert.equal(total(m1, 'dpserve_preemptions_total'), total(m0, 'dpserve_preemptions_total'),
      'one request at a time fits: no preemption');

    const jobs = specs.flatMap((s, i) => [{ i, stream: true }, { i, stream: false }]);
    const results = await Promise.all(jobs.map((j) => (j.stream ? completeStream(specs[j.i]) : complete(specs[j.i]))));
    const m2 = await metrics();
    const preempted = total(m2, 'dpserve_preemptions_total') - total(m1, 'dpserve_preemptions_total');
    console.log(`  ${jobs.length} concurrent: ${preempted} preemptions`);
    assert.ok(preempted > 0, 'the scheduler preempted under KV pressure');
    jobs.forEach((j, k) => {
      const r = results[k];
      assert.equal(r.finish, 'length', `job ${k}: finish`);
      assert.equal(r.completion_tokens, maxTokens, `job ${k}: tokens`);
      assert.equal(r.text, solo[j.i].text, `job ${k} (${j.stream ? 'stream' : 'non-stream'}): same text as alone`);
    });
    const idle = await waitIdle();
    assert.equal(kvPagesHeldByRequests(idle), 0, 'every page is back (or only in the prefix cache) once idle');
  }],
  ['under KV pressure the text still equals the offline generator (stops at EOS)', async () => {
    const info = (await http('GET', '/get_server_info')).json;
    const n = Math.min(Number(info.context_length) - 16, Math.floor(Number(info.max_total_tokens) * 0.4));
    const prompts = PROMPTS.slice(0, 4);
    const before = total(await metrics(), 'dpserve_preemptions_total');
    // Filler requests that ignore EOS keep the pool full while the checked ones run.
    const filler = PROMPTS.slice(2).map((prompt) => complete({ prompt, max_tokens: n, temperature: 0, ignore_eos: true }));
    const checked = await Promise.all(prompts.map((prompt) => complete({ prompt, max_tokens: n, temperature: 0 })));
    await Promise.all(filler);
    console.log(`  ${total(await metrics(), 'dpserve_preemptions_total') - before} preemptions in this round`);
    prompts.forEach((p, i) => assert.equal(checked[i].text, offlineGreedy(p, n), `"${p}": server text = offline text`));
  }],
]);
