'use strict';
// Private channels: pusher-js channelAuthorization.customHandler signing with the Node SDK's
// authorizeChannel; bad signatures are refused with pusher:error and deliver nothing.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/harness');
const h = require('../lib/clients');

let server;
let api;
before(async () => {
  server = await startServer();
  api = h.sdk(server);
});
after(() => h.teardown(server));

test('private subscribe signed by authorizeChannel succeeds and receives Node and Python triggers', async () => {
  const ch = h.uid('private-orders-');
  const a = h.client(server, { name: 'a' });
  const sid = await a.connected();
  const channel = await a.subscribe(ch);
  assert.equal(channel.subscribed, true);
  assert.deepEqual(a.authLog.items, [{ socketId: sid, channelName: ch }]);
  const sub = a.frames.items.find((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === ch);
  assert.deepEqual(sub.data, {}, 'non-presence subscription_succeeded carries "{}"');

  const rec = a.record(ch, 'order-paid');
  assert.deepEqual(await h.json(api.trigger(ch, 'order-paid', { id: 17, total: '12.50' })), {});
  assert.deepEqual((await rec.next()).data, { id: 17, total: '12.50' });
  await h.pythonOk(server, [{ op: 'trigger', args: [ch, 'order-paid', { id: 18, total: '3.00' }] }]);
  assert.deepEqual((await rec.next()).data, { id: 18, total: '3.00' });
  assert.deepEqual(a.errors.items, []);
});

/**
 * Subscribes `c` to `ch` and expects the server to refuse: pusher:error with code null and a
 * message starting with `prefix`, surfaced on the connection and on the channel. Then shows that
 * nothing published to the channel reaches the client.
 */
async function expectRefused(c, ch, prefix) {
  await c.connected();
  const chErrors = c.record(ch, 'pusher:error');
  const succeeded = c.record(ch, 'pusher:subscription_succeeded');
  const connErr = await c.errors.next(`connection error for ${ch}`);
  assert.equal(connErr.type, 'PusherError');
  assert.equal(connErr.data.code, null);
  assert.ok(connErr.data.message.startsWith(prefix), `message ${JSON.stringify(connErr.data.message)} starts with ${prefix}`);
  const onChannel = await chErrors.next(`pusher:error on ${ch}`);
  assert.deepEqual(onChannel.data, connErr.data, 'the same error is emitted on the channel');
  const wire = c.frames.items.find((f) => f.event === 'pusher:error');
  assert.equal(wire.channel, ch, 'herald names the channel in the pusher:error frame');
  assert.equal(c.pusher.channel(ch).subscribed, false);

  const info = await h.json(api.get({ path: `/channels/${ch}`, params: { info: 'subscription_count' } }));
  assert.deepEqual(info, { occupied: false, subscription_count: 0 });
  assert.deepEqual(await h.json(api.trigger(ch, 'secret-stuff', { leaked: true })), {});
  await c.barrier();
  assert.deepEqual(c.framesFor(ch).filter((f) => f.event !== 'pusher:error'), [], 'nothing delivered');
  assert.deepEqual(succeeded.items, []);
  assert.equal(c.pusher.connection.state, 'connected', 'a refused subscription keeps the connection');
  return connErr.data.message;
}

test('auth signed with a wrong secret is refused: pusher:error "Invalid signature", no delivery', async () => {
  const ch = h.uid('private-wrong-secret-');
  const c = h.client(server, { name: 'wrong-secret', signer: h.sdk(server, server.apps.main, { secret: 'not-the-secret' }) });
  c.pusher.subscribe(ch);
  const message = await expectRefused(c, ch, 'Invalid signature');
  assert.ok(
    message.startsWith(`Invalid signature: Expected HMAC SHA256 hex digest of ${c.socketId}:${ch}, but got `),
    message,
  );
});

test('auth signed for another socket_id is refused: pusher:error "Invalid signature", no delivery', async () => {
  const ch = h.uid('private-wrong-socket-');
  const c = h.client(server, { name: 'wrong-socket', signSocketId: '1234.5678' });
  const sid = await c.connected();
  assert.notEqual(sid, '1234.5678');
  c.pusher.subscribe(ch);
  const message = await expectRefused(c, ch, 'Invalid signature');
  assert.ok(message.includes(`${sid}:${ch}`), message);
});

test("auth signed with another app's key is refused: pusher:error \"Invalid key ...\"", async () => {
  const ch = h.uid('private-other-app-');
  const c = h.client(server, { name: 'other-app', signer: h.sdk(server, server.apps.quiet) });
  c.pusher.subscribe(ch);
  const message = await expectRefused(c, ch, 'Invalid key in subscription auth data');
  assert.equal(message, "Invalid key in subscription auth data: 'compat-key-1002'");
});

test('after a refusal the same connection subscribes to another private channel normally', async () => {
  // (pusher-js keeps a refused channel "pending" for the life of the connection, so the retry
  // uses another channel name; the point is that herald kept the connection and its state.)
  const refused = h.uid('private-refused-');
  const ok = h.uid('private-ok-');
  const right = h.sdk(server);
  const wrong = h.sdk(server, server.apps.main, { secret: 'nope' });
  const c = h.client(server, {
    name: 'retry',
    customHandler: (p, cb) => cb(null, (p.channelName === ok ? right : wrong).authorizeChannel(p.socketId, p.channelName)),
  });
  c.pusher.subscribe(refused);
  await expectRefused(c, refused, 'Invalid signature');
  await c.subscribe(ok);
  const rec = c.record(ok, 'ok');
  await h.json(api.trigger([ok, refused], 'ok', 'now'));
  assert.equal((await rec.next()).data, 'now');
  await c.barrier();
  assert.deepEqual(c.framesFor(refused, 'ok'), []);
});
