'use strict';
// The standard browser build of pusher-js in headless Chromium with the WebSocket constructor
// removed: a page from another origin (the app's web server) falls back to herald's HTTP
// transports, across CORS, and receives an event.

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

// No WebSocket in this page, as behind a proxy that blocks it: pusher-js's default transports
// find ws unsupported and go to xhr_streaming.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>herald HTTP fallback</title>
<script>delete window.WebSocket; window.WebSocket = undefined; window.MozWebSocket = undefined;</script>
<script src="/pusher.min.js"></script>
<script>
  window.received = [];
  window.start = function (cfg) {
    window.pusher = new Pusher(cfg.key, {
      wsHost: cfg.host,
      wsPort: cfg.port,
      httpHost: cfg.host,
      httpPort: cfg.port,
      forceTLS: false,
      cluster: '',
    });
    return new Promise(function (resolve) {
      pusher.connection.bind('connected', function () {
        resolve({ socketId: pusher.connection.socket_id, transport: pusher.connection.connection.transport.name });
      });
    });
  };
  window.sub = function (name, event) {
    var ch = pusher.subscribe(name);
    ch.bind(event, function (data) { received.push(data); });
    return new Promise(function (resolve) {
      ch.bind('pusher:subscription_succeeded', function () { resolve(true); });
    });
  };
</script></head><body><h1>no WebSocket here</h1></body></html>`;

let server;
let api;
let web;
let launched;

function startWeb() {
  const srv = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(PAGE);
    }
    if (req.method === 'GET' && req.url === '/pusher.min.js') {
      res.writeHead(200, { 'content-type': 'application/javascript' });
      return res.end(fs.readFileSync(PUSHER_JS));
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
  launched = await launchChromium();
});

after(async () => {
  await closeChromium(launched, h.withTimeout);
  if (web) {
    web.closeAllConnections();
    await h.withTimeout(new Promise((r) => web.close(r)), h.WAIT, 'the web server to close').catch(() => {});
  }
  await h.teardown(server);
});

test('browser without WebSocket: pusher-js from another origin connects over xhr_streaming and receives an event', async () => {
  const page = await h.withTimeout(launched.context.newPage(), h.WAIT, 'a new page');
  page.setDefaultTimeout(h.WAIT);
  const herald = [];
  page.on('request', (r) => {
    if (r.url().includes(`:${server.port}/`)) herald.push({ method: r.method(), url: r.url() });
  });
  try {
    // The page's origin (its own port) is not herald's: every fallback request is cross-origin.
    await page.goto(`http://${HOST}:${web.address().port}/`);
    assert.equal(await page.evaluate(() => typeof window.WebSocket), 'undefined');
    const conn = await h.withTimeout(
      page.evaluate((cfg) => window.start(cfg), { key: server.apps.main.key, host: server.host, port: server.port }),
      20_000,
      'pusher-js in the page to connect over HTTP',
    );
    assert.match(conn.socketId, h.SOCKET_ID);
    assert.equal(conn.transport, 'xhr_streaming');
    const ch = h.uid('browser-fallback-');
    assert.equal(await h.withTimeout(page.evaluate((n) => window.sub(n, 'news'), ch), h.WAIT, 'subscription'), true);
    assert.deepEqual(await h.json(api.trigger(ch, 'news', { hello: 'over HTTP', n: 1 })), {});
    await page.waitForFunction(() => window.received.length >= 1, null, { timeout: h.WAIT });
    assert.deepEqual(await page.evaluate(() => window.received), [{ hello: 'over HTTP', n: 1 }]);
    const paths = herald.map((r) => `${r.method} ${new URL(r.url).pathname.replace(/\/\d+\/\w+\//, '/{server}/{session}/')}`);
    assert.ok(paths.includes(`POST /pusher/app/${server.apps.main.key}/{server}/{session}/xhr_streaming`), paths.join('\n'));
    assert.ok(paths.includes(`POST /pusher/app/${server.apps.main.key}/{server}/{session}/xhr_send`), paths.join('\n'));
  } catch (e) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'http-fallback.png'), timeout: h.WAIT }).catch(() => {});
    throw e;
  } finally {
    await h.withTimeout(page.close(), h.WAIT, 'the page to close');
  }
});
