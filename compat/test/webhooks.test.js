'use strict';
// Webhooks to a local receiver, validated the way apps validate them: the Node SDK's
// pusher.webhook({headers, rawBody}).isValid() / getEvents() and the Python SDK's
// validate_webhook(key, signature, body). Events come from real pusher-js clients.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { appsWith, startServer } = require('../lib/harness');
const h = require('../lib/clients');
const { startReceiver, webhookToml } = require('../lib/webhooks');

const GRACE_MS = 300;
const EVENT_TYPES = ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed', 'client_event'];

let receiver;
let server;
let api;
before(async () => {
  receiver = await startReceiver('/hooks');
  server = await startServer({
    apps: appsWith({ main: webhookToml(receiver.url, { events: EVENT_TYPES }) }),
    extraToml: `[webhooks]\ngrace_ms = ${GRACE_MS}`,
  });
  api = h.sdk(server);
});
after(async () => {
  await h.teardown(server);
  if (receiver) await receiver.close();
});

/** Waits for the next `n` webhook events about `channel` after index `from`; returns them and the index after. */
async function nextEvents(channel, n, what, from) {
  const got = [];
  let at = from;
  for (let k = 0; k < n; k++) {
    const { i, item } = await receiver.events.find((e) => e.event.channel === channel, `${what} (${k + 1}/${n})`, {
      from: at,
    });
    got.push(item);
    at = i + 1;
  }
  return { got, next: at };
}

const byName = (a, b) => `${a.name}/${a.user_id || ''}`.localeCompare(`${b.name}/${b.user_id || ''}`);

/** Every webhook event received so far about `channel`, in arrival order. */
function eventsAbout(channel) {
  return receiver.events.items.filter((e) => e.event.channel === channel);
}

/**
 * Nothing more about `channels` is on its way: occupy a marker channel and wait for its webhook,
 * which herald sends after everything emitted before it (requests to one receiver keep order).
 */
async function markerBarrier(c) {
  const marker = h.uid('marker-');
  const from = receiver.events.items.length;
  await c.subscribe(marker);
  await receiver.events.find(
    (e) => e.event.channel === marker && e.event.name === 'channel_occupied',
    'the marker webhook',
    { from },
  );
}

/** The Node SDK's verdict: the events when valid, else null. */
function nodeValidate(request, validator = api) {
  const hook = validator.webhook({ headers: request.headers, rawBody: request.rawBody });
  return hook.isValid() ? hook.getEvents() : null;
}

/** The Python SDK's verdicts (validate_webhook returns the decoded body or None), one per request. */
async function pythonValidate(requests, options) {
  return h.pythonOk(
    server,
    requests.map((r) => ({
      op: 'validate_webhook',
      args: [r.headers['x-pusher-key'] || '', r.headers['x-pusher-signature'] || '', r.rawBody],
    })),
    options,
  );
}

/** Both SDKs accept every request, and both decode exactly the events the receiver parsed. */
async function assertValidByBothSdks(requests) {
  const unique = [...new Set(requests)];
  for (const r of unique) {
    assert.equal(r.method, 'POST');
    assert.equal(r.path, '/hooks');
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal(r.headers['x-pusher-key'], server.apps.main.key);
    assert.match(r.headers['x-pusher-signature'], /^[0-9a-f]{64}$/);
    const body = JSON.parse(r.rawBody);
    assert.deepEqual(Object.keys(body).sort(), ['events', 'time_ms']);
    assert.ok(Math.abs(Date.now() - body.time_ms) < 60_000, `time_ms ${body.time_ms}`);
    assert.deepEqual(nodeValidate(r), body.events, `Node SDK accepts ${r.rawBody}`);
  }
  const py = await pythonValidate(unique);
  unique.forEach((r, i) => assert.deepEqual(py[i], JSON.parse(r.rawBody), `Python SDK accepts ${r.rawBody}`));
}

test('channel_occupied and channel_vacated (after grace_ms) for a public channel', async () => {
  const ch = h.uid('hotel-');
  const a = h.client(server, { name: 'a' });
  const from = receiver.events.items.length;
  await a.subscribe(ch);
  const occupied = await nextEvents(ch, 1, 'channel_occupied', from);
  assert.deepEqual(occupied.got.map((e) => e.event), [{ name: 'channel_occupied', channel: ch }]);

  const left = Date.now();
  a.pusher.unsubscribe(ch);
  const vacated = await nextEvents(ch, 1, 'channel_vacated', occupied.next);
  assert.ok(Date.now() - left >= GRACE_MS - 50, `vacated after ${Date.now() - left} ms, grace is ${GRACE_MS}`);
  assert.deepEqual(vacated.got.map((e) => e.event), [{ name: 'channel_vacated', channel: ch }]);

  await markerBarrier(a);
  assert.deepEqual(
    eventsAbout(ch).map((e) => e.event),
    [
      { name: 'channel_occupied', channel: ch },
      { name: 'channel_vacated', channel: ch },
    ],
  );
  await assertValidByBothSdks([...occupied.got, ...vacated.got].map((e) => e.request));
});

test('presence member_added / member_removed and client_event, checked by both SDKs', async () => {
  const ch = h.uid('presence-hooks-');
  const ann = h.client(server, { name: 'ann', user: { user_id: 7, user_info: { name: 'Ann' } } });
  const bob = h.client(server, { name: 'bob', user: { user_id: 'bob', user_info: { name: 'Bob' } } });

  const at = receiver.events.items.length;
  await ann.subscribe(ch);
  const p1 = await nextEvents(ch, 2, 'occupied + ann added', at);
  assert.deepEqual(p1.got.map((e) => e.event).sort(byName), [
    { name: 'channel_occupied', channel: ch },
    { name: 'member_added', channel: ch, user_id: '7' }, // user ids are strings
  ]);

  const bobCh = await bob.subscribe(ch);
  const p2 = await nextEvents(ch, 1, 'bob added', p1.next);
  assert.deepEqual(p2.got.map((e) => e.event), [{ name: 'member_added', channel: ch, user_id: 'bob' }]);

  const heard = ann.record(ch, 'client-typing');
  bobCh.trigger('client-typing', { typing: true, field: 'notes' });
  await heard.next('the client event');
  const p3 = await nextEvents(ch, 1, 'client_event', p2.next);
  const [clientEvent] = p3.got.map((e) => e.event);
  // `data` is the client's data as a JSON string (herald re-encodes it: keys come out sorted)
  assert.equal(typeof clientEvent.data, 'string');
  assert.deepEqual(JSON.parse(clientEvent.data), { typing: true, field: 'notes' });
  assert.deepEqual(
    { ...clientEvent, data: '<checked above>' },
    {
      name: 'client_event',
      channel: ch,
      event: 'client-typing',
      data: '<checked above>',
      socket_id: bob.socketId,
      user_id: 'bob',
    },
  );

  bob.disconnect();
  const p4 = await nextEvents(ch, 1, 'bob removed', p3.next);
  assert.deepEqual(p4.got.map((e) => e.event), [{ name: 'member_removed', channel: ch, user_id: 'bob' }]);

  ann.pusher.unsubscribe(ch);
  const p5 = await nextEvents(ch, 2, 'ann removed + vacated', p4.next);
  assert.deepEqual(p5.got.map((e) => e.event).sort(byName), [
    { name: 'channel_vacated', channel: ch },
    { name: 'member_removed', channel: ch, user_id: '7' },
  ]);

  await markerBarrier(ann);
  assert.equal(eventsAbout(ch).length, 7, JSON.stringify(eventsAbout(ch).map((e) => e.event)));
  await assertValidByBothSdks([...p1.got, ...p2.got, ...p3.got, ...p4.got, ...p5.got].map((e) => e.request));
});

test('tampered bodies, signatures and keys are rejected by both SDKs, and so is a wrong secret', async () => {
  const ch = h.uid('tamper-');
  const a = h.client(server, { name: 'a' });
  const from = receiver.events.items.length;
  await a.subscribe(ch);
  const { got } = await nextEvents(ch, 1, 'channel_occupied', from);
  const real = got[0].request;
  await assertValidByBothSdks([real]);

  const flipHex = (s) => s.slice(0, -1) + (s.at(-1) === '0' ? '1' : '0');
  const forgeries = {
    'body with another channel': { ...real, rawBody: real.rawBody.replace(ch, h.uid('other-')) },
    'body with one more space': { ...real, rawBody: real.rawBody.replace('"events"', ' "events"') },
    'signature with one digit changed': {
      ...real,
      headers: { ...real.headers, 'x-pusher-signature': flipHex(real.headers['x-pusher-signature']) },
    },
    'another key': { ...real, headers: { ...real.headers, 'x-pusher-key': server.apps.quiet.key } },
  };
  assert.notEqual(forgeries['body with another channel'].rawBody, real.rawBody);
  const names = Object.keys(forgeries);
  const py = await pythonValidate(Object.values(forgeries));
  names.forEach((name, i) => {
    assert.equal(nodeValidate(forgeries[name]), null, `Node SDK rejects: ${name}`);
    assert.equal(py[i], null, `Python SDK rejects: ${name}`);
  });

  // the genuine request, checked with another app's secret
  const wrong = { ...server.apps.main, secret: 'not-the-secret' };
  assert.equal(nodeValidate(real, h.sdk(server, wrong)), null, 'Node SDK with a wrong secret');
  assert.deepEqual(await pythonValidate([real], { app: wrong }), [null], 'Python SDK with a wrong secret');
});
