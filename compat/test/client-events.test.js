'use strict';
// Client events (channel.trigger('client-…')) between pusher-js clients.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/harness');
const h = require('../lib/clients');

let server;
before(async () => {
  server = await startServer();
});
after(() => h.teardown(server));

test('private channel: delivered to every other subscriber, not echoed to the sender', async () => {
  const ch = h.uid('private-chat-');
  const [a, b, c] = ['a', 'b', 'c'].map((name) => h.client(server, { name }));
  const chA = await a.subscribe(ch);
  await b.subscribe(ch);
  await c.subscribe(ch);
  const recB = b.record(ch, 'client-typing');
  const recC = c.record(ch, 'client-typing');
  const recA = a.record(ch, 'client-typing');

  assert.equal(chA.trigger('client-typing', { typing: true, who: 'a' }), true);
  assert.deepEqual(await recB.next(), { data: { typing: true, who: 'a' }, metadata: {} });
  assert.deepEqual(await recC.next(), { data: { typing: true, who: 'a' }, metadata: {} });
  const wire = b.framesFor(ch, 'client-typing')[0];
  assert.equal('user_id' in wire, false, 'no user_id on private channels');

  await a.barrier(); // the server handled the client event before this ping
  assert.deepEqual(recA.items, []);
  assert.deepEqual(a.framesFor(ch, 'client-typing'), [], 'not echoed to the sender');
  assert.deepEqual(a.errors.items, []);
});

test('public channel: refused with pusher:error and not relayed', async () => {
  const ch = h.uid('public-chat-');
  const a = h.client(server, { name: 'a' });
  const b = h.client(server, { name: 'b' });
  const chA = await a.subscribe(ch);
  await b.subscribe(ch);

  chA.trigger('client-typing', { typing: true });
  const err = await a.errors.next('pusher:error for the client event');
  assert.deepEqual(err, {
    type: 'PusherError',
    data: { code: null, message: `Client events are only allowed on private and presence channels, not ${ch}` },
  });
  // marker: a REST event on the same channel arrives at b, with nothing before it
  await h.json(h.sdk(server).trigger(ch, 'marker', 'm'));
  await b.frames.find((f) => f.event === 'marker', 'the marker');
  assert.deepEqual(b.framesFor(ch, 'client-typing'), []);
  assert.equal(a.pusher.connection.state, 'connected');
});

test('app with client events disabled: refused with pusher:error and not relayed', async () => {
  const ch = h.uid('private-quiet-');
  const a = h.client(server, { name: 'a', app: server.apps.quiet });
  const b = h.client(server, { name: 'b', app: server.apps.quiet });
  const chA = await a.subscribe(ch);
  await b.subscribe(ch);

  chA.trigger('client-typing', { typing: true });
  const err = await a.errors.next('pusher:error for the client event');
  assert.deepEqual(err, {
    type: 'PusherError',
    data: { code: null, message: 'To send client events, you must enable this feature in the Settings' },
  });
  await h.json(h.sdk(server, server.apps.quiet).trigger(ch, 'marker', 'm'));
  await b.frames.find((f) => f.event === 'marker', 'the marker');
  assert.deepEqual(b.framesFor(ch, 'client-typing'), []);
});

test('presence channel: the relayed event carries the sender user_id; the same user elsewhere gets it', async () => {
  const ch = h.uid('presence-chat-');
  const ann = h.client(server, { name: 'ann', user: { user_id: 'ann', user_info: { name: 'Ann' } } });
  const ann2 = h.client(server, { name: 'ann2', user: { user_id: 'ann', user_info: { name: 'Ann' } } });
  const bob = h.client(server, { name: 'bob', user: { user_id: 'bob' } });
  const chAnn = await ann.subscribe(ch);
  await ann2.subscribe(ch);
  await bob.subscribe(ch);
  const recBob = bob.record(ch, 'client-wave');
  const recAnn2 = ann2.record(ch, 'client-wave');

  chAnn.trigger('client-wave', { hand: 'left' });
  assert.deepEqual(await recBob.next(), { data: { hand: 'left' }, metadata: { user_id: 'ann' } });
  assert.deepEqual(await recAnn2.next(), { data: { hand: 'left' }, metadata: { user_id: 'ann' } });
  const wire = bob.framesFor(ch, 'client-wave')[0];
  assert.deepEqual(wire, { event: 'client-wave', channel: ch, data: { hand: 'left' }, user_id: 'ann' });
  await ann.barrier();
  assert.deepEqual(ann.framesFor(ch, 'client-wave'), []);

  // and the other way round
  const recAnn = ann.record(ch, 'client-wave');
  bob.pusher.channel(ch).trigger('client-wave', 'hi');
  assert.deepEqual(await recAnn.next(), { data: 'hi', metadata: { user_id: 'bob' } });
});
