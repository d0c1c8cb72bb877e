'use strict';
// Public channels: triggers from pusher-http-node and pusher-http-python reach pusher-js exactly.

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

/** A raw WebSocket subscriber, to see the `data` string exactly as it is on the wire. */
async function rawSubscriber(channel) {
  const s = await h.rawSocket(server, '/app/compat-key-1001?protocol=7');
  await s.next('connection_established');
  s.send({ event: 'pusher:subscribe', data: { auth: '', channel } });
  assert.deepEqual((await s.next('subscription_succeeded')).json, {
    event: 'pusher_internal:subscription_succeeded',
    channel,
    data: '{}',
  });
  return s;
}

test('Node SDK trigger: string and JSON payloads arrive exactly', async () => {
  const ch = h.uid('public-node-');
  const a = h.client(server, { name: 'a' });
  await a.subscribe(ch);
  const rec = a.record(ch, 'news');
  const raw = await rawSubscriber(ch);

  const cases = [
    // [what the SDK is given, the wire string, what pusher-js hands to the app]
    ['plain text, not JSON', 'plain text, not JSON', 'plain text, not JSON'],
    ['café 😀 "quoted" \\ back', 'café 😀 "quoted" \\ back', 'café 😀 "quoted" \\ back'],
    ['', '', ''],
    ['{"already":"json"}', '{"already":"json"}', { already: 'json' }],
    [
      { order: { id: 42, items: ['x', 'y'] }, ok: true, none: null, n: 1.5 },
      '{"order":{"id":42,"items":["x","y"]},"ok":true,"none":null,"n":1.5}',
      { order: { id: 42, items: ['x', 'y'] }, ok: true, none: null, n: 1.5 },
    ],
  ];
  for (const [given, wire, seen] of cases) {
    assert.deepEqual(await h.json(api.trigger(ch, 'news', given)), {});
    const got = await rec.next(`news ${JSON.stringify(given)}`);
    assert.deepEqual(got.data, seen);
    const frame = await raw.next(`raw news ${JSON.stringify(given)}`);
    assert.deepEqual(frame.json, { event: 'news', channel: ch, data: wire });
  }
  raw.close();
});

test('Python SDK trigger: string and JSON payloads arrive exactly', async () => {
  const ch = h.uid('public-py-');
  const a = h.client(server, { name: 'a' });
  await a.subscribe(ch);
  const rec = a.record(ch, 'news');
  const raw = await rawSubscriber(ch);
  const results = await h.pythonOk(server, [
    { op: 'trigger', args: [ch, 'news', 'plain text from python'] },
    { op: 'trigger', args: [ch, 'news', 'café 😀'] },
    { op: 'trigger', args: [ch, 'news', { order: { id: 7 }, tags: ['a', 'b'], ok: false }] },
  ]);
  assert.deepEqual(results, [{}, {}, {}]);
  assert.deepEqual((await rec.next()).data, 'plain text from python');
  assert.deepEqual((await rec.next()).data, 'café 😀');
  assert.deepEqual((await rec.next()).data, { order: { id: 7 }, tags: ['a', 'b'], ok: false });
  assert.equal((await raw.next()).json.data, 'plain text from python');
  assert.equal((await raw.next()).json.data, 'café 😀');
  const third = (await raw.next()).json;
  assert.equal(typeof third.data, 'string');
  assert.deepEqual(JSON.parse(third.data), { order: { id: 7 }, tags: ['a', 'b'], ok: false });
  raw.close();
});

test('multi-channel trigger reaches each channel once (Node and Python SDKs)', async () => {
  const [c1, c2, c3, c4] = [h.uid('multi-a-'), h.uid('multi-b-'), h.uid('multi-c-'), h.uid('multi-d-')];
  const x = h.client(server, { name: 'x' });
  const y = h.client(server, { name: 'y' });
  const z = h.client(server, { name: 'z' });
  await x.subscribe(c1);
  await x.subscribe(c2);
  await y.subscribe(c3);
  await z.subscribe(c4); // not targeted

  assert.deepEqual(await h.json(api.trigger([c1, c2, c3], 'fanout', { from: 'node' })), {});
  await h.pythonOk(server, [{ op: 'trigger', args: [[c1, c2, c3], 'fanout', { from: 'python' }] }]);
  for (const c of [x, y, z]) await c.barrier();

  const got = (c, ch) => c.framesFor(ch, 'fanout').map((f) => f.data);
  assert.deepEqual(got(x, c1), [{ from: 'node' }, { from: 'python' }]);
  assert.deepEqual(got(x, c2), [{ from: 'node' }, { from: 'python' }]);
  assert.deepEqual(got(y, c3), [{ from: 'node' }, { from: 'python' }]);
  assert.deepEqual(got(y, c1), []);
  assert.deepEqual(z.frames.items.filter((f) => f.event === 'fanout'), []);
});

test('Node triggerBatch delivers every event, in order, with exact data', async () => {
  const [b1, b2] = [h.uid('batch-node-a-'), h.uid('batch-node-b-')];
  const a = h.client(server, { name: 'a' });
  await a.subscribe(b1);
  await a.subscribe(b2);
  const res = await h.json(
    api.triggerBatch([
      { channel: b1, name: 'first', data: { n: 1 } },
      { channel: b2, name: 'second', data: 'two' },
      { channel: b1, name: 'third', data: { n: 3, nested: { deep: [true] } } },
    ]),
  );
  assert.deepEqual(res, {});
  await a.frames.find((f) => f.event === 'third', 'the last batch event');
  assert.deepEqual(
    a.frames.items
      .filter((f) => ['first', 'second', 'third'].includes(f.event))
      .map((f) => [f.channel, f.event, f.data]),
    [
      [b1, 'first', { n: 1 }],
      [b2, 'second', 'two'],
      [b1, 'third', { n: 3, nested: { deep: [true] } }],
    ],
  );
});

test('Python trigger_batch delivers every event, in order, with exact data', async () => {
  const [b1, b2] = [h.uid('batch-py-a-'), h.uid('batch-py-b-')];
  const a = h.client(server, { name: 'a' });
  await a.subscribe(b1);
  await a.subscribe(b2);
  const [res] = await h.pythonOk(server, [
    {
      op: 'trigger_batch',
      args: [
        [
          { channel: b1, name: 'p-first', data: { n: 1 } },
          { channel: b2, name: 'p-second', data: 'two' },
          { channel: b1, name: 'p-third', data: 'three' },
        ],
      ],
    },
  ]);
  assert.deepEqual(res, {});
  await a.frames.find((f) => f.event === 'p-third', 'the last batch event');
  assert.deepEqual(
    a.frames.items.filter((f) => f.event.startsWith('p-')).map((f) => [f.channel, f.event, f.data]),
    [
      [b1, 'p-first', { n: 1 }],
      [b2, 'p-second', 'two'],
      [b1, 'p-third', 'three'],
    ],
  );
});

test('socket_id excludes exactly that connection (Node and Python SDKs)', async () => {
  const ch = h.uid('exclude-');
  const a = h.client(server, { name: 'a' });
  const b = h.client(server, { name: 'b' });
  await a.subscribe(ch);
  await b.subscribe(ch);
  const recB = b.record(ch, 'excl');

  await h.json(api.trigger(ch, 'excl', { via: 'node' }, { socket_id: a.socketId }));
  await h.pythonOk(server, [{ op: 'trigger', args: [ch, 'excl', { via: 'python' }], kwargs: { socket_id: a.socketId } }]);
  assert.deepEqual((await recB.next()).data, { via: 'node' });
  assert.deepEqual((await recB.next()).data, { via: 'python' });
  await a.barrier();
  assert.deepEqual(a.framesFor(ch, 'excl'), [], 'the excluded socket received nothing');

  // without socket_id both get it: the exclusion was not an accident of a
  await h.json(api.trigger(ch, 'excl', { via: 'node', to: 'all' }));
  assert.deepEqual((await recB.next()).data, { via: 'node', to: 'all' });
  await a.barrier();
  assert.deepEqual(a.framesFor(ch, 'excl').map((f) => f.data), [{ via: 'node', to: 'all' }]);
});

test('unsubscribe stops delivery', async () => {
  const ch = h.uid('unsub-');
  const a = h.client(server, { name: 'a' });
  const b = h.client(server, { name: 'b' }); // stays subscribed, proves the event went out
  await a.subscribe(ch);
  await b.subscribe(ch);
  const recB = b.record(ch, 'after');
  const info = async () => h.json(api.get({ path: `/channels/${ch}`, params: { info: 'subscription_count' } }));
  assert.deepEqual(await info(), { occupied: true, subscription_count: 2 });

  a.pusher.unsubscribe(ch);
  await a.barrier(); // the server has processed the unsubscribe
  assert.equal(a.pusher.channel(ch), undefined);
  assert.deepEqual(await info(), { occupied: true, subscription_count: 1 });

  await h.json(api.trigger(ch, 'after', 'x'));
  assert.deepEqual((await recB.next()).data, 'x');
  await a.barrier();
  assert.deepEqual(a.framesFor(ch, 'after'), [], 'no frame for the channel reached the socket');
});
