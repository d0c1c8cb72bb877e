'use strict';
// User sign-in through pusher-js (`signin()` with a userAuthentication customHandler that signs
// with the Node SDK's authenticateUser), sendToUser, terminateUserConnections (Node and Python
// SDKs) and watchlist online/offline events.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { appsWith, startServer } = require('../lib/harness');
const h = require('../lib/clients');

const TERMINATED = 'Connection is unauthorized: terminated by the application';

// pusher-js decodes every frame to {event, channel, data}; `channel: undefined` below means the
// frame on the wire had no channel.

let server;
let api;
before(async () => {
  // main: watchlist events on; quiet: off (the default)
  server = await startServer({ apps: appsWith({ main: 'enable_watchlist_events = true' }) });
  api = h.sdk(server);
});
after(() => h.teardown(server));

/** A pusher-js client that signs in as `user_data` and is signed in when this resolves. */
async function signedIn(name, userData, options = {}) {
  const c = h.client(server, { name, signinAs: userData, ...options });
  await c.connected();
  await c.signin();
  return c;
}

function watchlistFrames(c) {
  return c.frames.items.filter((f) => f.event === 'pusher_internal:watchlist_events');
}

test('signin(): signin_success carries the signed user_data; pusher-js joins #server-to-user-<id> itself', async () => {
  const id = h.uid('ann-');
  const user = { id, user_info: { name: 'Ann', role: 'admin' } };
  const ann = h.client(server, { name: 'ann', signinAs: user });
  const socketId = await ann.connected();
  const from = ann.frames.items.length;
  const ok = await ann.signin();

  assert.deepEqual(ann.signinLog.items, [{ socketId }], 'pusher-js asked the customHandler once, for its socket');
  assert.deepEqual(ok, { event: 'pusher:signin_success', channel: undefined, data: { user_data: JSON.stringify(user) } });
  assert.deepEqual(ann.pusher.user.user_data, user);
  const userChannel = `#server-to-user-${id}`;
  assert.deepEqual(ann.frames.items.slice(from), [
    ok,
    { event: 'pusher_internal:subscription_succeeded', channel: userChannel, data: {} },
  ]);
  assert.equal(ann.pusher.user.serverToUserChannel.name, userChannel);
  assert.equal(ann.pusher.user.serverToUserChannel.subscribed, true);

  // the user channel is not an app channel
  const { channels } = await h.json(api.get({ path: '/channels' }));
  assert.deepEqual(
    Object.keys(channels).filter((n) => n.startsWith('#')),
    [],
    `no #server-to-user- channel in ${JSON.stringify(channels)}`,
  );
});

test('sendToUser (Node and Python) reaches every client signed in as that user, nobody else', async () => {
  const annId = h.uid('ann-');
  const ann1 = await signedIn('ann1', { id: annId, user_info: { device: 'phone' } });
  const ann2 = await signedIn('ann2', { id: annId, user_info: { device: 'laptop' } });
  const bob = await signedIn('bob', { id: h.uid('bob-') });
  const anon = h.client(server, { name: 'anonymous' });
  await anon.connected();

  await h.json(api.sendToUser(annId, 'notify', { n: 1, text: 'leave approved' }));
  assert.deepEqual(await h.pythonOk(server, [{ op: 'send_to_user', args: [annId, 'notify', { n: 2 }] }]), [{}]);

  for (const c of [ann1, ann2]) {
    assert.deepEqual(await c.userEvents.next('notify 1'), { event: 'notify', data: { n: 1, text: 'leave approved' } });
    assert.deepEqual(await c.userEvents.next('notify 2'), { event: 'notify', data: { n: 2 } });
    await c.barrier();
    assert.deepEqual(
      c.frames.items.filter((f) => f.event === 'notify'),
      [
        { event: 'notify', channel: `#server-to-user-${annId}`, data: { n: 1, text: 'leave approved' } },
        { event: 'notify', channel: `#server-to-user-${annId}`, data: { n: 2 } },
      ],
      'each exactly once',
    );
  }
  for (const c of [bob, anon]) {
    await c.barrier();
    assert.deepEqual(c.userEvents.items, []);
    assert.deepEqual(c.frames.items.filter((f) => f.event === 'notify'), []);
  }
});

/**
 * What pusher-js reports for one `pusher:error` 4009 frame followed by close 4009: the frame's
 * error, then (from the close) the close error and the 'refused' action's WebSocketError.
 */
const TERMINATION_ERRORS = [
  { type: 'PusherError', data: { code: 4009, message: TERMINATED } },
  { type: 'PusherError', data: { code: 4009, message: TERMINATED } },
  { type: 'WebSocketError', error: { type: 'PusherError', data: { code: 4009, message: TERMINATED } } },
];

async function expectTerminated(c) {
  await c.states.find((s) => s.current === 'disconnected', 'state disconnected');
  assert.deepEqual(
    c.frames.items.filter((f) => f.event === 'pusher:error'),
    [{ event: 'pusher:error', channel: undefined, data: { code: 4009, message: TERMINATED } }],
  );
  assert.deepEqual(c.errors.items, TERMINATION_ERRORS);
  assert.deepEqual(
    c.states.items.map((s) => s.current),
    ['connected', 'disconnected'], // 'connecting' happens inside the constructor
  );
  // 4000-4099 means "do not reconnect": pusher-js scheduled no retry and holds no socket
  assert.equal(c.pusher.connection.retryTimer ?? null, null);
  assert.equal(c.pusher.connection.connection, null);
  assert.equal(c.pusher.user.user_data, null);
}

async function expectUntouched(c) {
  await c.barrier();
  assert.equal(c.pusher.connection.state, 'connected');
  assert.deepEqual(c.errors.items, []);
}

test('Node terminateUserConnections closes that user\'s clients with 4009; pusher-js stays disconnected', async () => {
  const annId = h.uid('ann-');
  const bobId = h.uid('bob-');
  const ann1 = await signedIn('ann1', { id: annId });
  const ann2 = await signedIn('ann2', { id: annId });
  const bob = await signedIn('bob', { id: bobId });

  assert.deepEqual(await h.json(api.terminateUserConnections(annId)), {});
  for (const c of [ann1, ann2]) await expectTerminated(c);
  await expectUntouched(bob);

  // bob's session is intact: a user message still arrives
  await h.json(api.sendToUser(bobId, 'still-here', { ok: true }));
  assert.deepEqual(await bob.userEvents.next('still-here'), { event: 'still-here', data: { ok: true } });
  // and the terminated clients stayed down while that happened
  for (const c of [ann1, ann2]) {
    assert.equal(c.pusher.connection.state, 'disconnected');
    assert.equal(c.states.items.length, 2);
  }
});

test('Python terminate_user_connections (POST /users/{id}/terminate_connections) works too', async () => {
  const annId = h.uid('ann-');
  const ann = await signedIn('ann', { id: annId });
  const bob = await signedIn('bob', { id: h.uid('bob-') });

  assert.deepEqual(await h.pythonOk(server, [{ op: 'terminate_user_connections', args: [annId] }]), [{}]);
  await expectTerminated(ann);
  await expectUntouched(bob);
});

test('watchlist: offline on sign-in, online at the first connection, offline when the last one goes', async () => {
  const bobId = h.uid('bob-');
  const w = h.client(server, { name: 'watcher', signinAs: { id: h.uid('w-'), watchlist: [bobId] } });
  await w.connected();
  await w.signin();
  assert.deepEqual(await w.watchlist.next('initial offline'), { name: 'offline', user_ids: [bobId] });
  assert.deepEqual(watchlistFrames(w), [
    {
      event: 'pusher_internal:watchlist_events',
      channel: undefined,
      data: { events: [{ name: 'offline', user_ids: [bobId] }] },
    },
  ]);

  const bob1 = await signedIn('bob1', { id: bobId });
  assert.deepEqual(await w.watchlist.next('online'), { name: 'online', user_ids: [bobId] });

  // a second connection of bob: no event
  const bob2 = await signedIn('bob2', { id: bobId });
  await w.barrier();
  assert.equal(w.watchlist.items.length, 2);

  // bob's first connection goes; bob is still online. herald has no client-visible event for a
  // closed socket, so wait until REST shows the channel only bob1 was on as vacated (herald
  // leaves a closing socket's channels, then signs it out) before the barrier.
  const probe = h.uid('probe-');
  await bob1.subscribe(probe);
  bob1.disconnect();
  await h.eventually(
    async () => (await h.json(api.get({ path: `/channels/${probe}` }))).occupied === false,
    `${probe} vacated after bob1 disconnected`,
  );
  await w.barrier();
  assert.equal(w.watchlist.items.length, 2, `no event while bob2 is connected: ${JSON.stringify(w.watchlist.items)}`);

  // the last connection goes: offline
  bob2.disconnect();
  assert.deepEqual(await w.watchlist.next('offline'), { name: 'offline', user_ids: [bobId] });
  await w.barrier();
  assert.deepEqual(
    watchlistFrames(w).map((f) => f.data.events),
    [[{ name: 'offline', user_ids: [bobId] }], [{ name: 'online', user_ids: [bobId] }], [{ name: 'offline', user_ids: [bobId] }]],
  );
});

test('watchlist: a user already online is reported online at sign-in; a watcher is not told about itself', async () => {
  const annId = h.uid('ann-');
  const ghostId = h.uid('ghost-');
  await signedIn('ann', { id: annId });
  const wId = h.uid('w-');
  const w = h.client(server, { name: 'watcher', signinAs: { id: wId, watchlist: [annId, ghostId] } });
  await w.connected();
  await w.signin();
  assert.deepEqual(await w.watchlist.next('online'), { name: 'online', user_ids: [annId] });
  assert.deepEqual(await w.watchlist.next('offline'), { name: 'offline', user_ids: [ghostId] });
  assert.deepEqual(watchlistFrames(w), [
    {
      event: 'pusher_internal:watchlist_events',
      channel: undefined,
      data: { events: [{ name: 'online', user_ids: [annId] }, { name: 'offline', user_ids: [ghostId] }] },
    },
  ]);
  // someone watching w sees w online; w, not watching itself, gets nothing
  const w2 = await signedIn('w2', { id: h.uid('w2-'), watchlist: [wId] });
  assert.deepEqual(await w2.watchlist.next('w online'), { name: 'online', user_ids: [wId] });
  await w.barrier();
  assert.equal(w.watchlist.items.length, 2);
});

test('watchlist: no events when the app does not enable them', async () => {
  const bobId = h.uid('bob-');
  const w = h.client(server, {
    name: 'quiet watcher',
    app: server.apps.quiet,
    signinAs: { id: h.uid('w-'), watchlist: [bobId] },
  });
  await w.connected();
  await w.signin();
  await signedIn('bob', { id: bobId }, { app: server.apps.quiet });
  await w.barrier();
  assert.deepEqual(watchlistFrames(w), []);
  assert.deepEqual(w.watchlist.items, []);
});
