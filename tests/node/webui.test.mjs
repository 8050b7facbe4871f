// The web page at / in a real browser: Debian's headless Chromium driven by puppeteer-core, against the
// real `dpserve serve` that tests/e2e/run_e2e.sh started. WEBUI_MODE picks what the server was started with:
//   dp   (--tp-size 2 --dp-size 2 --enable-dp-attention): chat streams, Stop frees the request, metrics show
//        both DP groups; WEBUI_SCREENSHOT=path saves a screenshot while a reply streams (docs/webui.png).
//   key  (--api-key WEBUI_KEY): the shell loads, the page asks for the key and works once given it; the data
//        routes refuse requests without it.
//   off  (--no-webui): / is a 404 with an OpenAI error body.
//   completion (a model without a chat template): the page says so and continues the text it is given.
// Without Chromium the test is skipped (exit 77) unless CI is set, where it must run.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { assert, assertOpenAIError, http, run, URL_BASE } from './e2e_util.mjs';

const MODE = process.env.WEBUI_MODE || 'dp';
const KEY = process.env.WEBUI_KEY || '';
const CHROMIUM = [process.env.CHROMIUM || '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn() until it returns a truthy value; fails with `what` after `ms`.
async function until(what, fn, ms = 30000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(200);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

// The test's own reading of /metrics (independent of the page's parser): value of name{dp_rank=...} per group.
async function metrics() {
  const r = await http('GET', '/metrics');
  assert.equal(r.status, 200);
  const groups = (name) => {
    const m = {};
    for (const x of r.text.matchAll(new RegExp(`^${name}\\{dp_rank="(\\d+)"\\} (\\S+)$`, 'gm'))) m[x[1]] = Number(x[2]);
    return m;
  };
  const aborted = r.text.match(/^dpserve_finished_choices_total\{reason="abort"\} (\S+)$/m);
  const running = groups('dpserve_num_running_reqs');
  return {
    running, kvTotal: groups('dpserve_kv_pages_total'), aborted: aborted ? Number(aborted[1]) : 0,
    runningSum: Object.values(running).reduce((a, b) => a + b, 0),
  };
}

let browser;
async function openPage() {
  const { default: puppeteer } = await import('puppeteer-core');
  if (!browser) {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM, headless: true, protocolTimeout: 60000,
      // Root in a container: no user-namespace sandbox. No GPU, /dev/shm may be small.
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--window-size=1360,900'],
    });
  }
  const page = await browser.newPage();
  await page.setViewport({ width: 1360, height: 900 });
  page.setDefaultTimeout(30000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // Any request the page makes outside this server (a CDN, a font) is a failure: it must work offline.
  page.on('request', (req) => { if (!req.url().startsWith(URL_BASE) && !req.url().startsWith('data:')) errors.push(`external request ${req.url()}`); });
  // Every request of the page gets an answer from a route that exists (no 404: e.g. no favicon fetch).
  page.on('response', (r) => { if (r.status() === 404) errors.push(`404 for ${r.url()}`); });
  const res = await page.goto(`${URL_BASE}/`, { waitUntil: 'load' });
  assert.equal(res.status(), 200);
  return { page, errors };
}

const text = (page, sel) => page.$eval(sel, (e) => e.textContent);
const shown = (page) => page.evaluate(() => document.body.innerText);   // the visible text (no script)
const lastAssistant = (page) => page.evaluate(() => {
  const all = document.querySelectorAll('#messages .msg.assistant');
  const b = all[all.length - 1];
  return b ? { state: b.dataset.state, content: b.querySelector('.content').textContent,
    meta: (b.querySelector('.meta') || { textContent: '' }).textContent } : null;
});
async function setField(page, sel, value) {
  await page.$eval(sel, (e) => { e.value = ''; });
  await page.type(sel, String(value));
}
// Answers the page's next chat/completion requests itself (puppeteer request interception), while every
// other request goes to the server: handler(req) returns true once it has responded to or aborted req.
// Returns the bodies of the completion requests the page sent (parsed), intercepted or not.
async function intercept(page, handler) {
  const sent = [];
  await page.setRequestInterception(true);
  page.on('request', (req) => {
    if (req.isInterceptResolutionHandled()) return;
    if (req.method() === 'POST' && /\/v1\/(chat\/)?completions$/.test(req.url())) {
      sent.push(JSON.parse(req.postData()));
      if (handler.fn && handler.fn(req)) return;
    }
    req.continue();
  });
  return sent;
}
// A server-sent-event body: one `data:` event per object, then `data: [DONE]` unless done is false.
const sseBody = (events, done = true) =>
  events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('') + (done ? 'data: [DONE]\n\n' : '');
const chunk = (delta, finish = null) => ({ object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] });
const sseReply = (req, events, done) => {
  req.respond({ status: 200, contentType: 'text/event-stream', body: sseBody(events, done) });
  return true;
};
const waitReply = (page, ms = 60000) => until('the reply to finish', async () => {
  const m = await lastAssistant(page);
  return m && m.state !== 'streaming' && !(await page.$eval('#send', (b) => b.disabled)) ? m : null;
}, ms);
const errorsShown = (page) => page.$$eval('#messages .msg.error', (l) => l.map((e) => e.textContent));

async function sendChat(page, message) {
  const before = await page.$$eval('#messages .msg.assistant', (l) => l.length);
  await setField(page, '#prompt', message);
  await page.click('#send');
  await until('the reply box', async () => (await page.$$eval('#messages .msg.assistant', (l) => l.length)) > before, 10000);
}

// Checks shared by the modes with a chat template (they need no particular server).
const chatTests = [
  ['temperature left empty: the page sends none (the server\'s default applies) and says which default that is', async () => {
    const { page, errors } = await openPage();
    await until('the model', async () => (await text(page, '#model-name')) !== '…');
    const info = (await http('GET', '/get_server_info')).json;
    const dflt = (info.default_sampling_params || {}).temperature ?? 1;
    await until('the default shown', async () => (await page.$eval('#temperature', (e) => e.placeholder)) === `default ${dflt}`);
    assert.equal(await page.$eval('#temperature', (e) => e.value), '');
    await setField(page, '#max-tokens', 2);
    const sent = await intercept(page, {});
    await sendChat(page, 'hello');
    await waitReply(page);
    assert.equal(sent.length, 1);
    assert.ok(!('temperature' in sent[0]), JSON.stringify(sent[0]));
    await setField(page, '#temperature', 0.3);
    await sendChat(page, 'again');
    await waitReply(page);
    assert.equal(sent[1].temperature, 0.3);
    assert.deepEqual(errors, []);
    await page.close();
  }],
  ['a refused message (429, network failure) is left out of the conversation and goes back to the input box', async () => {
    const { page, errors } = await openPage();
    await until('the model', async () => (await text(page, '#model-name')) !== '…');
    await setField(page, '#max-tokens', 4);
    const handler = {};
    const sent = await intercept(page, handler);
    handler.fn = (req) => {
      req.respond({ status: 429, contentType: 'application/json',
        body: JSON.stringify({ error: { message: 'server busy: try later', type: 'rate_limit_error', param: null, code: 429 } }) });
      return true;
    };
    await sendChat(page, 'refused message');
    const failed = await waitReply(page, 10000);
    assert.equal(failed.state, 'error', JSON.stringify(failed));
    assert.ok((await errorsShown(page)).some((t) => /server busy: try later/.test(t)), 'the server\'s message is shown');
    assert.equal(await page.$eval('#prompt', (e) => e.value), 'refused message', 'the text is back in the input box');
    handler.fn = null;   // the server answers from here on
    await sendChat(page, 'second');
    assert.equal((await waitReply(page)).state, 'done');
    assert.deepEqual(sent[1].messages, [{ role: 'user', content: 'second' }], 'the refused turn is not sent again');
    const reply = (await lastAssistant(page)).content;
    handler.fn = (req) => { req.abort('failed'); return true; };   // the network fails
    await sendChat(page, 'lost in the network');
    assert.equal((await waitReply(page, 10000)).state, 'error');
    assert.equal(await page.$eval('#prompt', (e) => e.value), 'lost in the network');
    handler.fn = null;
    await sendChat(page, 'fourth');
    assert.equal((await waitReply(page)).state, 'done');
    assert.deepEqual(sent[3].messages, [{ role: 'user', content: 'second' }, { role: 'assistant', content: reply },
      { role: 'user', content: 'fourth' }]);
    assert.deepEqual(errors, []);
    await page.close();
  }],
  ['a stream cut before [DONE] is shown as cut off and left out of the conversation', async () => {
    const { page, errors } = await openPage();
    await until('the model', async () => (await text(page, '#model-name')) !== '…');
    const handler = { fn: (req) => sseReply(req, [chunk({ role: 'assistant', content: '' }), chunk({ content: 'Half a' }),
      chunk({ content: ' sent' })], false) };
    const sent = await intercept(page, handler);
    await sendChat(page, 'cut me off');
    const cut = await waitReply(page, 10000);
    assert.equal(cut.content, 'Half a sent', 'what came is shown');
    assert.notEqual(cut.state, 'done', JSON.stringify(cut));
    assert.ok((await errorsShown(page)).some((t) => /cut off/.test(t)), JSON.stringify(await errorsShown(page)));
    // The same with the end: a whole reply.
    handler.fn = (req) => sseReply(req, [chunk({ content: 'Whole.' }), chunk({}, 'stop')]);
    await setField(page, '#prompt', 'again');
    await page.click('#send');
    await until('the second reply', async () => (await lastAssistant(page)).content === 'Whole.', 10000);
    const whole = await waitReply(page, 10000);
    assert.equal(whole.state, 'done');
    assert.deepEqual(sent[1].messages, [{ role: 'user', content: 'again' }], 'the cut reply is not in the conversation');
    assert.deepEqual(errors, []);
    await page.close();
  }],
  ['Enter that commits an IME composition does not send; a plain Enter does', async () => {
    const { page, errors } = await openPage();
    await until('the model', async () => (await text(page, '#model-name')) !== '…');
    const sent = await intercept(page, { fn: (req) => sseReply(req, [chunk({ content: 'ok' }, 'stop')]) });
    await page.$eval('#prompt', (e) => { e.value = 'にほん'; e.focus(); });
    for (const init of [{ isComposing: true, keyCode: 229 }, { isComposing: true }, { keyCode: 229 }]) {
      await page.$eval('#prompt', (e, i) => e.dispatchEvent(new KeyboardEvent('keydown',
        Object.assign({ key: 'Enter', bubbles: true, cancelable: true }, i))), init);
    }
    await sleep(500);
    assert.equal(sent.length, 0, 'nothing sent while composing');
    assert.equal(await page.$eval('#prompt', (e) => e.value), 'にほん');
    await page.keyboard.press('Enter');
    await until('the message sent', async () => sent.length === 1, 10000);
    assert.equal((await waitReply(page, 10000)).state, 'done');
    assert.deepEqual(errors, []);
    await page.close();
  }],
  ['first token counts reasoning; a long reply is written to the page in batches, whole at the end', async () => {
    const { page, errors } = await openPage();
    await until('the model', async () => (await text(page, '#model-name')) !== '…');
    // A reply that is all reasoning (cut by max_tokens while thinking) still has a first-token time.
    const handler = { fn: (req) => sseReply(req, [chunk({ role: 'assistant', reasoning_content: 'Let me' }),
      chunk({ reasoning_content: ' think' }, 'length')]) };
    await intercept(page, handler);
    await sendChat(page, 'think');
    const thought = await waitReply(page, 10000);
    assert.equal(thought.state, 'done');
    assert.equal(await page.$eval('#messages .msg.assistant:last-child .reasoning', (e) => e.textContent), 'Let me think');
    assert.match(thought.meta, /first token \d+\.\d\d s/, thought.meta);
    // 3000 deltas arriving together: a handful of DOM writes, not one (with a layout) per delta.
    const words = Array.from({ length: 3000 }, (_, i) => `w${i} `);
    handler.fn = (req) => sseReply(req, [...words.map((w) => chunk({ content: w })), chunk({}, 'length')]);
    await page.evaluate(() => {
      window.domWrites = 0;
      new MutationObserver((l) => { window.domWrites += l.length; })
        .observe(document.getElementById('messages'), { childList: true, subtree: true, characterData: true });
    });
    await sendChat(page, 'long');
    const long = await waitReply(page, 30000);
    assert.equal(long.content, words.join(''));
    const writes = await page.evaluate(() => window.domWrites);
    assert.ok(writes < 100, `${writes} DOM writes for 3000 deltas`);
    assert.deepEqual(errors, []);
    await page.close();
  }],
];

const dpTests = [
  ['the page shell: HTML, no external loads, served model and server info shown', async () => {
    const r = await http('GET', '/');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/html/);
    const csp = r.headers.get('content-security-policy');
    assert.match(csp, /default-src 'none'/);
    // The page's one script is allowed by its hash, computed here from the bytes served (node:crypto),
    // and no other script: no 'unsafe-inline' for scripts.
    const scripts = [...r.text.matchAll(/<script>([\s\S]*?)<\/script>/g)];
    assert.equal(scripts.length, 1);
    const hash = createHash('sha256').update(Buffer.from(scripts[0][1], 'utf8')).digest('base64');
    const scriptSrc = csp.split(';').map((d) => d.trim()).find((d) => d.startsWith('script-src'));
    assert.equal(scriptSrc, `script-src 'sha256-${hash}'`);
    const models = await http('GET', '/v1/models');
    const id = models.json.data[0].id;
    const { page, errors } = await openPage();
    await until('the model name', async () => (await text(page, '#model-name')) === id);
    // An inline script that got into the page (as markup would) does not run.
    const ran = await page.evaluate(() => new Promise((resolve) => {
      window.__injected = false;
      const s = document.createElement('script');
      s.textContent = 'window.__injected = true;';
      document.body.appendChild(s);
      setTimeout(() => resolve(window.__injected), 200);
    }));
    assert.equal(ran, false, 'an injected inline script ran');
    const info = await until('dp_size in the info table', () => page.$$eval('#info tr', (rows) =>
      rows.map((r) => [r.cells[0].textContent, r.cells[1].textContent]).find(([k]) => k === 'dp_size')));
    assert.equal(info[1], '2');
    assert.deepEqual(errors, []);
    await page.close();
  }],
  ['chat: the page sends system prompt, temperature and max_tokens; the streamed reply equals the API\'s', async () => {
    const { page, errors } = await openPage();
    await until('the model', async () => (await text(page, '#model-name')) !== '…');
    await setField(page, '#system', 'You are terse.');
    await setField(page, '#temperature', 0);
    await setField(page, '#max-tokens', 24);
    await sendChat(page, 'Hello there');
    const done = await until('the reply to finish', async () => {
      const m = await lastAssistant(page);
      return m && m.state !== 'streaming' ? m : null;
    }, 60000);
    assert.equal(done.state, 'done', JSON.stringify(done));
    assert.ok(done.content.length > 0);
    // Greedy: the same request without streaming, sent by the test, gives the same text.
    const model = (await http('GET', '/v1/models')).json.data[0].id;
    const ref = await http('POST', '/v1/chat/completions', {
      model, max_tokens: 24, temperature: 0,
      messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hello there' }],
    });
    assert.equal(ref.status, 200, ref.text);
    assert.equal(done.content, ref.json.choices[0].message.content);
    assert.match(done.meta, /finish: length/);
    assert.match(done.meta, /24 completion tokens/);
    assert.deepEqual(errors, []);
    await page.close();
  }],
  ['Stop aborts a long streamed reply and the server frees it (running back to 0, one abort counted)', async () => {
    const ctxLen = (await http('GET', '/get_server_info')).json.context_length;
    // A random tiny model rarely samples its end token at temperature 1, but it can (CI saw a reply end
    // by itself after 280 tokens while the page was still writing it out, so Stop came too late): such
    // an attempt is told apart by the server (no abort counted, nothing running) and tried again, at
    // most three times; a Stop that does not stop a reply still fails every attempt.
    for (let attempt = 1; ; ++attempt) {
      const { page, errors } = await openPage();
      // A short window (the view's minimum height): less streamed text fills the view. Four ranks on two
      // loaded cores may stream only ~15 tokens/s, and a full-height view took 28 s of that to fill.
      await page.setViewport({ width: 1360, height: 480 });
      await until('the model', async () => (await text(page, '#model-name')) !== '…');
      await setField(page, '#temperature', 1);
      // The reply runs to max_tokens unless stopped (or, rarely, the model samples its end token).
      await setField(page, '#max-tokens', ctxLen - 64);
      const m0 = await metrics();
      assert.equal(m0.runningSum, 0);
      await sendChat(page, 'Tell me a very long story');
      // Streamed: text is on the page while the reply is still coming. CI failed this wait once at 60 s
      // with nothing to tell a slow stream from a stuck one: it now waits as long as the waits below,
      // and a failure says what the page and the server showed.
      let seen = null;
      try {
        await until('streamed text while streaming', async () => {
          seen = await lastAssistant(page);
          return seen && seen.state === 'streaming' && seen.content.length > 0;
        }, 120000);
      } catch (e) {
        const m = await metrics();
        throw new Error(`${e.message}; the page's reply: ${JSON.stringify(seen)}; the server: running ${JSON.stringify(m.running)}, aborted ${m.aborted}`);
      }
      await until('the request running on the server', async () => (await metrics()).runningSum === 1, 20000);
      // Scrolled up while text streams in, the view stays where the reader put it (it follows only at the bottom).
      await until('more text than the view holds', () => page.$eval('#messages', (m) => m.scrollHeight > m.clientHeight + 100), 120000);
      await page.$eval('#messages', (m) => { m.scrollTop = 0; });
      const grown = await page.$eval('#messages .msg.assistant:last-child .content', (e) => e.textContent.length);
      await until('more streamed text', async () => (await lastAssistant(page)).content.length > grown + 20, 60000);
      assert.equal(await page.$eval('#messages', (m) => m.scrollTop), 0, 'the page scrolled a reader who had scrolled up');
      const streaming = await lastAssistant(page);
      assert.equal(streaming.state, 'streaming', 'the reply must still be streaming when Stop is pressed');
      await page.click('#stop');
      const stopped = await until('the reply marked stopped', async () => {
        const m = await lastAssistant(page);
        return m && m.state !== 'streaming' ? m : null;
      }, 10000);
      if (stopped.state === 'done' && attempt < 3) {
        // Ended by itself before Stop reached it: the page says the model stopped, and the server
        // counted no abort and runs nothing.
        assert.match(stopped.meta, /finish: stop/, JSON.stringify(stopped));
        const m = await until('the server idle', async () => {
          const x = await metrics();
          return x.runningSum === 0 ? x : null;
        }, 20000);
        assert.equal(m.aborted, m0.aborted, 'an abort was counted for a reply the page shows as finished');
        console.log(`# attempt ${attempt}: the reply ended by itself before Stop (${JSON.stringify(stopped.meta)}); trying again`);
        await page.close();
        continue;
      }
      assert.equal(stopped.state, 'stopped');
      assert.match(stopped.meta, /stopped by you/);
      const m1 = await until('running back to 0 and the abort counted', async () => {
        const m = await metrics();
        return m.runningSum === 0 && m.aborted === m0.aborted + 1 ? m : null;
      }, 20000);
      assert.equal(m1.runningSum, 0);
      // The Send button is usable again.
      assert.equal(await page.$eval('#send', (b) => b.disabled), false);
      assert.deepEqual(errors, []);
      await page.close();
      break;
    }
  }],
  ['the metrics view shows both DP groups with numbers from /metrics, and plots them', async () => {
    const { page, errors } = await openPage();
    const m = await metrics();
    assert.deepEqual(Object.keys(m.kvTotal).sort(), ['0', '1']);
    const rows = await until('two DP rows', async () => {
      const r = await page.$$eval('#dp-table tbody tr', (l) => l.map((tr) => ({ dp: tr.dataset.dp, cells: [...tr.cells].map((c) => c.textContent) })));
      return r.length === 2 ? r : null;
    });
    for (const r of rows) {
      assert.match(r.cells[1], /^\d+$/, `running of dp ${r.dp}`);
      assert.match(r.cells[2], /^\d+$/, `queued of dp ${r.dp}`);
      const [, total] = r.cells[3].split(' / ');
      assert.equal(Number(total), m.kvTotal[r.dp], `KV pages of dp ${r.dp}`);
      assert.match(r.cells[4], /^\d+(\.\d)? %$/);
    }
    // After a few scrapes: a tokens/s figure and one line per group in the running-requests plot.
    await until('3 scrapes', async () => Number(await page.$eval('#metrics-state', (e) => e.dataset.scrapes || 0)) >= 3, 15000);
    assert.match(await text(page, '#s-toks'), /^\d+(\.\d+)?$/);
    const lines = await page.$$eval('#p-running polyline', (l) => l.map((p) => [p.dataset.series, p.getAttribute('points').split(' ').length]));
    assert.deepEqual(lines.map((x) => x[0]), ['0', '1']);
    for (const [, n] of lines) assert.ok(n >= 3, `points per line: ${n}`);
    assert.deepEqual(errors, []);
    await page.close();
  }],
];

// For docs/webui.png: the page while its own reply streams beside a few API requests on both groups.
async function screenshot() {
  const { page } = await openPage();
  await until('the model', async () => (await text(page, '#model-name')) !== '…');
  const model = await text(page, '#model-name');
  await setField(page, '#system', 'You are a storyteller.');
  await setField(page, '#max-tokens', 3000);
  await sendChat(page, 'Tell me a story about a lighthouse');
  await sleep(4000);
  // Long requests, cut off (by closing their connections) once the picture is taken.
  const cut = new AbortController();
  const others = [0, 1, 2].map(async (i) => {
    await sleep(2500 * i);
    const res = await fetch(`${URL_BASE}/v1/completions`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: cut.signal,
      body: JSON.stringify({ model, prompt: `Story ${i}:`, max_tokens: 3000, ignore_eos: true, stream: true }),
    });
    await res.text();
  }).map((p) => p.catch(() => {}));
  await sleep(14000);
  await page.screenshot({ path: process.env.WEBUI_SCREENSHOT, type: 'png' });
  console.log(`screenshot: ${process.env.WEBUI_SCREENSHOT}`);
  await page.click('#stop');
  cut.abort();
  await Promise.all(others);
  await page.close();
}
if (process.env.WEBUI_SCREENSHOT) dpTests.push(['screenshot', screenshot]);

const keyTests = [
  ['with --api-key: the shell loads without the key, the data routes refuse it', async () => {
    assert.ok(KEY, 'WEBUI_KEY must be set');
    const none = { Authorization: '' };
    const shell = await http('GET', '/', undefined, none);
    assert.equal(shell.status, 200);
    assert.ok(!shell.text.includes(KEY));
    assertOpenAIError(await http('GET', '/v1/models', undefined, none), 401);
    assertOpenAIError(await http('GET', '/get_server_info', undefined, none), 401);
    assertOpenAIError(await http('POST', '/v1/chat/completions',
      { model: 'x', messages: [{ role: 'user', content: 'hi' }] }, none), 401);
    assertOpenAIError(await http('GET', '/v1/models', undefined, { Authorization: 'Bearer wrong' }), 401);
    // The shell is only '/': other paths stay behind the key.
    assertOpenAIError(await http('GET', '/index.html', undefined, none), 401);
  }],
  ['with --api-key: the page asks for the key, refuses a wrong one, then chats with the right one', async () => {
    const { page, errors } = await openPage();
    await page.waitForSelector('#auth.show');
    assert.equal(await text(page, '#model-name'), '…');
    await setField(page, '#key', 'wrong-key');
    await page.click('#key-save');
    await until('the refusal', async () => /refused/.test(await text(page, '#auth-state')), 10000);
    assert.equal(await text(page, '#model-name'), '…');
    await setField(page, '#key', KEY);
    await page.click('#key-save');
    const models = await http('GET', '/v1/models', undefined, { Authorization: `Bearer ${KEY}` });
    await until('the model name', async () => (await text(page, '#model-name')) === models.json.data[0].id, 10000);
    assert.equal(await page.$eval('#auth', (e) => e.classList.contains('show')), false);
    await setField(page, '#max-tokens', 8);
    await sendChat(page, 'Hi');
    const done = await until('the reply', async () => {
      const m = await lastAssistant(page);
      return m && m.state !== 'streaming' ? m : null;
    }, 60000);
    assert.equal(done.state, 'done', JSON.stringify(done));
    assert.ok(done.content.length > 0);
    // The page sent no key-less data request that succeeded, and the route still refuses one now.
    assertOpenAIError(await http('GET', '/v1/models', undefined, { Authorization: '' }), 401);
    // Errors logged by the browser for the first, key-less 401s are expected; no script errors.
    assert.deepEqual(errors, []);
    await page.close();
  }],
  ['with --api-key: a wrong key typed after the right one is refused and the right one stays in use', async () => {
    const { page, errors } = await openPage();
    await page.waitForSelector('#auth.show');
    await setField(page, '#key', KEY);
    await page.click('#key-save');
    const id = (await http('GET', '/v1/models', undefined, { Authorization: `Bearer ${KEY}` })).json.data[0].id;
    await until('the model name', async () => (await text(page, '#model-name')) === id, 10000);
    await setField(page, '#key', 'oops-wrong');
    await page.click('#key-save');
    await until('the refusal', async () => /refused/i.test(await shown(page)), 10000);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('dpserve-api-key')), KEY, 'the stored key is unchanged');
    assert.match(await text(page, '#key-state'), /refused/i);
    assert.equal(await text(page, '#model-name'), id);
    assert.ok(!/error/.test(await text(page, '#info')), 'the info table is still there');
    await setField(page, '#max-tokens', 4);
    await sendChat(page, 'Still works?');
    const done = await waitReply(page);
    assert.equal(done.state, 'done', JSON.stringify(done));
    assert.deepEqual(errors, []);
    await page.close();
  }],
  ['with --api-key: a key that cannot go in a header is refused at entry and breaks nothing, nor does a stored one', async () => {
    const { page, errors } = await openPage();
    await page.waitForSelector('#auth.show');
    const scrapes = () => page.$eval('#metrics-state', (e) => Number(e.dataset.scrapes || 0));
    await until('a metrics scrape', async () => (await scrapes()) >= 1, 15000);
    await page.$eval('#key', (e) => { e.value = 'ключ\u00a0key'; });
    const n = await scrapes();
    await page.click('#key-save');
    // /metrics needs no key and keeps being read.
    await until('more metrics scrapes', async () => (await scrapes()) >= n + 2, 15000);
    assert.match(await shown(page), /only printable ASCII/);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('dpserve-api-key')), null);
    // One stored by an older page: dropped at load, the page asks for a key and metrics work.
    await page.evaluate(() => sessionStorage.setItem('dpserve-api-key', 'clé\u2019'));
    await page.reload({ waitUntil: 'load' });
    await page.waitForSelector('#auth.show');
    await until('metrics scrapes after the reload', async () => (await scrapes()) >= 2, 15000);
    assert.ok(!/ISO-8859|code point/.test(await text(page, '#metrics-state')));
    await setField(page, '#key', KEY);
    await page.click('#key-save');
    await until('the model name', async () => (await text(page, '#model-name')) !== '…', 10000);
    assert.deepEqual(errors, []);
    await page.close();
  }],
];

const offTests = [
  ['--no-webui: / is a 404 with an OpenAI error body', async () => {
    const r = await http('GET', '/');
    const e = assertOpenAIError(r, 404);
    assert.equal(e.code, 'not_found');
    assert.ok(!/<html/i.test(r.text));
  }],
];

const completionTests = [
  ['without a chat template the page completes text through /v1/completions, streamed', async () => {
    const info = (await http('GET', '/get_server_info')).json;
    assert.equal(info.has_chat_template, false);
    const { page, errors } = await openPage();
    await until('the no-template note', async () => /no chat template/.test(await text(page, '#mode')));
    await setField(page, '#temperature', 0);
    await setField(page, '#max-tokens', 16);
    await sendChat(page, 'Once upon a time');
    const done = await until('the reply to finish', async () => {
      const m = await lastAssistant(page);
      return m && m.state !== 'streaming' ? m : null;
    }, 60000);
    assert.equal(done.state, 'done', JSON.stringify(done));
    const model = (await http('GET', '/v1/models')).json.data[0].id;
    const ref = await http('POST', '/v1/completions', { model, prompt: 'Once upon a time', max_tokens: 16, temperature: 0 });
    assert.equal(ref.status, 200, ref.text);
    assert.ok(ref.json.choices[0].text.length > 0);
    assert.equal(done.content, ref.json.choices[0].text);
    assert.deepEqual(errors, []);
    await page.close();
  }],
  ['completion: the prompt is sent exactly as typed, and the system prompt (unused) is hidden', async () => {
    const { page, errors } = await openPage();
    await until('the no-template note', async () => /no chat template/.test(await text(page, '#mode')));
    const sent = await intercept(page, {});
    await setField(page, '#temperature', 0);
    await setField(page, '#max-tokens', 8);
    const prompt = '  Once upon a time,\n';
    await page.$eval('#prompt', (e, v) => { e.value = v; }, prompt);
    await page.click('#send');
    const done = await waitReply(page);
    assert.equal(done.state, 'done', JSON.stringify(done));
    assert.equal(sent.length, 1);
    assert.equal(sent[0].prompt, prompt);
    assert.ok(!('messages' in sent[0]));
    assert.equal(await page.$eval('#system', (e) => e.offsetParent === null), true, 'the system prompt box is hidden');
    // Only spaces: nothing is sent.
    await page.$eval('#prompt', (e) => { e.value = '  \n '; });
    await page.click('#send');
    await sleep(500);
    assert.equal(sent.length, 1);
    assert.deepEqual(errors, []);
    await page.close();
  }],
];

const tests = { dp: [...dpTests, ...chatTests], key: keyTests, off: offTests, completion: completionTests }[MODE];
if (!tests) { console.error(`unknown WEBUI_MODE ${MODE}`); process.exit(2); }
if (MODE !== 'off' && !CHROMIUM) {
  if (process.env.CI) { console.error('Chromium not found and CI is set: apt-get install chromium (scripts/install-deps.sh)'); process.exit(1); }
  console.log('SKIP: Chromium not found (apt-get install chromium, or set CHROMIUM=path)');
  process.exit(77);
}
process.on('exit', () => { if (browser && browser.process()) browser.process().kill('SIGKILL'); });
const close = async () => { if (browser) await Promise.race([browser.close(), sleep(10000)]); };
tests.push(['close the browser', close]);
await run(tests);
