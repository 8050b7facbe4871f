// Background responses (/v1/responses with background: true) with the official `openai` Node client
// against the real `dpserve serve` on the tiny random Qwen3, started with --max-running-requests 1
// (so a request can be held in the queue behind a running one), --max-background-responses 2 and
// two API keys. A background run must end as the same request run in the foreground does (that
// route is checked against chat completions in responses.test.mjs); queued, cancelled and deleted
// runs are observed while a long streamed chat completion holds the engine's one running place.
// Streamed (background + stream), the events are those a foreground stream sends, and GET
// /v1/responses/{id}?stream=true&starting_after=N sends them again from any point.
import { API_KEY, URL_BASE, assert, assertOpenAIError, client, holdTheEngine, http, modelName, run } from './e2e_util.mjs';

const oa = client();
const OTHER_KEY = process.env.RESPONSES_OTHER_KEY;
const CAP = Number(process.env.BACKGROUND_CAP ?? 2);
let model;

function messageText(r) {
  return r.output.filter((o) => o.type === 'message').flatMap((o) => o.content).map((c) => c.text).join('');
}

// Polls GET /v1/responses/{id} until the run has ended (bounded: 60 s).
async function settled(id) {
  const end = Date.now() + 60000;
  for (;;) {
    const r = await oa.responses.retrieve(id);
    if (!['queued', 'in_progress'].includes(r.status)) return r;
    assert.ok(Date.now() < end, `response ${id} still ${r.status} after 60 s`);
    await new Promise((res) => setTimeout(res, 20));
  }
}


// The events of an SSE body as OpenAI frames them ("event: <type>" then one data line), raw and parsed.
function parseEvents(raw) {
  assert.ok(raw.endsWith('\n\n'));
  return raw.split('\n\n').slice(0, -1).map((block) => {
    const lines = block.split('\n');
    assert.equal(lines.length, 2);
    assert.ok(lines[0].startsWith('event: ') && lines[1].startsWith('data: '));
    const data = JSON.parse(lines[1].slice(6));
    assert.equal(data.type, lines[0].slice(7));
    return { raw: `${block}\n\n`, data };
  });
}

async function rawFetch(method, path, body) {
  return fetch(`${URL_BASE}${path}`, {
    method, signal: AbortSignal.timeout(120000),
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${API_KEY}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

// A gauge's value in /metrics.
async function gauge(name) {
  const text = (await http('GET', '/metrics')).text;
  const m = text.match(new RegExp(`^${name} (\\d+)$`, 'm'));
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
}

const tests = [];
tests.push(['model', async () => { model = await modelName(); }]);

tests.push(['a background response answers queued at once and ends as the same request in the foreground', async () => {
  for (const extra of [{ max_output_tokens: 12 }, { max_output_tokens: 40, instructions: 'Be brief.' }]) {
    const body = { model, input: 'Tell me about the sea.', temperature: 0, ...extra };
    const fg = await oa.responses.create(body);
    const bg = await oa.responses.create({ ...body, background: true });
    assert.equal(bg.status, 'queued');
    assert.equal(bg.background, true);
    assert.deepEqual(bg.output, []);
    assert.equal(bg.usage, null);
    assert.match(bg.id, /^resp_[0-9a-f]{32}$/);
    // The input items are listed (with their ids) while it may still run, and the same after.
    const before = (await oa.responses.inputItems.list(bg.id)).data;
    const done = await settled(bg.id);
    assert.equal(done.id, bg.id);
    assert.equal(done.background, true);
    assert.equal(done.status, fg.status);
    assert.equal(messageText(done), messageText(fg));
    assert.equal(done.output_text, fg.output_text);
    // The same counts (cached_tokens aside: the second run finds the first one's prompt in the prefix cache).
    for (const k of ['input_tokens', 'output_tokens', 'total_tokens']) assert.equal(done.usage[k], fg.usage[k], k);
    assert.deepEqual(done.usage.output_tokens_details, fg.usage.output_tokens_details);
    assert.deepEqual((await oa.responses.inputItems.list(bg.id)).data, before);
    assert.equal(before.length, 1);
    // Finished, it continues a conversation like any stored response, and cancelling it changes
    // nothing (idempotent: the response as it ended).
    const next = await oa.responses.create({ model, input: 'More.', previous_response_id: bg.id, max_output_tokens: 2 });
    assert.ok(['completed', 'incomplete'].includes(next.status));
    const c = await http('POST', `/v1/responses/${bg.id}/cancel`);
    assert.equal(c.status, 200);
    assert.deepEqual(c.json, (await http('GET', `/v1/responses/${bg.id}`)).json);
    assert.equal(c.json.status, done.status);
  }
}]);

tests.push(['queued behind a running request: GET says queued, cancel ends it, delete stops it, the bound is a 429', async () => {
  const release = await holdTheEngine(model);
  try {
    const a = await oa.responses.create({ model, input: 'hi', background: true, max_output_tokens: 50 });
    assert.equal((await oa.responses.retrieve(a.id)).status, 'queued');
    // Not finished: it cannot be continued yet.
    const cont = await http('POST', '/v1/responses', { model, input: 'x', previous_response_id: a.id });
    assert.equal(assertOpenAIError(cont, 400, 'previous_response_id').code, 'previous_response_not_finished');
    // Another tenant neither sees nor cancels it.
    if (OTHER_KEY) {
      const other = client({ apiKey: OTHER_KEY });
      await assert.rejects(other.responses.retrieve(a.id), (e) => e.status === 404);
      await assert.rejects(other.responses.cancel(a.id), (e) => e.status === 404);
    }
    const b = await oa.responses.create({ model, input: 'hi', background: true, max_output_tokens: 50 });
    assert.equal(b.status, 'queued');
    assert.equal(await gauge('dpserve_background_responses'), 2);
    // CAP runs are going: one more is refused with 429 until one ends.
    const full = await http('POST', '/v1/responses', { model, input: 'hi', background: true });
    assert.equal(assertOpenAIError(full, 429).code, 'queue_full');
    assert.equal(full.headers.get('retry-after'), '1');
    // Cancel: the run stops before the answer, which is the response as it ended (nothing generated).
    const c = await oa.responses.cancel(a.id);
    assert.equal(c.status, 'cancelled');
    assert.equal(messageText(c), '');
    assert.equal(c.usage.output_tokens, 0);
    assert.equal((await oa.responses.retrieve(a.id)).status, 'cancelled');
    assert.equal((await oa.responses.cancel(a.id)).status, 'cancelled');
    // Delete: gone at once and its run stopped, so its place is free when the answer comes.
    const d = await http('DELETE', `/v1/responses/${b.id}`);
    assert.equal(d.status, 200);
    assert.deepEqual(d.json, { id: b.id, object: 'response', deleted: true });
    await assert.rejects(oa.responses.retrieve(b.id), (e) => e.status === 404);
    const again = [];
    for (let i = 0; i < CAP; ++i)
      again.push(await oa.responses.create({ model, input: 'hi', background: true, max_output_tokens: 3 }));
    for (const r of again) assert.equal(r.status, 'queued');
    await release();
    // The engine free again, they run to their end.
    for (const r of again) assert.ok(['completed', 'incomplete'].includes((await settled(r.id)).status));
    // The deleted one stayed deleted (its run's end did not bring it back).
    await assert.rejects(oa.responses.retrieve(b.id), (e) => e.status === 404);
    // Nothing runs any more once every run's end is kept (a run leaves the table just after).
    const end = Date.now() + 10000;
    while (await gauge('dpserve_background_responses') !== 0) {
      assert.ok(Date.now() < end, 'background runs still counted 10 s after they ended');
      await new Promise((res) => setTimeout(res, 20));
    }
  } finally {
    await release();
  }
}]);

tests.push(['background + stream: the events as a foreground stream has them, again from any point by GET', async () => {
  const body = { model, input: 'Tell me about the sea.', temperature: 0, max_output_tokens: 16 };
  const fg = await oa.responses.create(body);
  const res = await rawFetch('POST', '/v1/responses', { ...body, background: true, stream: true });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') || '', /^text\/event-stream/);
  const events = parseEvents(await res.text());
  events.forEach((e, i) => assert.equal(e.data.sequence_number, i));
  assert.equal(events[0].data.type, 'response.created');
  assert.equal(events[0].data.response.status, 'queued');
  assert.equal(events[0].data.response.background, true);
  assert.equal(events[1].data.type, 'response.in_progress');
  const last = events[events.length - 1].data;
  assert.equal(last.type, fg.status === 'incomplete' ? 'response.incomplete' : 'response.completed');
  const text = events.filter((e) => e.data.type === 'response.output_text.delta').map((e) => e.data.delta).join('');
  assert.equal(text, fg.output_text);
  assert.equal(last.response.output_text ?? text, fg.output_text);
  const id = last.response.id;
  const stored = await oa.responses.retrieve(id);
  assert.equal(stored.status, fg.status);
  assert.equal(stored.output_text, fg.output_text);
  // Resumed after event N: the same bytes as the first stream from N + 1 on.
  for (const n of [0, 3, events.length - 2]) {
    const again = await rawFetch('GET', `/v1/responses/${id}?stream=true&starting_after=${n}`);
    assert.equal(again.status, 200);
    assert.equal(await again.text(), events.slice(n + 1).map((e) => e.raw).join(''));
  }
  const whole = await rawFetch('GET', `/v1/responses/${id}?stream=true`);
  assert.equal(await whole.text(), events.map((e) => e.raw).join(''));
  // The SDK's own streaming of it.
  const sdkEvents = [];
  for await (const e of await oa.responses.create({ ...body, background: true, stream: true })) sdkEvents.push(e);
  assert.equal(sdkEvents[0].type, 'response.created');
  assert.equal(sdkEvents.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join(''),
               fg.output_text);
}]);

tests.push(['background + stream: the run goes on after the connection drops; GET picks the events up', async () => {
  const release = await holdTheEngine(model);
  let id;
  try {
    const ctl = new AbortController();
    const res = await fetch(`${URL_BASE}/v1/responses`, {
      method: 'POST', signal: ctl.signal,
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ model, input: 'hi', temperature: 0, max_output_tokens: 8, background: true, stream: true }),
    });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    let got = '';
    while (!got.includes('\n\n')) got += new TextDecoder().decode((await reader.read()).value);
    const created = parseEvents(got.slice(0, got.indexOf('\n\n') + 2))[0].data;
    assert.equal(created.type, 'response.created');
    id = created.response.id;
    ctl.abort();  // the client leaves while the response waits behind the running request
    await reader.cancel().catch(() => {});
    assert.equal((await oa.responses.retrieve(id)).status, 'queued');
  } finally {
    await release();
  }
  const rest = parseEvents(await (await rawFetch('GET', `/v1/responses/${id}?stream=true&starting_after=0`)).text());
  assert.equal(rest[0].data.sequence_number, 1);
  assert.equal(rest[0].data.type, 'response.in_progress');
  const done = rest[rest.length - 1].data.response;
  assert.ok(['completed', 'incomplete'].includes(done.status));
  const fg = await oa.responses.create({ model, input: 'hi', temperature: 0, max_output_tokens: 8 });
  assert.equal(rest.filter((e) => e.data.type === 'response.output_text.delta').map((e) => e.data.delta).join(''),
               fg.output_text);
  assert.equal((await oa.responses.retrieve(id)).output_text, fg.output_text);
}]);

tests.push(['bad stream queries are 400s naming the parameter', async () => {
  const polled = await oa.responses.create({ model, input: 'hi', background: true, max_output_tokens: 2 });
  await settled(polled.id);
  const fg = await oa.responses.create({ model, input: 'hi', max_output_tokens: 2 });
  for (const id of [polled.id, fg.id])  // no events kept: not created with background + stream
    assert.equal(assertOpenAIError(await http('GET', `/v1/responses/${id}?stream=true`), 400, 'stream').code,
                 'response_not_streamable');
  assertOpenAIError(await http('GET', `/v1/responses/${fg.id}?starting_after=1`), 400, 'starting_after');
  assertOpenAIError(await http('GET', `/v1/responses/${fg.id}?stream=true&starting_after=x`), 400, 'starting_after');
  assertOpenAIError(await http('GET', `/v1/responses/${fg.id}?stream=yes`), 400, 'stream');
  assertOpenAIError(await http('GET', `/v1/responses/${fg.id}?include=x`), 400, 'include');
  assert.equal((await http('GET', `/v1/responses/${fg.id}?stream=false`)).status, 200);
  await assert.rejects(oa.responses.retrieve('resp_nothere', { stream: true }), (e) => e.status === 404);
}]);

tests.push(['bad background requests are 400s naming the field', async () => {
  const bad = [
    [{ background: true, store: false }, 'background'],
    [{ background: 'yes' }, 'background'],
  ];
  for (const [extra, param] of bad) {
    const r = await http('POST', '/v1/responses', { model, input: 'hi', max_output_tokens: 2, ...extra });
    assertOpenAIError(r, 400, param);
  }
  // A foreground response cannot be cancelled (it has finished by the time anyone knows its id).
  const fg = await oa.responses.create({ model, input: 'hi', max_output_tokens: 2 });
  assert.equal(fg.background, false);
  const c = await http('POST', `/v1/responses/${fg.id}/cancel`);
  assert.equal(assertOpenAIError(c, 400, 'response_id').code, 'response_not_cancellable');
}]);

run(tests);
