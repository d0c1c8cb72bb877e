'use strict';
// Cache channels through pusher-js: pusher:cache_miss on an empty cache, replay of the last REST
// event to new subscribers, and GET /channels/{name}?info=cache through both server SDKs.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/harness');
const h = require('../lib/clients');

const TTL = 1800; // cache_ttl_seconds default

let server;
let api;
before(async () => {
  server = await startServer();
  api = h.sdk(server);
});
after(() => h.teardown(server));

/** Subscribes, recording pusher:cache_miss and `events` from before the subscription goes out. */
async function subscribeRecording(c, ch, events = []) {
  const rec = {};
  const binds = {};
  for (const e of ['pusher:cache_miss', ...events]) {
    rec[e] = new h.Recorder(`${e} on ${ch}`);
    binds[e] = (data) => rec[e].push(data);
  }
  await c.subscribe(ch, binds);
  return rec;
}

async function cacheInfo(ch) {
  return h.json(api.get({ path: `/channels/${ch}`, params: { info: 'cache' } }));
}

function assertTtl(ttl) {
  assert.ok(Number.isInteger(ttl) && ttl > TTL - 60 && ttl <= TTL, `ttl ${ttl}`);
}

test('an empty cache channel answers every new subscriber with pusher:cache_miss', async () => {
  const ch = h.uid('cache-prices-');
  const a = h.client(server, { name: 'a' });
  const aRec = await subscribeRecording(a, ch);
  await aRec['pusher:cache_miss'].next('cache_miss');
  await a.barrier();
  // pusher-js decodes frames to {event, channel, data}: data undefined = none on the wire
  assert.deepEqual(a.framesFor(ch), [
    { event: 'pusher_internal:subscription_succeeded', channel: ch, data: {} },
    { event: 'pusher:cache_miss', channel: ch, data: undefined },
  ]);
  assert.deepEqual(aRec['pusher:cache_miss'].items, [undefined]);
  assert.deepEqual(await cacheInfo(ch), { occupied: true, cache: null });

  const b = h.client(server, { name: 'b' });
  const bRec = await subscribeRecording(b, ch);
  await bRec['pusher:cache_miss'].next('cache_miss for the second subscriber');
  await a.barrier();
  assert.equal(aRec['pusher:cache_miss'].items.length, 1, 'the first subscriber is not told again');

  // a private cache channel behaves the same
  const priv = h.uid('private-cache-orders-');
  const pRec = await subscribeRecording(a, priv);
  await pRec['pusher:cache_miss'].next('cache_miss on a private cache channel');
});

test('after a trigger, a new subscriber gets the last event replayed with its exact data', async () => {
  const ch = h.uid('cache-status-');
  const a = h.client(server, { name: 'a' });
  const aRec = await subscribeRecording(a, ch, ['status']);
  await aRec['pusher:cache_miss'].next('cache_miss');

  await h.json(api.trigger(ch, 'status', { staff: 'ann', status: 'in' }));
  await h.json(api.trigger(ch, 'status', { staff: 'bob', status: 'out', at: '2024-05-01T09:00:00Z', n: 2.5 }));
  assert.deepEqual(await aRec.status.next(), { staff: 'ann', status: 'in' });
  assert.deepEqual(await aRec.status.next(), { staff: 'bob', status: 'out', at: '2024-05-01T09:00:00Z', n: 2.5 });

  const b = h.client(server, { name: 'b' });
  const bRec = await subscribeRecording(b, ch, ['status']);
  assert.deepEqual(await bRec.status.next('the replayed event'), {
    staff: 'bob',
    status: 'out',
    at: '2024-05-01T09:00:00Z',
    n: 2.5,
  });
  await b.barrier();
  await a.barrier();
  assert.deepEqual(b.framesFor(ch), [
    { event: 'pusher_internal:subscription_succeeded', channel: ch, data: {} },
    { event: 'status', channel: ch, data: { staff: 'bob', status: 'out', at: '2024-05-01T09:00:00Z', n: 2.5 } },
  ]);
  assert.deepEqual(bRec['pusher:cache_miss'].items, []);
  assert.equal(aRec.status.items.length, 2, 'existing subscribers get no replay');

  // an event from the Python SDK replaces it
  await h.pythonOk(server, [{ op: 'trigger', args: [ch, 'status', { staff: 'cy', status: 'in' }] }]);
  assert.deepEqual(await aRec.status.next(), { staff: 'cy', status: 'in' });
  const c = h.client(server, { name: 'c' });
  const cRec = await subscribeRecording(c, ch, ['status']);
  assert.deepEqual(await cRec.status.next('the replayed Python event'), { staff: 'cy', status: 'in' });
  await c.barrier();
  assert.equal(cRec.status.items.length, 1);
});

test('an event sent to a cache channel nobody is on is kept for the first subscriber', async () => {
  const ch = h.uid('cache-empty-');
  await h.json(api.trigger(ch, 'kept', { v: 1 }));
  const a = h.client(server, { name: 'a' });
  const rec = await subscribeRecording(a, ch, ['kept']);
  assert.deepEqual(await rec.kept.next(), { v: 1 });
  await a.barrier();
  assert.deepEqual(rec['pusher:cache_miss'].items, []);
});

test('GET /channels/{name}?info=cache through the Node and Python SDKs', async () => {
  const ch = h.uid('cache-info-');
  const payload = { room: 12, status: 'clean' };
  await h.json(api.trigger(ch, 'room-status', payload));

  const unoccupied = await cacheInfo(ch);
  assert.deepEqual(Object.keys(unoccupied).sort(), ['cache', 'occupied']);
  assert.equal(unoccupied.occupied, false);
  assert.deepEqual(Object.keys(unoccupied.cache).sort(), ['data', 'ttl']);
  assert.equal(unoccupied.cache.data, JSON.stringify(payload), 'data exactly as the SDK sent it');
  assertTtl(unoccupied.cache.ttl);

  const a = h.client(server, { name: 'a' });
  const rec = await subscribeRecording(a, ch, ['room-status']);
  assert.deepEqual(await rec['room-status'].next(), payload);
  const occupied = await cacheInfo(ch);
  assert.equal(occupied.occupied, true);
  assert.equal(occupied.cache.data, JSON.stringify(payload));
  assertTtl(occupied.cache.ttl);

  const [py] = await h.pythonOk(server, [{ op: 'channel_info', args: [ch, ['cache']] }]);
  assert.deepEqual(Object.keys(py).sort(), ['cache', 'occupied']);
  assert.equal(py.occupied, true);
  assert.equal(py.cache.data, JSON.stringify(payload));
  assertTtl(py.cache.ttl);

  // info=cache on a channel that is not a cache channel is a 400
  await assert.rejects(api.get({ path: `/channels/${h.uid('plain-')}`, params: { info: 'cache' } }), (e) => {
    assert.equal(e.status, 400, String(e.body));
    return true;
  });
});
