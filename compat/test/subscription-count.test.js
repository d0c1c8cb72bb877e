'use strict';
// pusher:subscription_count through pusher-js (app with enable_subscription_count = true): every
// join and leave on public and private channels, never on presence channels, never when the app
// does not enable it.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { appsWith, startServer } = require('../lib/harness');
const h = require('../lib/clients');

let server;
before(async () => {
  // main: subscription counts on; quiet: off (the default)
  server = await startServer({ apps: appsWith({ main: 'enable_subscription_count = true' }) });
});
after(() => h.teardown(server));

/** Subscribes `c` to `ch`, recording pusher:subscription_count from the start. */
async function subscribeCounting(c, ch) {
  const counts = new h.Recorder(`subscription_count of ${c.pusher.key} on ${ch}`);
  const channel = await c.subscribe(ch, { 'pusher:subscription_count': (d) => counts.push(d) });
  return { channel, counts };
}

function countFrames(c, ch) {
  return c.frames.items.filter((f) => f.event === 'pusher_internal:subscription_count' && (!ch || f.channel === ch));
}

test('public channel: every subscriber gets the count as a second client joins and leaves', async () => {
  const ch = h.uid('room-');
  const a = h.client(server, { name: 'a' });
  const A = await subscribeCounting(a, ch);
  assert.deepEqual(await A.counts.next('count 1'), { subscription_count: 1 });
  assert.equal(A.channel.subscriptionCount, 1);

  const b = h.client(server, { name: 'b' });
  const B = await subscribeCounting(b, ch);
  assert.deepEqual(await B.counts.next('count 2 for b'), { subscription_count: 2 });
  assert.deepEqual(await A.counts.next('count 2 for a'), { subscription_count: 2 });
  assert.equal(A.channel.subscriptionCount, 2);

  // b unsubscribes: a is told, b is not
  b.pusher.unsubscribe(ch);
  assert.deepEqual(await A.counts.next('count 1 after unsubscribe'), { subscription_count: 1 });
  await b.barrier();
  assert.deepEqual(B.counts.items, [{ subscription_count: 2 }]);

  // c joins, then its connection goes
  const c = h.client(server, { name: 'c' });
  const C = await subscribeCounting(c, ch);
  assert.deepEqual(await C.counts.next('count 2 for c'), { subscription_count: 2 });
  assert.deepEqual(await A.counts.next('count 2 again'), { subscription_count: 2 });
  c.disconnect();
  assert.deepEqual(await A.counts.next('count 1 after disconnect'), { subscription_count: 1 });

  await a.barrier();
  assert.deepEqual(
    A.counts.items.map((d) => d.subscription_count),
    [1, 2, 1, 2, 1],
    'exactly one update per change',
  );
  assert.deepEqual(countFrames(a, ch)[0], {
    event: 'pusher_internal:subscription_count',
    channel: ch,
    data: { subscription_count: 1 },
  });
});

test('private channel: counts too', async () => {
  const ch = h.uid('private-desk-');
  const a = h.client(server, { name: 'a' });
  const A = await subscribeCounting(a, ch);
  assert.deepEqual(await A.counts.next('count 1'), { subscription_count: 1 });
  const b = h.client(server, { name: 'b' });
  const B = await subscribeCounting(b, ch);
  assert.deepEqual(await B.counts.next('count 2'), { subscription_count: 2 });
  assert.deepEqual(await A.counts.next('count 2'), { subscription_count: 2 });
});

test('presence channel: never a subscription count', async () => {
  const ch = h.uid('presence-floor-');
  const ann = h.client(server, { name: 'ann', user: { user_id: 'ann', user_info: { name: 'Ann' } } });
  const bob = h.client(server, { name: 'bob', user: { user_id: 'bob', user_info: { name: 'Bob' } } });
  const A = await subscribeCounting(ann, ch);
  const added = ann.record(ch, 'pusher:member_added');
  const B = await subscribeCounting(bob, ch);
  assert.deepEqual((await added.next('member_added bob')).data, { id: 'bob', info: { name: 'Bob' } });
  const removed = ann.record(ch, 'pusher:member_removed');
  bob.pusher.unsubscribe(ch);
  await removed.next('member_removed bob');
  // a count for bob's leave would be published while herald handles the unsubscribe, with
  // member_removed; so after member_removed, a barrier on each client covers it
  await ann.barrier();
  await bob.barrier();
  assert.deepEqual(A.counts.items, []);
  assert.deepEqual(B.counts.items, []);
  assert.deepEqual(countFrames(ann), []);
  assert.deepEqual(countFrames(bob), []);
});

test('an app without enable_subscription_count gets none', async () => {
  const ch = h.uid('room-quiet-');
  const a = h.client(server, { name: 'a', app: server.apps.quiet });
  const b = h.client(server, { name: 'b', app: server.apps.quiet });
  const A = await subscribeCounting(a, ch);
  await subscribeCounting(b, ch);
  await b.barrier();
  await a.barrier();
  assert.deepEqual(A.counts.items, []);
  assert.deepEqual(countFrames(a), []);
  assert.deepEqual(countFrames(b), []);
});
