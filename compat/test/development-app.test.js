'use strict';
// The built-in development app (herald without --config): every optional feature is on, and the
// banner says so, so a newcomer trying pusher:subscription_count, watchlists or client events
// sees them work.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/harness');
const h = require('../lib/clients');

let server;
before(async () => {
  server = await startServer({ development: true });
});
after(() => h.teardown(server));

test('the banner prints the credentials, the features that are on, and the other listeners', async () => {
  const banner = await h.eventually(() => {
    const lines = server.output().split('\n');
    const first = lines.findIndex((l) => l.startsWith('herald listening on '));
    return first >= 0 && lines.length > first + 6 ? lines.slice(first, first + 6) : null;
  }, 'the banner');
  assert.deepEqual(banner, [
    `herald listening on ${server.host}:${server.port} (development app)`,
    '  app_id:    app-id',
    '  key:       app-key',
    '  secret:    app-secret',
    '  features:  client events, subscription counts, watchlist events',
    '  metrics:   off',
  ]);
});

test('pusher:subscription_count arrives without any configuration', async () => {
  const ch = h.uid('dev-room-');
  const a = h.client(server, { name: 'a' });
  const counts = new h.Recorder('subscription counts');
  const channel = await a.subscribe(ch, { 'pusher:subscription_count': (d) => counts.push(d) });
  assert.deepEqual(await counts.next('count 1'), { subscription_count: 1 });
  const b = h.client(server, { name: 'b' });
  await b.subscribe(ch);
  assert.deepEqual(await counts.next('count 2'), { subscription_count: 2 });
  assert.equal(channel.subscriptionCount, 2);
});

test('signin() with a watchlist gets online and offline events', async () => {
  const bobId = h.uid('bob-');
  const w = h.client(server, { name: 'watcher', signinAs: { id: h.uid('w-'), watchlist: [bobId] } });
  await w.connected();
  await w.signin();
  assert.deepEqual(await w.watchlist.next('bob offline'), { name: 'offline', user_ids: [bobId] });
  const bob = h.client(server, { name: 'bob', signinAs: { id: bobId } });
  await bob.connected();
  await bob.signin();
  assert.deepEqual(await w.watchlist.next('bob online'), { name: 'online', user_ids: [bobId] });
});

test('client events are relayed on private channels', async () => {
  const ch = h.uid('private-dev-');
  const a = h.client(server, { name: 'a' });
  const b = h.client(server, { name: 'b' });
  const A = await a.subscribe(ch);
  await b.subscribe(ch);
  const got = b.record(ch, 'client-typing');
  A.trigger('client-typing', { who: 'a' });
  assert.deepEqual((await got.next('the client event')).data, { who: 'a' });
});
