'use strict';
// An app that exists only in the database ([app_store] on the real PostgreSQL at
// 127.0.0.1:5432; tests/db-servers starts it): created with `herald app-store init` and
// `herald apps add` in a database of this test's own, then used by pusher-js (connect, private
// channel auth signed by the Node SDK, client events) and triggered by the Node and Python SDKs.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startServer, resolveBinary } = require('../lib/harness');
const h = require('../lib/clients');

const DB = `herald_compat_${process.pid}_${Date.now()}`;

function psql(sql) {
  const r = spawnSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-v', 'ON_ERROR_STOP=1', '-Atc', sql], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (r.status !== 0) {
    throw new Error(
      `PostgreSQL on 127.0.0.1:5432 (user postgres, trust) is needed; run tests/db-servers: ${r.stderr || r.error}`,
    );
  }
  return r.stdout;
}

function herald(args) {
  const r = spawnSync(resolveBinary(), args, { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, `herald ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

let server;
let dir;
let app; // { id, key, secret }: only in the database
let dbCreated = false;

before(async () => {
  psql(`CREATE DATABASE ${DB}`);
  dbCreated = true;
  const storeToml = [
    '[app_store]',
    'driver = "postgres"',
    `url = "postgres://postgres@127.0.0.1:5432/${DB}"`,
    'cache_ttl_seconds = 1',
    'negative_ttl_seconds = 1',
  ].join('\n');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-compat-store-'));
  const configFile = path.join(dir, 'store.toml');
  fs.writeFileSync(configFile, storeToml + '\n');
  herald(['app-store', 'init', '--config', configFile]);
  const out = herald(['apps', 'add', '--config', configFile, '--id', '2001', 'enable_client_messages=1']);
  const field = (name) => {
    const m = out.match(new RegExp(`^\\s*${name}\\s*=\\s*(\\S+)\\s*$`, 'm'));
    assert.ok(m, `${name} in ${out}`);
    return m[1];
  };
  app = { id: field('id'), key: field('key'), secret: field('secret'), enabled: true, clientEvents: true };
  assert.equal(app.id, '2001');
  server = await startServer({ extraToml: storeToml });
});

after(async () => {
  if (server) await h.teardown(server);
  if (dbCreated) psql(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('pusher-js connects with a database-only key and gets Node and Python SDK triggers on a private channel', async () => {
  const ch = h.uid('private-db-');
  const c = h.client(server, { name: 'db-app', app });
  const sid = await c.connected();
  assert.match(sid, /^\d+\.\d+$/);
  const channel = await c.subscribe(ch);
  assert.equal(channel.subscribed, true);
  const rec = c.record(ch, 'from-db-app');
  const api = h.sdk(server, app);
  assert.deepEqual(await h.json(api.trigger(ch, 'from-db-app', { via: 'node' })), {});
  assert.deepEqual((await rec.next()).data, { via: 'node' });
  await h.pythonOk(server, [{ op: 'trigger', args: [ch, 'from-db-app', { via: 'python' }] }], { app });
  assert.deepEqual((await rec.next()).data, { via: 'python' });
  const info = await h.json(api.get({ path: `/channels/${ch}`, params: { info: 'subscription_count' } }));
  assert.deepEqual(info, { occupied: true, subscription_count: 1 });
  const [pyInfo] = await h.pythonOk(server, [{ op: 'channel_info', args: [ch, ['subscription_count']] }], { app });
  assert.deepEqual(pyInfo, { occupied: true, subscription_count: 1 });
  assert.deepEqual(c.errors.items, []);
});

test('client events between two pusher-js clients of the database app', async () => {
  const ch = h.uid('private-db-chat-');
  const a = h.client(server, { name: 'a', app });
  const b = h.client(server, { name: 'b', app });
  await a.subscribe(ch);
  await b.subscribe(ch);
  const rec = b.record(ch, 'client-hello');
  await a.barrier();
  a.pusher.channel(ch).trigger('client-hello', { from: 'a' });
  assert.deepEqual((await rec.next()).data, { from: 'a' });
});

test('SDK requests signed with a wrong secret for the database app are refused', async () => {
  const bad = h.sdk(server, app, { secret: 'not-the-secret' });
  const res = await bad.trigger('public-x', 'e', {}).then(
    () => null,
    (e) => e,
  );
  assert.ok(res, 'the trigger is refused');
  assert.equal(res.status, 401);
});
