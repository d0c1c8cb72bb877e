'use strict';
// herald's built-in debug dashboard in headless Chromium (playwright-core, Debian's
// /usr/bin/chromium): HTTP Basic auth, live counts and channel table, the server-sent event log,
// and the test-event form reaching a real pusher-js client. Saves a screenshot.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { launchChromium, closeChromium } = require('../lib/browser');
const { startServer, freePort, tomlString, COMPAT_DIR, HOST } = require('../lib/harness');
const h = require('../lib/clients');

const ARTIFACTS = path.join(COMPAT_DIR, 'artifacts');
const SCREENSHOT = path.join(ARTIFACTS, 'dashboard.png');

const USER = 'admin';
const PASSWORD = `compat-dashboard-${process.pid}`;

let server;
let dashUrl;
let context;
let launched;

function dashboardToml(port) {
  return [
    '[dashboard]',
    'enabled = true',
    `host = ${tomlString(HOST)}`,
    `port = ${port}`,
    `user = ${tomlString(USER)}`,
    `password = ${tomlString(PASSWORD)}`,
  ].join('\n');
}

/** startServer with the dashboard on its own free port; a new port if that one got taken. */
async function startWithDashboard() {
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      const s = await startServer({ extraToml: dashboardToml(port) });
      return { s, port };
    } catch (e) {
      lastError = e;
      if (!/in use/i.test(e.message)) break;
    }
  }
  throw lastError;
}

const fetchDash = (urlPath, headers = {}) =>
  fetch(`${dashUrl}${urlPath}`, { headers, signal: AbortSignal.timeout(h.WAIT) });
const basic = (user, password) => ({ authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` });

before(async () => {
  const started = await startWithDashboard();
  server = started.s;
  dashUrl = `http://${HOST}:${started.port}`;
  launched = await launchChromium({ httpCredentials: { username: USER, password: PASSWORD }, viewport: { width: 1200, height: 720 } });
  context = launched.context;
});

after(async () => {
  await closeChromium(launched, h.withTimeout);
  await h.teardown(server);
});

/** Text of the log lines for one channel, newest first (as the page shows them). */
const logLines = (page, channel) =>
  page.evaluate(
    (c) => [...document.querySelectorAll('#log > div')].filter((d) => d.dataset.channel === c).map((d) => d.textContent),
    channel,
  );

/** Waits until the log has a line for `channel` whose text starts with ` <kind> ` after the time and node. */
const waitForLogLine = (page, channel, kind) =>
  page.waitForFunction(
    ([c, k]) =>
      [...document.querySelectorAll('#log > div')].some(
        (d) => d.dataset.channel === c && d.querySelector('span').textContent === k,
      ),
    [channel, kind],
    { timeout: h.WAIT },
  );

// `HH:MM:SS` as toLocaleTimeString() writes it (with AM/PM in an en-US browser), then the node.
const PREFIX = String.raw`^\d{1,2}:\d{2}:\d{2}(?: [AP]M)? \[node \d+\] `;
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('dashboard: Basic auth, live channel table and log, the send form reaches pusher-js', async () => {
  // 1. Every route needs the credentials.
  const anonymous = await fetchDash('/api/apps');
  assert.equal(anonymous.status, 401);
  assert.equal(anonymous.headers.get('www-authenticate'), 'Basic realm="herald dashboard"');
  assert.deepEqual(await anonymous.json(), { error: 'authentication required' });
  assert.equal((await fetchDash('/api/apps', basic(USER, `${PASSWORD}x`))).status, 401);
  assert.equal((await fetchDash('/api/apps', basic('root', PASSWORD))).status, 401);
  const apps = await fetchDash('/api/apps', basic(USER, PASSWORD));
  assert.equal(apps.status, 200);
  assert.deepEqual((await apps.json()).apps, ['1001', '1002', '1003']);

  const page = await h.withTimeout(context.newPage(), h.WAIT, 'a new page');
  page.setDefaultTimeout(h.WAIT);
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  try {
    // 2. The page renders its counts for the first app, and its event stream is open (events
    // are only published while a page is watching, so nothing may happen before that).
    const res = await page.goto(`${dashUrl}/`);
    assert.equal(res.status(), 200);
    await page.waitForFunction(() => document.getElementById('connections').textContent !== '–', null, {
      timeout: h.WAIT,
    });
    assert.equal(await page.inputValue('#app'), '1001');
    assert.equal(await page.textContent('#connections'), '0');
    assert.equal(await page.textContent('#channels-count'), '0');
    await page.waitForFunction(() => typeof source !== 'undefined' && source && source.readyState === EventSource.OPEN, null, {
      timeout: h.WAIT,
    });

    // 3. A pusher-js client subscribes: its channel shows up in the table and in the log.
    const ch = h.uid('dashboard-');
    const c = h.client(server, { name: 'dashboard watcher' });
    const socketId = await h.withTimeout(c.connected(), h.WAIT, 'pusher-js to connect');
    await c.subscribe(ch);
    const got = c.record(ch, 'dashboard-test');
    await page.waitForFunction(
      (name) => {
        const row = document.querySelector(`tr[data-channel="${CSS.escape(name)}"]`);
        return (
          row &&
          row.children[1].textContent === '1' &&
          document.getElementById('connections').textContent === '1' &&
          document.getElementById('channels-count').textContent === '1'
        );
      },
      ch,
      { timeout: h.WAIT },
    );
    assert.deepEqual(
      await page.$$eval('tbody#channels tr', (rows) => rows.map((r) => [r.dataset.channel, ...[...r.cells].map((td) => td.textContent)])),
      [[ch, ch, '1', '']],
    );
    await waitForLogLine(page, ch, 'subscribed');
    const subscribed = await logLines(page, ch);
    assert.equal(subscribed.length, 1);
    assert.match(subscribed[0], new RegExp(`${PREFIX}subscribed ${escapeRe(ch)} · ${escapeRe(socketId)}$`));

    // 4. The form publishes through the normal path.
    await page.fill('#send-channel', ch);
    await page.fill('#send-event', 'dashboard-test');
    await page.fill('#send-data', '{"from":"dashboard"}');
    await page.click('#send button[type="submit"]');
    await page.waitForFunction(() => document.getElementById('send-result').textContent !== '', null, {
      timeout: h.WAIT,
    });
    assert.equal(await page.textContent('#send-result'), 'sent');
    const first = await got.next('dashboard-test from the dashboard');
    assert.deepEqual(first.data, { from: 'dashboard' });
    await c.barrier();
    assert.equal(got.items.length, 1);
    await waitForLogLine(page, ch, 'api_message');
    const lines = await logLines(page, ch);
    assert.equal(lines.length, 2);
    assert.match(
      lines[0],
      new RegExp(`${PREFIX}api_message ${escapeRe(ch)} · dashboard-test · from the dashboard: \\{"from":"dashboard"\\}$`),
    );
    assert.equal(lines[1], subscribed[0]); // newest first
    assert.deepEqual(
      await page.$$eval('#log > div', (ds) => ds.filter((d) => d.dataset.event === 'dashboard-test').map((d) => d.dataset.channel)),
      [ch],
    );
    assert.deepEqual(pageErrors, []);

    // 5. A screenshot (the README's picture, with charts, comes from dashboard-charts.test.js).
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true, timeout: h.WAIT });
  } catch (e) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-failed.png'), fullPage: true, timeout: h.WAIT }).catch(() => {});
    throw e;
  } finally {
    await h.withTimeout(page.close(), h.WAIT, 'the page to close').catch(() => {});
  }
});
