'use strict';
// Laravel Echo 2 (broadcaster 'pusher', pusher-js passed in) against herald.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/harness');
const h = require('../lib/clients');
const E = require('../lib/echo');

let server;
let api;
before(async () => {
  await E.loadEcho();
  server = await startServer();
  api = h.sdk(server);
});
after(async () => {
  E.disconnectAll();
  await h.teardown(server);
});

/** An Echo instance on this file's server, signing with `api` (see lib/echo.js). */
const echo = (name, options = {}) => E.echo(server, name, { signer: api, ...options });
const { subscribed } = E;

test('private(...).listen: namespaced Laravel event name and dotted exact name', async () => {
  const name = h.uid('orders.');
  const e = echo('orders');
  const shipped = new h.Recorder('OrderShipped');
  const dotted = new h.Recorder('.order.shipped');
  const channel = e
    .private(name)
    .listen('OrderShipped', (data) => shipped.push(data))
    .listen('.order.shipped', (data) => dotted.push(data));
  await subscribed(channel, `private-${name}`);

  const ch = `private-${name}`;
  await h.json(api.trigger(ch, 'App\\Events\\OrderShipped', { order: { id: 5, status: 'shipped' } }));
  await h.json(api.trigger(ch, 'order.shipped', { order: { id: 6 } }));
  await h.pythonOk(server, [{ op: 'trigger', args: [ch, 'App\\Events\\OrderShipped', { order: { id: 7 } }] }]);
  assert.deepEqual(await shipped.next(), { order: { id: 5, status: 'shipped' } });
  assert.deepEqual(await dotted.next(), { order: { id: 6 } });
  assert.deepEqual(await shipped.next(), { order: { id: 7 } });
  const names = e.frames.items.filter((f) => f.channel === ch && !f.event.startsWith('pusher')).map((f) => f.event);
  assert.deepEqual(names, ['App\\Events\\OrderShipped', 'order.shipped', 'App\\Events\\OrderShipped']);
});

test('join(...): here, joining, leaving', async () => {
  const room = h.uid('room.');
  const ann = { id: 1, name: 'Ann' };
  const bob = { id: 2, name: 'Bob' };
  const e1 = echo('ann', { user: ann, authStyle: 'authorizer' });
  const here1 = new h.Recorder('here ann');
  const joining1 = new h.Recorder('joining ann');
  const leaving1 = new h.Recorder('leaving ann');
  e1.join(room)
    .here((users) => here1.push(users))
    .joining((u) => joining1.push(u))
    .leaving((u) => leaving1.push(u));
  assert.deepEqual(await here1.next(), [ann]);

  const e2 = echo('bob', { user: bob });
  const here2 = new h.Recorder('here bob');
  e2.join(room).here((users) => here2.push(users));
  const users = await here2.next();
  assert.deepEqual(users.slice().sort((a, b) => a.id - b.id), [ann, bob]);
  assert.deepEqual(await joining1.next(), bob);

  e2.leave(room);
  assert.deepEqual(await leaving1.next(), bob);
  assert.deepEqual(joining1.items, [bob]);
  assert.equal(here1.items.length, 1);
});

test('whisper / listenForWhisper on private and presence channels, not echoed', async () => {
  const chat = h.uid('chat.');
  const a = echo('a', { user: { id: 10, name: 'A' } });
  const b = echo('b', { user: { id: 11, name: 'B' } });
  const heardByB = new h.Recorder('whispers heard by b');
  const heardByA = new h.Recorder('whispers heard by a');
  const privA = a.private(chat).listenForWhisper('typing', (d) => heardByA.push(d));
  const okA = subscribed(privA, 'a private');
  const privB = b.private(chat).listenForWhisper('typing', (d) => heardByB.push(d));
  const okB = subscribed(privB, 'b private');
  await Promise.all([okA, okB]);
  privA.whisper('typing', { name: 'A', typing: true });
  assert.deepEqual(await heardByB.next(), { name: 'A', typing: true });
  await a.barrier();
  assert.deepEqual(heardByA.items, [], 'the whisperer does not hear itself');

  const room = h.uid('whisper-room.');
  const presHeard = new h.Recorder('presence whispers heard by a');
  const presA = a.join(room).listenForWhisper('cursor', (d) => presHeard.push(d));
  const okPresA = subscribed(presA, 'a presence');
  const presB = b.join(room);
  const okPresB = subscribed(presB, 'b presence');
  await Promise.all([okPresA, okPresB]);
  presB.whisper('cursor', { x: 3, y: 4 });
  assert.deepEqual(await presHeard.next(), { x: 3, y: 4 });
  const wire = a.frames.items.find((f) => f.event === 'client-cursor');
  assert.equal(wire.user_id, '11');
});

test('toOthers: the socket passed as socket_id does not receive the broadcast, others do', async () => {
  const name = h.uid('orders.others.');
  const ch = `private-${name}`;
  const sender = echo('sender');
  const other = echo('other');
  const senderGot = new h.Recorder('sender');
  const otherGot = new h.Recorder('other');
  const chS = sender.private(name).listen('.status.changed', (d) => senderGot.push(d));
  const okS = subscribed(chS, 'sender');
  const chO = other.private(name).listen('.status.changed', (d) => otherGot.push(d));
  const okO = subscribed(chO, 'other');
  await Promise.all([okS, okO]);
  const socketId = sender.socketId(); // what Laravel receives in X-Socket-ID
  assert.match(socketId, h.SOCKET_ID);

  await h.json(api.trigger(ch, 'status.changed', { status: 'paid', via: 'node' }, { socket_id: socketId }));
  await h.pythonOk(server, [
    { op: 'trigger', args: [ch, 'status.changed', { status: 'paid', via: 'python' }], kwargs: { socket_id: socketId } },
  ]);
  assert.deepEqual(await otherGot.next(), { status: 'paid', via: 'node' });
  assert.deepEqual(await otherGot.next(), { status: 'paid', via: 'python' });
  await sender.barrier();
  assert.deepEqual(senderGot.items, []);
  assert.deepEqual(sender.frames.items.filter((f) => f.event === 'status.changed'), []);

  // a broadcast without toOthers reaches the sender too
  await h.json(api.trigger(ch, 'status.changed', { status: 'shipped' }));
  assert.deepEqual(await senderGot.next(), { status: 'shipped' });
});
