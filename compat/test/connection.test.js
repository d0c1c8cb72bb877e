'use strict';
// Connection: pusher-js states and socket ids; close codes and frames on raw WebSockets; ping.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../lib/harness');
const h = require('../lib/clients');

let server;
before(async () => {
  server = await startServer();
});
after(() => h.teardown(server));

test('pusher-js goes connecting → connected and gets a ^\\d+\\.\\d+$ socket_id', async () => {
  const a = h.client(server, { name: 'a' });
  assert.equal(a.initialState, 'connecting');
  const sid = await a.connected();
  assert.match(sid, h.SOCKET_ID);
  assert.deepEqual(
    a.states.items.map((s) => `${s.previous}>${s.current}`),
    ['connecting>connected'],
  );
  assert.equal(a.pusher.connection.state, 'connected');
  assert.deepEqual(a.errors.items, []);

  const b = h.client(server, { name: 'b' });
  const sidB = await b.connected();
  assert.match(sidB, h.SOCKET_ID);
  assert.notEqual(sidB, sid, 'every connection gets its own socket_id');
});

test('connection_established is the first frame, with a string data holding socket_id and activity_timeout', async () => {
  const s = await h.rawSocket(server, '/app/compat-key-1001?protocol=7&client=js&version=8.6.0&flash=false');
  const first = await s.next('connection_established');
  assert.equal(first.json.event, 'pusher:connection_established');
  assert.equal(typeof first.json.data, 'string', 'data is double-encoded JSON');
  const data = JSON.parse(first.json.data);
  assert.deepEqual(Object.keys(data).sort(), ['activity_timeout', 'socket_id']);
  assert.match(data.socket_id, h.SOCKET_ID);
  assert.equal(data.activity_timeout, 120);
  s.close();
});

async function expectRefused(pathAndQuery, code, message) {
  const s = await h.rawSocket(server, pathAndQuery);
  const closed = await s.closed();
  assert.deepEqual(
    s.frames.items.map((f) => f.json),
    [{ event: 'pusher:error', data: { code, message } }],
    `exactly one pusher:error before the close of ${pathAndQuery}`,
  );
  assert.equal(closed.code, code);
  assert.equal(closed.reason, message);
}

test('unknown app key: pusher:error 4001 then close 4001', async () => {
  await expectRefused('/app/no-such-key?protocol=7', 4001, 'Application does not exist');
});

test('missing protocol: pusher:error 4008 then close 4008', async () => {
  await expectRefused('/app/compat-key-1001', 4008, 'No protocol version supplied');
  await expectRefused('/app/compat-key-1001?client=js&version=8.6.0', 4008, 'No protocol version supplied');
});

test('unsupported protocol: pusher:error 4007 then close 4007', async () => {
  for (const p of ['3', 'abc', '8']) {
    await expectRefused(`/app/compat-key-1001?protocol=${p}`, 4007, 'Unsupported protocol version');
  }
});

test('disabled app: pusher:error 4003 then close 4003', async () => {
  await expectRefused('/app/compat-key-1003?protocol=7', 4003, 'Application disabled');
});

test('pusher-js surfaces a 4001 refusal as an error and ends disconnected', async () => {
  const a = h.client(server, { name: 'refused', app: { key: 'no-such-key' } });
  const err = await a.errors.next('the refusal');
  assert.deepEqual(err, {
    type: 'WebSocketError',
    error: { type: 'PusherError', data: { code: 4001, message: 'Application does not exist' } },
  });
  await a.states.find((s) => s.current === 'disconnected', 'state disconnected');
  assert.equal(a.socketId, undefined);
});

test('pusher:ping is answered with pusher:pong (with and without data)', async () => {
  const s = await h.rawSocket(server, '/app/compat-key-1001?protocol=7');
  await s.next('connection_established');
  s.send({ event: 'pusher:ping', data: {} });
  assert.deepEqual((await s.next('pong')).json, { event: 'pusher:pong', data: '{}' });
  s.send({ event: 'pusher:ping' }); // Java client form
  assert.deepEqual((await s.next('pong')).json, { event: 'pusher:pong', data: '{}' });
  s.close();
});

test('pusher-js client ping gets its pong', async () => {
  const a = h.client(server, { name: 'pinger' });
  await a.connected();
  const pong = new Promise((resolve) => a.pusher.connection.bind('message', (m) => m.event === 'pusher:pong' && resolve(m)));
  a.pusher.send_event('pusher:ping', {});
  const m = await h.withTimeout(pong, h.WAIT, 'pusher:pong');
  assert.equal(m.event, 'pusher:pong');
});

test('offered sub-protocol pusher-channels-protocol-7 is echoed', async () => {
  const s = await h.rawSocket(server, '/app/compat-key-1001?protocol=7', ['pusher-channels-protocol-7']);
  assert.equal(s.ws.protocol, 'pusher-channels-protocol-7');
  assert.equal((await s.next('connection_established')).json.event, 'pusher:connection_established');
  s.close();
});

test('a message above max_message_bytes: pusher:error without a code (1009 is not a Pusher code), then close 1009', async () => {
  const s = await h.rawSocket(server, '/app/compat-key-1001?protocol=7');
  await s.next('connection_established');
  s.send({ event: 'client-big', channel: 'private-big', data: 'x'.repeat(70 * 1024) });
  const closed = await s.closed();
  assert.deepEqual(
    s.frames.items.slice(1).map((f) => f.json),
    [{ event: 'pusher:error', data: { code: null, message: 'Message too big' } }],
  );
  assert.deepEqual(closed, { code: 1009, reason: 'Message too big' });
});

test('pusher-js sees the same for a message too big, and reconnects', async () => {
  const a = h.client(server, { name: 'big' });
  await a.connected();
  a.pusher.send_event('client-big', 'x'.repeat(70 * 1024), 'private-big');
  const err = await a.errors.next('the error before the close');
  assert.deepEqual(err, { type: 'PusherError', data: { code: null, message: 'Message too big' } });
  await a.states.find((s) => s.previous === 'connected' && s.current !== 'connected', 'leaving connected');
  await a.states.find((s) => s.current === 'connected' && s.previous !== 'initialized', 'connected again');
});
