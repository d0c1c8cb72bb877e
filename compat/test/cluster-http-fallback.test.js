'use strict';
// Two herald nodes on one Redis behind nginx configured by deploy/nginx.conf itself (its
// upstream hosts and listen port swapped for the test's): pusher-js HTTP-fallback clients go
// through nginx, whose consistent hash keeps each session on one node, and exchange events
// with WebSocket clients connected to each node directly.
//
// Needs an nginx binary: NGINX_BIN, else /usr/sbin/nginx (Debian: apt-get install nginx); the
// test is skipped without one.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { startRedis, startServer, tomlString, COMPAT_DIR, HOST } = require('../lib/harness');
const h = require('../lib/clients');

const NGINX = process.env.NGINX_BIN || '/usr/sbin/nginx';
const HAVE_NGINX = fs.existsSync(NGINX);

let redis;
let nodeA;
let nodeB;
let nginx;
let nginxDir;
let front; // {host, port} of nginx
let api; // Node SDK through nginx

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function listening(port, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.connect(port, HOST);
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`nginx is not listening on ${port}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/** deploy/nginx.conf with the test's nodes, port and writable paths. */
function nginxConf(dir, port) {
  let conf = fs.readFileSync(path.join(COMPAT_DIR, '..', 'deploy', 'nginx.conf'), 'utf8');
  const swap = (from, to) => {
    assert.ok(conf.includes(from), `deploy/nginx.conf has ${from}`);
    conf = conf.replaceAll(from, to);
  };
  swap('server herald-a:6001;', `server ${HOST}:${nodeA.port};`);
  swap('server herald-b:6001;', `server ${HOST}:${nodeB.port};`);
  swap('listen 80;', `listen ${HOST}:${port};`);
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `  ${t}_temp_path ${path.join(dir, t)};`)
    .join('\n');
  swap('http {', `http {\n  access_log off;\n${temp}`);
  return `pid ${path.join(dir, 'nginx.pid')};\nerror_log ${path.join(dir, 'error.log')} warn;\n${conf}`;
}

before(async () => {
  if (!HAVE_NGINX) return;
  redis = await startRedis();
  const options = {
    topLevelToml: 'adapter = "redis"',
    extraToml: ['[redis]', `url = ${tomlString(redis.url)}`, 'heartbeat_ms = 200', 'node_timeout_ms = 1000'].join('\n'),
  };
  nodeA = await startServer(options);
  nodeB = await startServer(options);
  nginxDir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-compat-nginx-'));
  fs.chmodSync(nginxDir, 0o777);
  const port = await freePort();
  const confFile = path.join(nginxDir, 'nginx.conf');
  fs.writeFileSync(confFile, nginxConf(nginxDir, port));
  nginx = spawn(NGINX, ['-p', nginxDir, '-c', confFile, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  nginx.stdout.on('data', (c) => (out += c));
  nginx.stderr.on('data', (c) => (out += c));
  await listening(port).catch((e) => {
    throw new Error(`${e.message}\n${out}`);
  });
  front = { host: HOST, port };
  api = h.sdk({ ...nodeA, host: HOST, port });
});

after(async () => {
  h.closeAllClients();
  if (nginx) {
    nginx.kill('SIGTERM');
    await h.withTimeout(new Promise((r) => nginx.once('exit', r)), h.WAIT, 'nginx to stop').catch(() => nginx.kill('SIGKILL'));
  }
  if (nginxDir) fs.rmSync(nginxDir, { recursive: true, force: true });
  await h.teardown(nodeA);
  if (nodeB) await nodeB.stop();
  if (redis) await redis.stop();
});

/** A pusher-js client whose HTTP fallback goes through nginx (WebSockets off). */
function behindNginx(transport, name) {
  return h.client(nodeA, {
    name,
    pusherOptions: { httpHost: front.host, httpPort: front.port, enabledTransports: [transport] },
  });
}

test('HTTP-fallback sessions behind nginx stay on one node and exchange events with WebSockets on both nodes', { skip: !HAVE_NGINX && `no nginx at ${NGINX}` }, async () => {
  const ch = h.uid('private-desk-');
  const wa = h.client(nodeA, { name: 'ws on node A' });
  const wb = h.client(nodeB, { name: 'ws on node B' });
  const wac = await wa.subscribe(ch);
  await wb.subscribe(ch);
  const atA = wa.record(ch, 'client-hello');
  const atB = wb.record(ch, 'client-hello');

  // Sessions hash to either node; with several, both are used (and every one must work).
  const xs = [];
  for (let i = 0; i < 6; i++) {
    const x = behindNginx(i % 2 ? 'xhr_polling' : 'xhr_streaming', `http ${i}`);
    await x.connected();
    const xc = await x.subscribe(ch);
    xs.push({ x, xc, got: x.record(ch, 'client-hello'), rest: x.record(ch, 'news') });
  }
  for (const [i, { xc, x }] of xs.entries()) {
    assert.equal(xc.trigger('client-hello', { from: i }), true);
    assert.deepEqual((await atA.next(`client event ${i} on node A`)).data, { from: i });
    assert.deepEqual((await atB.next(`client event ${i} on node B`)).data, { from: i });
    await x.barrier();
  }
  assert.equal(wac.trigger('client-hello', { from: 'ws-a' }), true);
  for (const { got } of xs) {
    const seen = [];
    for (;;) {
      const { data } = await got.next('client events at an HTTP client');
      if (data.from === 'ws-a') break;
      seen.push(data.from);
    }
    assert.ok(seen.every((f) => typeof f === 'number'), JSON.stringify(seen));
  }
  // A trigger through nginx (any node) reaches every session once.
  assert.deepEqual(await h.json(api.trigger(ch, 'news', { n: 1 })), {});
  for (const { rest, x } of xs) {
    assert.deepEqual((await rest.next('news at an HTTP client')).data, { n: 1 });
    await x.barrier();
    assert.equal(rest.items.length, 1);
  }
  const info = await h.json(api.get({ path: `/channels/${ch}`, params: { info: 'subscription_count' } }));
  assert.deepEqual(info, { occupied: true, subscription_count: 8 });
});
