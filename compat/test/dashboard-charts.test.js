'use strict';
// The dashboard's charts and cluster panel in headless Chromium:
//  1. one node: scripted traffic (pusher-js clients, client events, REST calls good and bad,
//     webhooks delivered and given up); the counts drawn in the page for the samples covering
//     the traffic equal the /metrics deltas over the same interval; a screenshot is saved.
//  2. two nodes on a real redis-server: both listed with their address, heartbeat and view of
//     Redis, the charts sum both; one node killed shows as gone within the node timeout.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { launchChromium, closeChromium } = require('../lib/browser');
const { appsWith, startRedis, startServer, freePort, tomlString, COMPAT_DIR, HOST } = require('../lib/harness');
const { startReceiver, webhookToml } = require('../lib/webhooks');
const h = require('../lib/clients');

const ARTIFACTS = path.join(COMPAT_DIR, 'artifacts');
const README_SCREENSHOT = path.join(COMPAT_DIR, '..', 'docs', 'dashboard.png');
const USER = 'admin';
const PASSWORD = `compat-charts-${process.pid}`;
const AUTH = { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` };

const cleanups = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
});

/** herald with the dashboard (1 s samples) and /metrics on free ports. */
async function startNode(options = {}) {
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const [dashPort, metricsPort] = [await freePort(), await freePort()];
    const dashboard = [
      '[dashboard]',
      'enabled = true',
      `host = ${tomlString(HOST)}`,
      `port = ${dashPort}`,
      `user = ${tomlString(USER)}`,
      `password = ${tomlString(PASSWORD)}`,
      'sample_seconds = 1',
    ].join('\n');
    try {
      const s = await startServer({ ...options, metricsPort, extraToml: [options.extraToml || '', dashboard].join('\n') });
      s.dashUrl = `http://${HOST}:${dashPort}`;
      return s;
    } catch (e) {
      lastError = e;
      if (!/in use/i.test(e.message)) break;
    }
  }
  throw lastError;
}

const getJson = async (url, headers = {}) => {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(h.WAIT) });
  assert.equal(res.status, 200, url);
  return res.json();
};

/** /metrics as {'name{labels}': value}. */
async function scrape(server) {
  const res = await fetch(server.metricsUrl, { signal: AbortSignal.timeout(h.WAIT) });
  assert.equal(res.status, 200);
  const out = {};
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return out;
}

/** Sum of the series whose name and labels match (a REST status class: `status="4`). */
const total = (m, name, labelPart = '') =>
  Object.entries(m)
    .filter(([k]) => (k === name || k.startsWith(`${name}{`)) && k.includes(labelPart))
    .reduce((s, [, v]) => s + v, 0);

/** Waits until the node has sampled a point that ends after `afterMs` (unix ms); returns its t. */
async function pointAfter(server, afterMs) {
  let t = null;
  await h.eventually(async () => {
    const c = await getJson(`${server.dashUrl}/api/cluster`, AUTH);
    const own = c.nodes.find((n) => n.node === c.node);
    const last = own.points[own.points.length - 1];
    t = last && last.t * 1000 > afterMs ? last.t : null;
    return t !== null;
  }, `a sample ending after ${new Date(afterMs).toISOString()}`);
  return t;
}

/** The charts as the page draws them: 'scope.key' → [[t, count]]. */
const drawn = (page) =>
  page.$$eval('#charts polyline', (lines) => Object.fromEntries(lines.map((l) => [l.dataset.key, JSON.parse(l.dataset.values)])));

async function openDashboard(server) {
  const launched = await launchChromium({ httpCredentials: { username: USER, password: PASSWORD }, viewport: { width: 1280, height: 1000 } });
  cleanups.push(() => closeChromium(launched, h.withTimeout));
  const page = await h.withTimeout(launched.context.newPage(), h.WAIT, 'a new page');
  page.setDefaultTimeout(h.WAIT);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const res = await page.goto(`${server.dashUrl}/`);
  assert.equal(res.status(), 200);
  return { page, errors };
}

async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true, timeout: h.WAIT });
}

test('dashboard charts: the counts drawn equal the /metrics deltas for the same interval', async () => {
  const ok = await startReceiver();
  cleanups.push(() => ok.close());
  const nobody = `http://${HOST}:${await freePort()}/hooks`; // refused: failed attempts, then given up
  const server = await startNode({
    apps: appsWith({
      main: [webhookToml(ok.url, { events: ['channel_occupied'] }), webhookToml(nobody, { events: ['channel_occupied'] })].join('\n'),
    }),
    extraToml: ['[webhooks]', 'retry_window_secs = 1'].join('\n'),
  });
  cleanups.push(() => h.teardown(server));
  const { page, errors } = await openDashboard(server);
  try {
    await page.waitForFunction(() => document.getElementById('charts').dataset.lastT, null, { timeout: h.WAIT });
    assert.deepEqual(await page.$$eval('#nodes tr', (rows) => rows.map((r) => [r.dataset.alive, r.cells[4].textContent])), [
      ['true', 'local adapter'],
    ]);

    // Quiet: the counters now and at the next sample are the same.
    const quietFrom = Date.now();
    const m0 = await scrape(server);
    const t0 = await pointAfter(server, quietFrom);

    // Traffic: three clients (one leaves), client events, REST calls (4 good, 2 refused),
    // one channel_occupied webhook per receiver (one delivered, one given up).
    const ch = h.uid('private-charts-');
    const a = h.client(server, { name: 'a' });
    const b = h.client(server, { name: 'b' });
    const c = h.client(server, { name: 'c' });
    await Promise.all([a, b, c].map((x) => h.withTimeout(x.connected(), h.WAIT, 'pusher-js to connect')));
    const chA = await a.subscribe(ch);
    await b.subscribe(ch);
    const got = b.record(ch, 'client-tick');
    for (let i = 0; i < 3; i++) assert.equal(chA.trigger('client-tick', { i }), true);
    for (let i = 0; i < 3; i++) await got.next(`client-tick ${i}`);
    const api = h.sdk(server);
    for (let i = 0; i < 4; i++) await h.json(api.trigger(ch, 'server-tick', { i }));
    const refused = h.sdk(server, server.apps.main, { secret: 'not-the-secret' });
    for (let i = 0; i < 2; i++) {
      const e = await refused.trigger(ch, 'nope', {}).then(() => null, (err) => err);
      assert.equal(e && e.status, 401);
    }
    c.disconnect();
    await ok.events.find((e) => e.event.name === 'channel_occupied', 'channel_occupied delivered');
    await b.barrier();
    // Done when the given-up webhook is counted and the closed socket is gone.
    await h.eventually(async () => {
      const m = await scrape(server);
      return total(m, 'herald_webhook_given_up_total') === 1 && m.herald_connections === 2;
    }, 'the refused webhook given up and the third client gone', 10_000);

    // Quiet again.
    const quietAgain = Date.now();
    const m1 = await scrape(server);
    const t1 = await pointAfter(server, quietAgain);
    await page.waitForFunction((t) => Number(document.getElementById('charts').dataset.lastT) >= t, t1, { timeout: h.WAIT });
    const charts = await drawn(page);
    const sum = (key) => charts[key].filter(([t]) => t > t0 && t <= t1).reduce((s, [, v]) => s + v, 0);
    const at = (key, t) => (charts[key].find(([tt]) => tt === t) || [t, null])[1];
    const d = (name, label) => total(m1, name, label) - total(m0, name, label);
    const app = 'app="1001"';

    const expected = {
      'total.messages_out': d('herald_messages_out_total'),
      'total.messages_in': d('herald_messages_in_total'),
      'total.rest_2xx': d('herald_rest_requests_total', 'status="2'),
      'total.rest_4xx': d('herald_rest_requests_total', 'status="4'),
      'total.rest_5xx': d('herald_rest_requests_total', 'status="5'),
      'app.api_messages': d('herald_app_broadcasts_total', `${app},source="rest"`),
      'app.client_events': d('herald_app_broadcasts_total', `${app},source="client_event"`),
      'app.webhooks_delivered': d('herald_app_webhooks_total', `${app},outcome="delivered"`),
      'app.webhooks_failed': d('herald_app_webhooks_total', `${app},outcome="failed"`),
      'app.webhooks_given_up': d('herald_app_webhooks_total', `${app},outcome="given_up"`),
    };
    const seen = Object.fromEntries(Object.keys(expected).map((k) => [k, sum(k)]));
    assert.deepEqual(seen, expected);
    // The traffic is in there (so the comparison cannot pass on zeros).
    assert.equal(expected['total.rest_2xx'], 4);
    assert.equal(expected['total.rest_4xx'], 2);
    assert.equal(expected['app.api_messages'], 4);
    assert.equal(expected['app.client_events'], 3);
    assert.equal(expected['app.webhooks_delivered'], 1);
    assert.equal(expected['app.webhooks_given_up'], 1);
    assert.ok(expected['app.webhooks_failed'] >= 1, `failed attempts: ${expected['app.webhooks_failed']}`);
    assert.ok(expected['total.messages_out'] > 0 && expected['total.messages_in'] > 0);
    // Gauges: as read at the end of the last sample.
    assert.equal(at('total.connections', t1), m1.herald_connections);
    assert.equal(at('app.connections', t1), m1[`herald_app_connections{${app}}`]);
    assert.equal(m1.herald_connections, 2);
    // And the legend shows the last sample of each line.
    assert.match(await page.textContent('.chart[data-chart="connections"] .legend'), /all apps 2/);
    assert.deepEqual(errors, []);

    await screenshot(page, 'dashboard-charts.png');
    // The README's picture is refreshed on request only (UPDATE_README_SCREENSHOT=1 compat/run),
    // after some more seconds of varied traffic so the lines have a shape.
    if (process.env.UPDATE_README_SCREENSHOT === '1') {
      for (let i = 0; i < 24; i++) {
        for (let j = 0; j < 1 + (i % 5); j++) await h.json(api.trigger(ch, 'server-tick', { i, j }));
        for (let j = 0; j < i % 3; j++) chA.trigger('client-tick', { i, j });
        if (i % 6 === 0) await refused.trigger(ch, 'nope', {}).catch(() => {});
        await new Promise((r) => setTimeout(r, 400)); // spreads the traffic for the picture only
        // Taken while the traffic still runs, so the legends show current rates.
        if (i === 20) {
          await screenshot(page, 'dashboard-readme.png');
          fs.copyFileSync(path.join(ARTIFACTS, 'dashboard-readme.png'), README_SCREENSHOT);
        }
      }
    }
    a.disconnect();
    b.disconnect();
  } catch (e) {
    await screenshot(page, 'dashboard-charts-failed.png').catch(() => {});
    throw e;
  }
});

test('dashboard cluster panel: two nodes on Redis, one killed shows as gone within the node timeout', async () => {
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const nodeTimeoutMs = 1500;
  const options = {
    topLevelToml: 'adapter = "redis"',
    extraToml: ['[redis]', `url = ${tomlString(redis.url)}`, 'heartbeat_ms = 200', `node_timeout_ms = ${nodeTimeoutMs}`].join('\n'),
  };
  const a = await startNode(options);
  cleanups.push(() => h.teardown(a));
  const b = await startNode(options);
  cleanups.push(() => b.stop());
  const { page, errors } = await openDashboard(a);
  try {
    // Each node's id, from its own dashboard.
    const idA = (await getJson(`${a.dashUrl}/api/cluster`, AUTH)).node;
    const idB = (await getJson(`${b.dashUrl}/api/cluster`, AUTH)).node;
    assert.notEqual(idA, idB);

    // One client on each node.
    const ca = h.client(a, { name: 'on a' });
    const cb = h.client(b, { name: 'on b' });
    await Promise.all([ca, cb].map((x) => h.withTimeout(x.connected(), h.WAIT, 'pusher-js to connect')));

    // Both listed, alive, with their address, one connection each and Redis up.
    const row = (id) => `#nodes tr[data-node="${id}"]`;
    await page.waitForFunction(
      ([x, y]) =>
        [x, y].every((id) => {
          const r = document.querySelector(`#nodes tr[data-node="${id}"]`);
          return r && r.dataset.alive === 'true' && r.cells[3].textContent === '1' && r.cells[1].textContent !== '?';
        }),
      [idA, idB],
      { timeout: h.WAIT },
    );
    const cells = (id) => page.$eval(row(id), (r) => [...r.cells].map((td) => td.textContent));
    const [rowA, rowB] = [await cells(idA), await cells(idB)];
    assert.deepEqual(
      [rowA[0], rowA[1], rowA[3], rowA[4], rowA[5], rowA[6]],
      [String(idA), `${HOST}:${a.port}`, '1', 'up', '0', '0'],
    );
    assert.deepEqual(
      [rowB[0], rowB[1], rowB[3], rowB[4], rowB[5], rowB[6]],
      [String(idB), `${HOST}:${b.port}`, '1', 'up', '0', '0'],
    );
    assert.match(rowA[2], /ago$/);
    assert.equal(await page.$eval('#nodes tr', (r) => r.dataset.node), String(idA), 'this node first');

    // The cluster charts sum both nodes: two connections at the latest sample both shared.
    await h.eventually(async () => {
      const c = await getJson(`${a.dashUrl}/api/cluster`, AUTH);
      const last = c.cluster[c.cluster.length - 1];
      const viewB = c.nodes.find((n) => n.node === idB);
      return last && last.total.connections === 2 && viewB.points.some((p) => p.t === last.t);
    }, 'a cluster sample with both connections');
    await page.waitForFunction(
      () => {
        const l = document.querySelector('#charts polyline[data-key="total.connections"]');
        const v = l && JSON.parse(l.dataset.values);
        return v && v.length && v[v.length - 1][1] === 2;
      },
      null,
      { timeout: h.WAIT },
    );
    await screenshot(page, 'dashboard-cluster.png');

    // Node B crashes: within the node timeout (plus a heartbeat and the page's refresh) it is
    // shown as gone (by its heartbeat age, or as reaped once the survivor removed it).
    await b.kill();
    await page.waitForFunction(
      (id) => {
        const r = document.querySelector(`#nodes tr[data-node="${id}"]`);
        return r && r.dataset.alive === 'false' && r.classList.contains('gone') && /^gone/.test(r.cells[2].textContent);
      },
      idB,
      { timeout: nodeTimeoutMs + h.WAIT },
    );
    const c = await getJson(`${a.dashUrl}/api/cluster`, AUTH);
    const gone = c.nodes.find((n) => n.node === idB);
    assert.ok(!gone || (!gone.alive && gone.heartbeat_age_ms > nodeTimeoutMs), JSON.stringify(gone));
    assert.deepEqual(
      c.nodes.filter((n) => n.alive).map((n) => n.node),
      [idA],
    );
    assert.equal(await page.$eval(row(idA), (r) => r.dataset.alive), 'true');
    assert.deepEqual(errors, []);
    await screenshot(page, 'dashboard-cluster-gone.png');
    ca.disconnect();
    cb.disconnect();
  } catch (e) {
    await screenshot(page, 'dashboard-cluster-failed.png').catch(() => {});
    throw e;
  }
});
