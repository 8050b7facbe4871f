// Overload: 10x more concurrent requests than --max-running-requests (run_e2e starts the server with
// --max-running-requests 4). Every request must queue and complete with the finish reason and text it
// gets when sent alone: greedy decoding is batch-invariant, so the one-at-a-time runs of the same
// requests on the same server are the reference. /metrics must show the cap held and requests queued.
import { assert, run } from './e2e_util.mjs';
import { complete, completeStream, metrics, series, sleep, waitIdle, kvPagesHeldByRequests } from './reliability_util.mjs';

const MAX_RUNNING = Number(process.env.DPSERVE_MAX_RUNNING || 4);
const PROMPTS = ['Once upon a time', 'The little dog', 'Lily and Ben went to the park', 'Tom had a red ball',
  'One day, a cat', 'The sun was hot and', 'Mom said', 'There was a big tree', 'Sam liked to', 'The bird sang'];

// Distinct request bodies; some get a stop string taken from their own solo output below.
const specs = PROMPTS.map((prompt, i) => ({ prompt, max_tokens: 24 + (i % 4) * 16, temperature: 0 }));

run([
  ['40+ concurrent streaming and non-streaming requests queue and match their solo runs', async () => {
    // Solo references, one request at a time.
    const solo = [];
    for (const s of specs) solo.push(await complete(s));
    // Stop strings: a word from the middle of a solo output, so those requests finish with "stop".
    const withStop = [];
    specs.forEach((s, i) => {
      const words = solo[i].text.split(' ').filter((w) => /^[a-z]{3,}$/.test(w));
      if (i % 2 === 0 && words.length > 4) withStop.push({ ...s, stop: [` ${words[Math.floor(words.length / 2)]}`] });
    });
    assert.ok(withStop.length >= 3, 'some solo outputs give a stop word');
    for (const s of withStop) solo.push(await complete(s));
    const all = [...specs, ...withStop];
    const finishes = new Set(solo.map((r) => r.finish));
    assert.ok(finishes.has('stop') && finishes.has('length'), `both finish reasons among the references: ${[...finishes]}`);

    const jobs = [];
    for (let k = 0; jobs.length < 10 * MAX_RUNNING + 4; k++) {
      const i = k % all.length;
      jobs.push({ i, stream: k % 2 === 0 });
    }
    let sampling = true;
    let maxRunning = 0;
    let maxQueued = 0;
    let samples = 0;
    const sampler = (async () => {
      while (sampling) {
        const m = await metrics();
        maxRunning = Math.max(maxRunning, ...series(m, 'dpserve_num_running_reqs'));
        maxQueued = Math.max(maxQueued, ...series(m, 'dpserve_num_queue_reqs'));
        samples++;
        await sleep(20);
      }
    })();
    const results = await Promise.all(jobs.map((j) => (j.stream ? completeStream(all[j.i]) : complete(all[j.i]))));
    sampling = false;
    await sampler;
    for (let k = 0; k < jobs.length; k++) {
      const r = results[k];
      const want = solo[jobs[k].i];
      const what = `job ${k} (spec ${jobs[k].i}, ${jobs[k].stream ? 'stream' : 'non-stream'})`;
      assert.equal(r.finish, want.finish, `${what}: finish reason`);
      assert.equal(r.completion_tokens, want.completion_tokens, `${what}: completion tokens`);
      assert.equal(r.text, want.text, `${what}: same text as alone`);
    }
    console.log(`  ${jobs.length} concurrent requests; /metrics over ${samples} samples: ` +
      `max running ${maxRunning}, max queued ${maxQueued}`);
    assert.ok(maxRunning <= MAX_RUNNING, `running ${maxRunning} > --max-running-requests ${MAX_RUNNING}`);
    // The 44 short jobs can all finish between two /metrics samples (the samples wait for an HTTP
    // worker behind them), so the queue is shown with fewer, longer requests that hold the cap for
    // a while: MAX_RUNNING + 4 of 400 tokens each, sampled until one sample sees the queue.
    let longDone = false;
    const long = Promise.all(Array.from({ length: MAX_RUNNING + 4 }, (_, i) =>
      complete({ prompt: PROMPTS[i % PROMPTS.length], max_tokens: 400, temperature: 0, ignore_eos: true })))
      .finally(() => { longDone = true; });
    while (!longDone && maxQueued < 1) {
      const m = await metrics();
      maxRunning = Math.max(maxRunning, ...series(m, 'dpserve_num_running_reqs'));
      maxQueued = Math.max(maxQueued, ...series(m, 'dpserve_num_queue_reqs'));
      samples++;
      await sleep(5);
    }
    const longResults = await long;
    assert.ok(longResults.every((r) => r.completion_tokens === 400), 'the long requests ran to their length');
    console.log(`  then ${MAX_RUNNING + 4} long requests: max running ${maxRunning}, max queued ${maxQueued} ` +
      `(${samples} samples in all)`);
    assert.ok(maxRunning <= MAX_RUNNING, `running ${maxRunning} > --max-running-requests ${MAX_RUNNING}`);
    assert.ok(maxQueued >= 1, 'requests waited in the queue');
    const idle = await waitIdle();
    assert.equal(kvPagesHeldByRequests(idle), 0, 'no KV page is held once every request is done');
  }],
]);
