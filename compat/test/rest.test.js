'use strict';
// The REST API through pusher-http-node and pusher-http-python: channel lists and info, trigger
// info, and credential errors as each SDK surfaces them.

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

const get = (path, params) => h.json(api.get({ path, params }));

async function rejection(promise) {
  try {
    await h.withTimeout(promise, h.WAIT, 'the SDK call');
  } catch (e) {
    return e;
  }
  throw new Error('the SDK call succeeded but should have failed');
}

test('GET /channels with filter_by_prefix and info=user_count (Node and Python)', async () => {
  const tag = h.uid('x');
  const presA = `presence-list-${tag}-a`;
  const presB = `presence-list-${tag}-b`;
  const pub = `list-${tag}-public`;
  const u1 = h.client(server, { name: 'u1', user: { user_id: 'u1' } });
  const u1b = h.client(server, { name: 'u1b', user: { user_id: 'u1' } });
  const u2 = h.client(server, { name: 'u2', user: { user_id: 'u2' } });
  await u1.subscribe(presA);
  await u1b.subscribe(presA);
  await u2.subscribe(presA);
  await u2.subscribe(presB);
  await u2.subscribe(pub);

  const expected = { channels: { [presA]: { user_count: 2 }, [presB]: { user_count: 1 } } };
  assert.deepEqual(await get('/channels', { filter_by_prefix: `presence-list-${tag}-`, info: 'user_count' }), expected);
  assert.deepEqual(await get('/channels', { filter_by_prefix: `presence-list-${tag}-` }), {
    channels: { [presA]: {}, [presB]: {} },
  });
  assert.deepEqual(await get('/channels', { filter_by_prefix: `list-${tag}-` }), { channels: { [pub]: {} } });
  assert.deepEqual(await get('/channels', { filter_by_prefix: `nothing-${tag}` }), { channels: {} });
  const all = await get('/channels');
  for (const ch of [presA, presB, pub]) assert.deepEqual(all.channels[ch], {}, `${ch} listed without a filter`);

  const err = await rejection(api.get({ path: '/channels', params: { filter_by_prefix: `list-${tag}-`, info: 'user_count' } }));
  assert.equal(err.status, 400, 'user_count needs a presence- prefix');

  const [py, pyPlain, pyBad] = await h.python(server, [
    { op: 'channels_info', kwargs: { prefix_filter: `presence-list-${tag}-`, attributes: ['user_count'] } },
    { op: 'channels_info', kwargs: { prefix_filter: `list-${tag}-` } },
    { op: 'channels_info', kwargs: { prefix_filter: `list-${tag}-`, attributes: ['user_count'] } },
  ]);
  assert.deepEqual(py, { ok: true, result: expected });
  assert.deepEqual(pyPlain, { ok: true, result: { channels: { [pub]: {} } } });
  assert.equal(pyBad.ok, false);
  assert.equal(pyBad.error, 'PusherBadRequest');
});

test('GET /channels/{name}: subscription_count and user_count (Node and Python)', async () => {
  const pub = h.uid('info-public-');
  const pres = h.uid('presence-info-');
  const a = h.client(server, { name: 'a', user: { user_id: 'same' } });
  const b = h.client(server, { name: 'b', user: { user_id: 'same' } });
  for (const c of [a, b]) {
    await c.subscribe(pub);
    await c.subscribe(pres);
  }
  assert.deepEqual(await get(`/channels/${pub}`, { info: 'subscription_count' }), { occupied: true, subscription_count: 2 });
  assert.deepEqual(await get(`/channels/${pub}`), { occupied: true });
  assert.deepEqual(await get(`/channels/${pres}`, { info: 'user_count' }), { occupied: true, user_count: 1 });
  assert.deepEqual(await get(`/channels/${h.uid('empty-')}`), { occupied: false });
  assert.equal((await rejection(api.get({ path: `/channels/${pub}`, params: { info: 'user_count' } }))).status, 400);

  const results = await h.pythonOk(server, [
    { op: 'channel_info', args: [pub, ['subscription_count']] },
    { op: 'channel_info', args: [pres, ['user_count']] },
    { op: 'channel_info', args: [h.uid('empty-py-')] },
  ]);
  assert.deepEqual(results, [
    { occupied: true, subscription_count: 2 },
    { occupied: true, user_count: 1 },
    { occupied: false },
  ]);

  for (const c of [a, b]) {
    c.pusher.unsubscribe(pub);
    await c.barrier(); // the unsubscribe has been processed
  }
  assert.deepEqual(await get(`/channels/${pub}`, { info: 'subscription_count' }), { occupied: false, subscription_count: 0 });
});

test('trigger with info returns per-channel counts (Node SDK)', async () => {
  const pub = h.uid('trig-info-');
  const pres = h.uid('presence-trig-info-');
  const a = h.client(server, { name: 'a', user: { user_id: 'ti-1' } });
  const b = h.client(server, { name: 'b', user: { user_id: 'ti-2' } });
  for (const c of [a, b]) {
    await c.subscribe(pub);
    await c.subscribe(pres);
  }
  const body = await h.json(api.trigger([pub, pres], 'counted', 'x', { info: 'subscription_count,user_count' }));
  // presence channels answer both: distinct users and subscribed connections
  assert.deepEqual(body, { channels: { [pub]: { subscription_count: 2 }, [pres]: { user_count: 2, subscription_count: 2 } } });
});

test('wrong secret: Node rejects with status 401, Python raises PusherBadAuth', async () => {
  const ch = h.uid('badauth-');
  const a = h.client(server, { name: 'a' });
  await a.subscribe(ch);
  const bad = h.sdk(server, server.apps.main, { secret: 'wrong-secret' });

  const e1 = await rejection(bad.trigger(ch, 'nope', 'x'));
  assert.equal(e1.name, 'PusherRequestError');
  assert.equal(e1.status, 401);
  assert.match(JSON.parse(e1.body).error, /^Invalid signature/);
  const e2 = await rejection(bad.get({ path: '/channels' }));
  assert.equal(e2.status, 401);

  const py = await h.python(
    server,
    [
      { op: 'trigger', args: [ch, 'nope', 'x'] },
      { op: 'channels_info' },
    ],
    { secret: 'wrong-secret' },
  );
  for (const r of py) {
    assert.equal(r.ok, false);
    assert.equal(r.error, 'PusherBadAuth');
    assert.match(JSON.parse(r.message).error, /^Invalid signature/);
  }
  await a.barrier();
  assert.deepEqual(a.framesFor(ch, 'nope'), [], 'nothing was published');
});

test('disabled app: Node rejects with status 403, Python raises PusherForbidden', async () => {
  const dis = h.sdk(server, server.apps.disabled);
  const e = await rejection(dis.trigger('anything', 'e', 'x'));
  assert.equal(e.status, 403);
  assert.deepEqual(JSON.parse(e.body), { error: 'Application disabled' });
  const [r] = await h.python(server, [{ op: 'trigger', args: ['anything', 'e', 'x'] }], { app: server.apps.disabled });
  assert.deepEqual(r, { ok: false, error: 'PusherForbidden', message: '{"error":"Application disabled"}' });
});

test('presence channels answer subscription_count next to user_count on every path that takes info (Node and Python)', async () => {
  const pres = h.uid('presence-both-');
  // ann on two sockets, bob on one: 2 users, 3 subscriptions
  const clients = [
    h.client(server, { name: 'ann 1', user: { user_id: 'ann' } }),
    h.client(server, { name: 'ann 2', user: { user_id: 'ann' } }),
    h.client(server, { name: 'bob', user: { user_id: 'bob' } }),
  ];
  for (const c of clients) await c.subscribe(pres);
  const both = { user_count: 2, subscription_count: 3 };

  assert.deepEqual(await get(`/channels/${pres}`, { info: 'user_count,subscription_count' }), { occupied: true, ...both });
  assert.deepEqual(await get(`/channels/${pres}`, { info: 'subscription_count' }), { occupied: true, subscription_count: 3 });
  assert.deepEqual(await get('/channels', { filter_by_prefix: pres, info: 'user_count,subscription_count' }), {
    channels: { [pres]: both },
  });
  assert.deepEqual(await h.json(api.trigger(pres, 'counted', 'x', { info: 'user_count,subscription_count' })), {
    channels: { [pres]: both },
  });

  const results = await h.pythonOk(server, [
    { op: 'channel_info', args: [pres, ['user_count', 'subscription_count']] },
    { op: 'channels_info', kwargs: { prefix_filter: pres, attributes: ['user_count', 'subscription_count'] } },
  ]);
  assert.deepEqual(results, [{ occupied: true, ...both }, { channels: { [pres]: both } }]);
});
