'use strict';
// Two herald nodes sharing one private redis-server (adapter = "redis"): pusher-js clients and
// Laravel Echo on different nodes see what one node would show them.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startRedis, startServer, tomlString } = require('../lib/harness');
const h = require('../lib/clients');
const E = require('../lib/echo');

let redis;
let nodeA;
let nodeB;
let apiA; // Node SDK pointed at node A's REST API
let apiB; // ... and at node B's
before(async () => {
  await E.loadEcho();
  redis = await startRedis();
  const options = {
    topLevelToml: 'adapter = "redis"',
    extraToml: ['[redis]', `url = ${tomlString(redis.url)}`, 'heartbeat_ms = 200', 'node_timeout_ms = 1000'].join('\n'),
  };
  nodeA = await startServer(options);
  nodeB = await startServer(options);
  apiA = h.sdk(nodeA);
  apiB = h.sdk(nodeB);
});
after(async () => {
  E.disconnectAll();
  await h.teardown(nodeA);
  if (nodeB) await nodeB.stop();
  if (redis) await redis.stop();
});

/** Subscribes `c`, recording `events` (name → Recorder of data) from before the subscription goes out. */
async function subscribeRecording(c, ch, events) {
  const rec = {};
  const binds = {};
  for (const e of events) {
    rec[e] = new h.Recorder(`${e} on ${ch}`);
    binds[e] = (data) => rec[e].push(data);
  }
  await c.subscribe(ch, binds);
  return rec;
}

test('a trigger through node B reaches subscribers on both nodes exactly once; socket_id exclusion crosses nodes', async () => {
  const ch = h.uid('hotel-grand-');
  const events = ['clock-status-updated', 'excluded', 'marker'];
  const a = h.client(nodeA, { name: 'a on node A' });
  const b = h.client(nodeB, { name: 'b on node B' });
  const A = await subscribeRecording(a, ch, events);
  const B = await subscribeRecording(b, ch, events);

  const payload = { staff: 'ann', status: 'in' };
  await h.json(apiB.trigger(ch, 'clock-status-updated', payload));
  assert.deepEqual(await A['clock-status-updated'].next('the update on node A'), payload);
  assert.deepEqual(await B['clock-status-updated'].next('the update on node B'), payload);

  // a's socket lives on node A; node B's REST API still leaves it out
  await h.json(apiB.trigger(ch, 'excluded', { n: 1 }, { socket_id: a.socketId }));
  assert.deepEqual(await B.excluded.next(), { n: 1 });

  // Marker through node B too: node A receives node B's messages in the order B published them,
  // so once the marker is there, any duplicate or leak would be as well.
  await h.json(apiB.trigger(ch, 'marker', { m: 1 }));
  assert.deepEqual(await A.marker.next(), { m: 1 });
  assert.deepEqual(await B.marker.next(), { m: 1 });
  for (const c of [a, b]) {
    assert.deepEqual(
      c.framesFor(ch).map((f) => f.event),
      ['pusher_internal:subscription_succeeded', 'clock-status-updated', ...(c === b ? ['excluded'] : []), 'marker'],
      c === a ? 'node A' : 'node B',
    );
  }
  assert.deepEqual(A.excluded.items, []);

  // the Python SDK on node A reaches node B's subscriber
  await h.pythonOk(nodeA, [{ op: 'trigger', args: [ch, 'clock-status-updated', { staff: 'bob', status: 'out' }] }]);
  assert.deepEqual(await B['clock-status-updated'].next('the Python update on node B'), { staff: 'bob', status: 'out' });
});

test('Laravel Echo presence across nodes: here lists both, joining and leaving on node A for node B\'s user', async () => {
  const room = h.uid('floor.');
  const ch = `presence-${room}`;
  const ann = { id: 1, name: 'Ann' };
  const bob = { id: 2, name: 'Bob' };

  const e1 = E.echo(nodeA, 'ann on node A', { user: ann, signer: apiA });
  const here1 = new h.Recorder('here ann');
  const joining1 = new h.Recorder('joining ann');
  const leaving1 = new h.Recorder('leaving ann');
  e1.join(room)
    .here((users) => here1.push(users))
    .joining((u) => joining1.push(u))
    .leaving((u) => leaving1.push(u));
  assert.deepEqual(await here1.next(), [ann]);

  const e2 = E.echo(nodeB, 'bob on node B', { user: bob, signer: apiB });
  const here2 = new h.Recorder('here bob');
  e2.join(room).here((users) => here2.push(users));
  const users = await here2.next();
  assert.deepEqual(users.slice().sort((x, y) => x.id - y.id), [ann, bob]);
  assert.deepEqual(await joining1.next(), bob);

  // both nodes' REST APIs agree
  for (const api of [apiA, apiB]) {
    const { users: ids } = await h.json(api.get({ path: `/channels/${ch}/users` }));
    assert.deepEqual(ids.map((u) => u.id).sort(), ['1', '2']);
    assert.deepEqual(await h.json(api.get({ path: `/channels/${ch}`, params: { info: 'user_count' } })), {
      occupied: true,
      user_count: 2,
    });
  }

  // bob's client goes away
  e2.disconnect();
  assert.deepEqual(await leaving1.next(), bob);
  await e1.barrier();
  assert.deepEqual(joining1.items, [bob]);
  assert.deepEqual(leaving1.items, [bob]);
  assert.equal(here1.items.length, 1);
  assert.deepEqual(await h.json(apiB.get({ path: `/channels/${ch}/users` })), { users: [{ id: '1' }] });
});

test('sendToUser and terminateUserConnections through node A reach a user signed in on node B', async () => {
  const bobId = h.uid('bob-');
  const bob = h.client(nodeB, { name: 'bob on node B', signinAs: { id: bobId } });
  const other = h.client(nodeB, { name: 'other on node B', signinAs: { id: h.uid('other-') } });
  for (const c of [bob, other]) {
    await c.connected();
    await c.signin();
  }

  await h.json(apiA.sendToUser(bobId, 'notify', { n: 1 }));
  assert.deepEqual(await bob.userEvents.next('notify'), { event: 'notify', data: { n: 1 } });

  assert.deepEqual(await h.json(apiA.terminateUserConnections(bobId)), {});
  await bob.states.find((s) => s.current === 'disconnected', 'bob disconnected');
  assert.deepEqual(
    bob.frames.items.filter((f) => f.event === 'pusher:error').map((f) => f.data.code),
    [4009],
  );
  await other.barrier();
  assert.equal(other.pusher.connection.state, 'connected');
  assert.deepEqual(other.userEvents.items, []);
});

test('presence channels: subscription_count and user_count over both nodes, the same through either (Node and Python)', async () => {
  const pres = h.uid('presence-both-');
  const clients = [
    h.client(nodeA, { name: 'ann on node A', user: { user_id: 'ann' } }),
    h.client(nodeB, { name: 'ann on node B', user: { user_id: 'ann' } }),
    h.client(nodeB, { name: 'bob on node B', user: { user_id: 'bob' } }),
  ];
  for (const c of clients) await c.subscribe(pres);
  const want = { occupied: true, user_count: 2, subscription_count: 3 };
  for (const api of [apiA, apiB]) {
    assert.deepEqual(await h.json(api.get({ path: `/channels/${pres}`, params: { info: 'user_count,subscription_count' } })), want);
    assert.deepEqual(await h.json(api.trigger(pres, 'counted', 'x', { info: 'user_count,subscription_count' })), {
      channels: { [pres]: { user_count: 2, subscription_count: 3 } },
    });
  }
  for (const node of [nodeA, nodeB]) {
    assert.deepEqual(await h.pythonOk(node, [{ op: 'channel_info', args: [pres, ['user_count', 'subscription_count']] }]), [want]);
  }
});
