'use strict';
// The browser build of pusher-js in headless Chromium (playwright-core, Debian's /usr/bin/chromium):
// public, private and presence flows, with a real auth endpoint that signs with the Node SDK.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { launchChromium, closeChromium } = require('../lib/browser');
const { startServer, COMPAT_DIR, HOST } = require('../lib/harness');
const h = require('../lib/clients');

const ARTIFACTS = path.join(COMPAT_DIR, 'artifacts');
const PUSHER_JS = path.join(COMPAT_DIR, 'node_modules', 'pusher-js', 'dist', 'web', 'pusher.min.js');

let server;
let api;
let web; // the app's web server: page, pusher.min.js, auth endpoint
let webUrl;
let context;
let launched;
const authRequests = [];

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>herald compat</title>
<script src="/pusher.min.js"></script>
<script>
  window.received = [];
  window.subErrors = [];
  window.connErrors = [];
  window.states = [];
  window.start = function (cfg) {
    window.pusher = new Pusher(cfg.key, {
      wsHost: cfg.host,
      wsPort: cfg.port,
      forceTLS: false,
      enabledTransports: ['ws'],
      cluster: '',
      channelAuthorization: { endpoint: '/auth', transport: 'ajax', params: cfg.user || {} },
    });
    pusher.connection.bind('state_change', function (s) { states.push(s.current); });
    pusher.connection.bind('error', function (e) { connErrors.push(e); });
    return new Promise(function (resolve) {
      pusher.connection.bind('connected', function () { resolve(pusher.connection.socket_id); });
    });
  };
  window.sub = function (name, events) {
    var ch = pusher.subscribe(name);
    events.forEach(function (ev) {
      ch.bind(ev, function (data, meta) { received.push({ channel: name, event: ev, data: data, meta: meta || null }); });
    });
    return new Promise(function (resolve) {
      ch.bind('pusher:subscription_succeeded', function (members) {
        if (!members || members.count === undefined) return resolve({ ok: true });
        var all = {};
        members.each(function (m) { all[m.id] = m.info; });
        resolve({ ok: true, count: members.count, me: members.me, members: all });
      });
      ch.bind('pusher:subscription_error', function (e) {
        subErrors.push({ channel: name, error: e });
        resolve({ ok: false, error: e });
      });
    });
  };
</script></head><body><h1>herald compat page</h1></body></html>`;

function startWeb() {
  const signer = h.sdk(server);
  const srv = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(PAGE);
    }
    if (req.method === 'GET' && req.url === '/pusher.min.js') {
      res.writeHead(200, { 'content-type': 'application/javascript' });
      return res.end(fs.readFileSync(PUSHER_JS));
    }
    if (req.method === 'POST' && req.url === '/auth') {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const form = Object.fromEntries(new URLSearchParams(body));
        authRequests.push({ contentType: req.headers['content-type'], form });
        const { socket_id: socketId, channel_name: channel, user_id: userId, user_name: userName } = form;
        if (channel.includes('forbidden')) {
          res.writeHead(403, { 'content-type': 'application/json' });
          return res.end(JSON.stringify({ message: 'Forbidden' }));
        }
        const presence = channel.startsWith('presence-') ? { user_id: userId, user_info: { name: userName } } : undefined;
        const auth = signer.authorizeChannel(socketId, channel, presence);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(auth));
      });
      return undefined;
    }
    res.writeHead(404);
    return res.end();
  });
  return new Promise((resolve, reject) => {
    srv.on('error', reject);
    srv.listen(0, HOST, () => resolve(srv));
  });
}

before(async () => {
  server = await startServer();
  api = h.sdk(server);
  web = await startWeb();
  webUrl = `http://${HOST}:${web.address().port}`;
  launched = await launchChromium();
  context = launched.context;
});

after(async () => {
  await closeChromium(launched, h.withTimeout);
  if (web) {
    web.closeAllConnections();
    await h.withTimeout(new Promise((r) => web.close(r)), h.WAIT, 'the web server to close').catch(() => {});
  }
  await h.teardown(server);
});

/** Opens the page and connects pusher-js in it; returns {page, socketId}. */
async function openPage(user) {
  const page = await h.withTimeout(context.newPage(), h.WAIT, 'a new page');
  page.setDefaultTimeout(h.WAIT);
  await page.goto(`${webUrl}/`);
  const socketId = await h.withTimeout(
    page.evaluate((cfg) => window.start(cfg), { key: server.apps.main.key, host: server.host, port: server.port, user }),
    h.WAIT,
    'pusher-js in the page to connect',
  );
  assert.match(socketId, h.SOCKET_ID);
  return { page, socketId };
}

const sub = (page, name, events) =>
  h.withTimeout(page.evaluate(([n, e]) => window.sub(n, e), [name, events]), h.WAIT, `page subscription to ${name}`);

/** Waits inside the page until `count` events named `event` on `channel` were received. */
async function receivedIn(page, channel, event, count = 1) {
  await page.waitForFunction(
    ([c, e, n]) => window.received.filter((r) => r.channel === c && r.event === e).length >= n,
    [channel, event, count],
    { timeout: h.WAIT },
  );
  return page.evaluate(([c, e]) => window.received.filter((r) => r.channel === c && r.event === e), [channel, event]);
}

const closePage = (page) => h.withTimeout(page.close(), h.WAIT, 'the page to close');

/** Runs fn; on failure saves a screenshot of each page into compat/artifacts/. */
async function withArtifacts(name, pages, fn) {
  try {
    return await fn();
  } catch (e) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    for (const [i, p] of pages.entries()) {
      await p
        .screenshot({ path: path.join(ARTIFACTS, `${name}-${i}.png`), timeout: h.WAIT })
        .catch(() => {});
    }
    throw e;
  }
}

test('browser: public channel receives Node SDK events with exact data', async () => {
  const ch = h.uid('browser-public-');
  const { page } = await openPage();
  await withArtifacts('public', [page], async () => {
    assert.deepEqual(await sub(page, ch, ['greeting']), { ok: true });
    await h.json(api.trigger(ch, 'greeting', { hello: 'browser', n: 1, list: ['a', 'é'] }));
    await h.json(api.trigger(ch, 'greeting', 'plain string'));
    const got = await receivedIn(page, ch, 'greeting', 2);
    assert.deepEqual(
      got.map((r) => r.data),
      [{ hello: 'browser', n: 1, list: ['a', 'é'] }, 'plain string'],
    );
    assert.deepEqual(await page.evaluate(() => window.states), ['connected']);
    assert.deepEqual(await page.evaluate(() => window.connErrors), []);
  });
  await closePage(page);
});

test('browser: private channel authorized by the app auth endpoint; a 403 from it is a subscription_error', async () => {
  const ch = h.uid('private-browser-');
  const { page, socketId } = await openPage({ user_id: 'u1', user_name: 'Ursula' });
  await withArtifacts('private', [page], async () => {
    const before = authRequests.length;
    assert.deepEqual(await sub(page, ch, ['secret']), { ok: true });
    const req = authRequests.slice(before).find((r) => r.form.channel_name === ch);
    assert.equal(req.contentType, 'application/x-www-form-urlencoded');
    assert.equal(req.form.socket_id, socketId);
    await h.json(api.trigger(ch, 'secret', { code: 4711 }));
    const got = await receivedIn(page, ch, 'secret');
    assert.deepEqual(got.map((r) => r.data), [{ code: 4711 }]);

    const forbidden = h.uid('private-forbidden-');
    const res = await sub(page, forbidden, ['secret']);
    assert.equal(res.ok, false);
    assert.equal(res.error.type, 'AuthError');
    assert.equal(res.error.status, 403);
    assert.match(res.error.error, /received status: 403 from \/auth/);
    await h.json(api.trigger(forbidden, 'secret', { leaked: true }));
    await h.json(api.trigger(ch, 'secret', { marker: true })); // a marker after it, on the good channel
    const all = await receivedIn(page, ch, 'secret', 2);
    assert.deepEqual(all.map((r) => r.data), [{ code: 4711 }, { marker: true }]);
    assert.deepEqual(await page.evaluate((c) => window.received.filter((r) => r.channel === c), forbidden), []);
  });
  await closePage(page);
});

test('browser: presence members, member_added, client events with user_id, member_removed', async () => {
  const ch = h.uid('presence-browser-');
  const ann = await openPage({ user_id: 'ann', user_name: 'Ann' });
  const bob = await openPage({ user_id: 'bob', user_name: 'Bob' });
  await withArtifacts('presence', [ann.page, bob.page], async () => {
    const events = ['pusher:member_added', 'pusher:member_removed', 'client-wave'];
    const a = await sub(ann.page, ch, events);
    assert.deepEqual(a, { ok: true, count: 1, me: { id: 'ann', info: { name: 'Ann' } }, members: { ann: { name: 'Ann' } } });
    const b = await sub(bob.page, ch, events);
    assert.deepEqual(b, {
      ok: true,
      count: 2,
      me: { id: 'bob', info: { name: 'Bob' } },
      members: { ann: { name: 'Ann' }, bob: { name: 'Bob' } },
    });
    const added = await receivedIn(ann.page, ch, 'pusher:member_added');
    assert.deepEqual(added.map((r) => r.data), [{ id: 'bob', info: { name: 'Bob' } }]);

    await h.withTimeout(
      bob.page.evaluate((c) => window.pusher.channel(c).trigger('client-wave', { from: 'bob' }), ch),
      h.WAIT,
      'client event from bob',
    );
    const waves = await receivedIn(ann.page, ch, 'client-wave');
    assert.deepEqual(waves.map((r) => [r.data, r.meta]), [[{ from: 'bob' }, { user_id: 'bob' }]]);

    const users = await h.json(api.get({ path: `/channels/${ch}/users` }));
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['ann', 'bob']);

    await closePage(bob.page); // closing the tab drops the socket
    const removed = await receivedIn(ann.page, ch, 'pusher:member_removed');
    assert.deepEqual(removed.map((r) => r.data), [{ id: 'bob', info: { name: 'Bob' } }]);
    assert.equal(await ann.page.evaluate((c) => window.pusher.channel(c).members.count, ch), 1);
    assert.deepEqual(
      (await ann.page.evaluate(() => window.received)).filter((r) => r.event === 'client-wave').length,
      1,
    );
  });
  await closePage(ann.page);
});
