'use strict';
// Presence channels through pusher-js: members, me, count, member_added/removed per user, and the
// REST users / user_count endpoints through both server SDKs.

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

function membersOf(channel) {
  const all = {};
  channel.members.each((m) => (all[m.id] = m.info));
  return all;
}

test('subscribe gives members, me and count; others get pusher:member_added with user_info', async () => {
  const ch = h.uid('presence-room-');
  const ann = h.client(server, { name: 'ann', user: { user_id: 'ann', user_info: { name: 'Ann', role: 'admin' } } });
  const annCh = await ann.subscribe(ch);
  assert.equal(annCh.members.count, 1);
  assert.deepEqual(annCh.members.me, { id: 'ann', info: { name: 'Ann', role: 'admin' } });
  assert.deepEqual(membersOf(annCh), { ann: { name: 'Ann', role: 'admin' } });
  const added = ann.record(ch, 'pusher:member_added');

  const bob = h.client(server, { name: 'bob', user: { user_id: 'bob', user_info: { name: 'Bob' } } });
  const bobCh = await bob.subscribe(ch);
  assert.equal(bobCh.members.count, 2);
  assert.deepEqual(bobCh.members.me, { id: 'bob', info: { name: 'Bob' } });
  assert.deepEqual(membersOf(bobCh), { ann: { name: 'Ann', role: 'admin' }, bob: { name: 'Bob' } });
  assert.deepEqual(bobCh.members.get('ann'), { id: 'ann', info: { name: 'Ann', role: 'admin' } });

  assert.deepEqual((await added.next('member_added bob')).data, { id: 'bob', info: { name: 'Bob' } });
  assert.equal(annCh.members.count, 2);

  // a numeric user_id comes back as a string
  const num = h.client(server, { name: 'num', user: { user_id: 42, user_info: null } });
  const numCh = await num.subscribe(ch);
  assert.deepEqual((await added.next('member_added 42')).data, { id: '42', info: null });
  assert.equal(numCh.members.count, 3);
  const wire = num.frames.items.find((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === ch);
  assert.deepEqual(wire.data.presence.ids.slice().sort(), ['42', 'ann', 'bob'], 'ids are strings');
  assert.deepEqual(wire.data.presence.hash, { ann: { name: 'Ann', role: 'admin' }, bob: { name: 'Bob' }, 42: null });
  assert.equal(wire.data.presence.count, 3);

  // the joiner is not told about itself
  await bob.barrier();
  await num.barrier();
  assert.deepEqual(bob.framesFor(ch, 'pusher_internal:member_added').map((f) => f.data.user_id), ['42']);
  assert.deepEqual(num.framesFor(ch, 'pusher_internal:member_added'), []);
});

test('pusher:member_removed only when the last socket of a user leaves', async () => {
  const ch = h.uid('presence-sockets-');
  const watcher = h.client(server, { name: 'watcher', user: { user_id: 'w', user_info: { name: 'Watcher' } } });
  const wCh = await watcher.subscribe(ch);
  const added = watcher.record(ch, 'pusher:member_added');
  const removed = watcher.record(ch, 'pusher:member_removed');
  const user = { user_id: 'ursula', user_info: { name: 'Ursula' } };

  const u1 = h.client(server, { name: 'u1', user });
  await u1.subscribe(ch);
  assert.deepEqual((await added.next('member_added ursula')).data, { id: 'ursula', info: { name: 'Ursula' } });

  const u2 = h.client(server, { name: 'u2', user });
  const u2Ch = await u2.subscribe(ch);
  assert.equal(u2Ch.members.count, 2, 'watcher + ursula, not three');
  await u2.barrier(); // u2's subscribe and all its side effects are done
  await watcher.barrier();
  assert.equal(added.items.length, 1, 'no second member_added for the second socket of ursula');

  // first socket leaves (unsubscribe): ursula is still present
  u1.pusher.unsubscribe(ch);
  await u1.barrier();
  await watcher.barrier();
  assert.deepEqual(removed.items, []);
  assert.equal(wCh.members.count, 2);
  const users = await h.json(api.get({ path: `/channels/${ch}/users` }));
  assert.deepEqual(users.users.map((u) => u.id).sort(), ['ursula', 'w']);

  // last socket leaves (disconnect): now member_removed
  u2.disconnect();
  assert.deepEqual((await removed.next('member_removed ursula')).data, { id: 'ursula', info: { name: 'Ursula' } });
  assert.equal(wCh.members.count, 1);
  const wire = watcher.framesFor(ch, 'pusher_internal:member_removed');
  assert.deepEqual(wire.map((f) => f.data), [{ user_id: 'ursula' }]);
  assert.deepEqual(await h.json(api.get({ path: `/channels/${ch}/users` })), { users: [{ id: 'w' }] });
});

test('REST users and user_count through the Node and Python SDKs', async () => {
  const ch = h.uid('presence-rest-');
  const p1a = h.client(server, { name: 'p1a', user: { user_id: 'p1', user_info: { n: 1 } } });
  const p1b = h.client(server, { name: 'p1b', user: { user_id: 'p1', user_info: { n: 1 } } });
  const p2 = h.client(server, { name: 'p2', user: { user_id: 'p2' } });
  for (const c of [p1a, p1b, p2]) await c.subscribe(ch);

  const users = await h.json(api.get({ path: `/channels/${ch}/users` }));
  assert.deepEqual(Object.keys(users), ['users']);
  assert.deepEqual(users.users.sort((a, b) => a.id.localeCompare(b.id)), [{ id: 'p1' }, { id: 'p2' }]);
  assert.deepEqual(await h.json(api.get({ path: `/channels/${ch}`, params: { info: 'user_count' } })), {
    occupied: true,
    user_count: 2,
  });

  const [pyUsers, pyInfo, pyEmpty] = await h.pythonOk(server, [
    { op: 'users_info', args: [ch] },
    { op: 'channel_info', args: [ch, ['user_count']] },
    { op: 'channel_info', args: [h.uid('presence-nobody-'), ['user_count']] },
  ]);
  assert.deepEqual(pyUsers.users.sort((a, b) => a.id.localeCompare(b.id)), [{ id: 'p1' }, { id: 'p2' }]);
  assert.deepEqual(pyInfo, { occupied: true, user_count: 2 });
  assert.deepEqual(pyEmpty, { occupied: false, user_count: 0 });
});
