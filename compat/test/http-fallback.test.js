'use strict';
// The HTTP fallback with unchanged pusher-js (Node build): enabledTransports ['xhr_streaming'] and
// ['xhr_polling'] against herald's httpHost/httpPort, next to WebSocket peers; and the default
// transports falling back when the WebSocket port is unreachable.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/harness');
const h = require('../lib/clients');

let server;
let api;
before(async () => {
  // A vanished HTTP session ends after 1 s without a receive request (default 30 s).
  server = await startServer({ serverToml: 'http_session_timeout = 1' });
  api = h.sdk(server);
});
after(() => h.teardown(server));

/** A pusher-js client on one HTTP transport only. */
function httpClient(transport, options = {}) {
  return h.client(server, {
    ...options,
    pusherOptions: {
      httpHost: server.host,
      httpPort: server.port,
      enabledTransports: [transport],
      ...(options.pusherOptions || {}),
    },
  });
}

function transportName(c) {
  const conn = c.pusher.connection.connection;
  return conn && conn.transport && conn.transport.name;
}

for (const transport of ['xhr_streaming', 'xhr_polling']) {
  test(`${transport}: public channel, REST triggers, pusher:ping`, async () => {
    const ch = h.uid(`news-${transport}-`);
    const c = httpClient(transport, { name: transport });
    const sid = await c.connected();
    assert.match(sid, /^\d+\.\d+$/);
    assert.equal(transportName(c), transport);
    await c.subscribe(ch);
    const rec = c.record(ch, 'headline');
    assert.deepEqual(await h.json(api.trigger(ch, 'headline', { n: 1 })), {});
    assert.deepEqual((await rec.next()).data, { n: 1 });
    await c.barrier();
    const info = await h.json(api.get({ path: `/channels/${ch}`, params: { info: 'subscription_count' } }));
    assert.deepEqual(info, { occupied: true, subscription_count: 1 });
    assert.deepEqual(c.errors.items, []);
  });

  test(`${transport}: private channel and client events both ways with a WebSocket peer`, async () => {
    const ch = h.uid(`private-chat-${transport}-`);
    const x = httpClient(transport, { name: `http-${transport}` });
    const w = h.client(server, { name: 'ws' });
    await x.connected();
    await w.connected();
    const xc = await x.subscribe(ch);
    const wc = await w.subscribe(ch);
    const atW = w.record(ch, 'client-typing');
    const atX = x.record(ch, 'client-typing');
    assert.equal(xc.trigger('client-typing', { from: 'http' }), true);
    assert.deepEqual((await atW.next()).data, { from: 'http' });
    assert.equal(wc.trigger('client-typing', { from: 'ws' }), true);
    assert.deepEqual((await atX.next()).data, { from: 'ws' });
    await x.barrier();
    assert.equal(atX.items.length, 1, 'the sender does not get its own client event');
  });

  test(`${transport}: presence members, and a vanished session is removed once`, async () => {
    const ch = h.uid(`presence-room-${transport}-`);
    const w = h.client(server, { name: 'ws', user: { user_id: 'ws-user', user_info: { via: 'ws' } } });
    await w.subscribe(ch);
    const added = w.record(ch, 'pusher:member_added');
    const removed = w.record(ch, 'pusher:member_removed');
    const x = httpClient(transport, { name: 'http', user: { user_id: 'http-user', user_info: { via: 'http' } } });
    const xc = await x.subscribe(ch);
    assert.equal(xc.members.count, 2);
    assert.deepEqual(xc.members.get('ws-user'), { id: 'ws-user', info: { via: 'ws' } });
    assert.deepEqual((await added.next()).data, { id: 'http-user', info: { via: 'http' } });
    // pusher-js closes an HTTP socket without telling the server: herald ends the session
    // after http_session_timeout.
    x.disconnect();
    assert.deepEqual((await removed.next('member_removed', 10_000)).data, { id: 'http-user', info: { via: 'http' } });
    await w.barrier();
    assert.equal(removed.items.length, 1);
    const users = await h.json(api.get({ path: `/channels/${ch}/users` }));
    assert.deepEqual(users, { users: [{ id: 'ws-user' }] });
  });

  test(`${transport}: encrypted channel decrypts`, async () => {
    const ch = h.uid(`private-encrypted-${transport}-`);
    const x = httpClient(transport, {
      name: 'enc',
      customHandler: (p, cb) => cb(null, api.authorizeChannel(p.socketId, p.channelName)),
    });
    await x.subscribe(ch);
    const rec = x.record(ch, 'secret');
    const payload = { note: 'café ☕ over HTTP' };
    assert.deepEqual(await h.json(api.trigger(ch, 'secret', payload)), {});
    assert.deepEqual((await rec.next('decrypted event')).data, payload);
    const wire = x.framesFor(ch, 'secret')[0];
    assert.deepEqual(Object.keys(wire.data).sort(), ['ciphertext', 'nonce']);
  });

  test(`${transport}: sign-in and sendToUser`, async () => {
    const id = h.uid(`user-${transport}-`);
    const x = httpClient(transport, { name: 'user', signinAs: { id, user_info: { name: 'Ann' } } });
    await x.connected();
    await x.signin();
    assert.deepEqual(await h.json(api.sendToUser(id, 'note', { hi: 1 })), {});
    const got = await x.userEvents.find((e) => e.event === 'note', 'sendToUser event');
    assert.deepEqual(got.item.data, { hi: 1 });
  });

  test(`${transport}: cache channel replays the last event`, async () => {
    const ch = h.uid(`cache-status-${transport}-`);
    assert.deepEqual(await h.json(api.trigger(ch, 'status', { up: true })), {});
    const x = httpClient(transport, { name: 'cache' });
    const channel = x.pusher.subscribe(ch);
    const rec = new h.Recorder('cached status');
    channel.bind('status', (d) => rec.push(d));
    assert.deepEqual(await rec.next(), { up: true });
  });

  test(`${transport}: 300 events of 2 KB arrive complete and in order (streams reopen past 256 KiB)`, async () => {
    const ch = h.uid(`bulk-${transport}-`);
    const x = httpClient(transport, { name: 'bulk' });
    await x.subscribe(ch);
    // Count pusher-js's stream reopens (HTTPSocket.reconnect: after 256 KiB, or after every poll).
    const socket = x.transportSockets[0];
    let reopens = 0;
    const reconnect = socket.reconnect.bind(socket);
    socket.reconnect = () => {
      reopens += 1;
      reconnect();
    };
    const rec = x.record(ch, 'chunk');
    const pad = 'x'.repeat(2048);
    for (let i = 0; i < 300; i++) {
      assert.deepEqual(await h.json(api.trigger(ch, 'chunk', { i, pad })), {});
    }
    await rec.find(() => rec.items.length >= 300, '300 events', { timeout: 30_000 });
    assert.deepEqual(
      rec.items.map((r) => r.data.i),
      Array.from({ length: 300 }, (_, i) => i),
    );
    assert.ok(rec.items.every((r) => r.data.pad === pad));
    assert.equal(x.pusher.connection.state, 'connected');
    assert.equal(x.states.items.filter((s) => s.current === 'connected').length, 1, 'one connection throughout');
    assert.ok(reopens >= 2, `${reopens} reopens for ~630 KB`);
  });
}

test('default transports with the WebSocket port unreachable fall back to HTTP and work', async () => {
  // A port nothing listens on: pusher-js tries ws, then wss, then the HTTP transports (5 s in).
  const closedPort = await new Promise((resolve) => {
    const srv = require('node:net').createServer();
    srv.listen(0, server.host, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
  const ch = h.uid('fallback-');
  const c = h.client(server, {
    name: 'fallback',
    pusherOptions: {
      wsPort: closedPort,
      httpHost: server.host,
      httpPort: server.port,
      enabledTransports: undefined,
    },
  });
  await c.states.find((s) => s.current === 'connected', 'connected over HTTP', { timeout: 30_000 });
  assert.ok(['xhr_streaming', 'xhr_polling'].includes(transportName(c)), transportName(c));
  await c.subscribe(ch);
  const rec = c.record(ch, 'e');
  assert.deepEqual(await h.json(api.trigger(ch, 'e', { ok: true })), {});
  assert.deepEqual((await rec.next()).data, { ok: true });
});
