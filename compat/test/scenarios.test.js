'use strict';
// Seed scenarios from herald's users, end to end with pusher-js and both server SDKs.

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

/** Application events a client saw on a channel (no pusher:/pusher_internal: frames). */
const appEvents = (c, ch) =>
  c.framesFor(ch).filter((f) => !f.event.startsWith('pusher')).map((f) => ({ event: f.event, data: f.data }));

test('hotel: clock-status-updated on hotel-<slug> reaches every staff client of that hotel only', async () => {
  const run = h.uid('');
  const grand = `hotel-grand-${run}`;
  const seaside = `hotel-seaside-${run}`;
  const grandStaff = ['ann', 'bob', 'cid'].map((n) => h.client(server, { name: `grand/${n}` }));
  const seasideStaff = ['dee', 'eve'].map((n) => h.client(server, { name: `seaside/${n}` }));
  const recs = new Map();
  for (const c of grandStaff) {
    await c.subscribe(grand);
    recs.set(c, c.record(grand, 'clock-status-updated'));
  }
  for (const c of seasideStaff) {
    await c.subscribe(seaside);
    recs.set(c, c.record(seaside, 'clock-status-updated'));
  }

  const annIn = { staff_id: 11, name: 'Ann', status: 'clocked_in', at: '2024-05-01T08:00:00Z' };
  const bobOut = { staff_id: 12, name: 'Bob', status: 'clocked_out', at: '2024-05-01T16:30:00Z' };
  await h.json(api.trigger(grand, 'clock-status-updated', annIn));
  await h.pythonOk(server, [{ op: 'trigger', args: [grand, 'clock-status-updated', bobOut] }]);
  for (const c of grandStaff) {
    assert.deepEqual((await recs.get(c).next()).data, annIn);
    assert.deepEqual((await recs.get(c).next()).data, bobOut);
  }
  // Seaside's own update is the first thing its staff see: grand's never reached them.
  const deeIn = { staff_id: 21, name: 'Dee', status: 'clocked_in', at: '2024-05-01T09:00:00Z' };
  await h.json(api.trigger(seaside, 'clock-status-updated', deeIn));
  for (const c of seasideStaff) {
    assert.deepEqual((await recs.get(c).next()).data, deeIn);
    assert.deepEqual(
      c.frames.items.filter((f) => f.event === 'clock-status-updated').map((f) => f.data),
      [deeIn],
    );
  }
  for (const c of grandStaff) {
    await c.barrier();
    assert.deepEqual(appEvents(c, grand).map((e) => e.data), [annIn, bobOut]);
    assert.deepEqual(appEvents(c, seaside), []);
  }
});

/** The app's channel policy: a user may only open their own private-user.<id> channel. */
const ownUserChannel = (id) => (channelName) =>
  channelName === `private-user.${id}` ? null : `403: user ${id} may not subscribe to ${channelName}`;

test('per-user notifications on private-user.<id> reach only that user', async () => {
  const run = h.uid('');
  const ids = [`${run}1`, `${run}2`, `${run}3`];
  const users = ids.map((id) => h.client(server, { name: `user ${id}`, policy: ownUserChannel(id) }));
  const recs = [];
  for (const [i, c] of users.entries()) {
    await c.subscribe(`private-user.${ids[i]}`);
    recs.push(c.record(`private-user.${ids[i]}`, 'notification'));
  }
  // user 1 cannot listen in on user 2
  const peek = users[0].pusher.subscribe(`private-user.${ids[1]}`);
  const refused = await h.withTimeout(
    new Promise((resolve) => peek.bind('pusher:subscription_error', resolve)),
    h.WAIT,
    'subscription_error for the peek',
  );
  assert.deepEqual(refused, { type: 'AuthError', error: `403: user ${ids[0]} may not subscribe to private-user.${ids[1]}` });

  const toUser2 = { id: 'n-1', type: 'shift_swap_approved', text: 'Your swap for Friday was approved' };
  const toUser3 = { id: 'n-2', type: 'payslip_ready', text: 'Your May payslip is ready' };
  await h.json(api.trigger(`private-user.${ids[1]}`, 'notification', toUser2));
  await h.pythonOk(server, [{ op: 'trigger', args: [`private-user.${ids[2]}`, 'notification', toUser3] }]);
  // a marker to everyone, after the real notifications
  await h.json(api.trigger(ids.map((id) => `private-user.${id}`), 'notification', { type: 'marker' }));

  const expected = [[{ type: 'marker' }], [toUser2, { type: 'marker' }], [toUser3, { type: 'marker' }]];
  for (const [i, rec] of recs.entries()) {
    const got = [];
    for (let k = 0; k < expected[i].length; k++) got.push((await rec.next(`notification ${k} of user ${i + 1}`)).data);
    assert.deepEqual(got, expected[i], `user ${i + 1}`);
    await users[i].barrier();
    assert.deepEqual(
      users[i].frames.items.filter((f) => f.event === 'notification').map((f) => f.data),
      expected[i],
      `user ${i + 1} saw nothing else`,
    );
  }
});

test('leave request escalates employee → line manager → HR → employee, each step only to its party, in order', async () => {
  const run = h.uid('');
  const ids = { employee: `e${run}`, manager: `m${run}`, hr: `h${run}` };
  const chan = (who) => `private-user.${ids[who]}`;
  const timeline = [];
  const parties = {};
  for (const who of Object.keys(ids)) {
    parties[who] = h.client(server, { name: who, policy: ownUserChannel(ids[who]) });
    await parties[who].subscribe(chan(who));
    parties[who].pusher.channel(chan(who)).bind_global((event, data) => {
      if (!event.startsWith('pusher:')) timeline.push({ who, event, data });
    });
  }

  // The "backend": each party's client reacts by calling it, as the app's UI would.
  const request = { leave_id: `L-${run}`, employee: ids.employee, from: '2024-07-01', to: '2024-07-05' };
  const backend = {
    submit: () => h.json(api.trigger(chan('manager'), 'leave.requested', { ...request, step: 1 })),
    managerApproves: () =>
      h.json(api.trigger(chan('hr'), 'leave.escalated', { leave_id: request.leave_id, approved_by: ids.manager, step: 2 })),
    hrApproves: () =>
      h.pythonOk(server, [
        {
          op: 'trigger',
          args: [chan('employee'), 'leave.decided', { leave_id: request.leave_id, status: 'approved', step: 3 }],
        },
      ]),
  };
  const failures = [];
  parties.manager.pusher.channel(chan('manager')).bind('leave.requested', () => backend.managerApproves().catch((e) => failures.push(e)));
  parties.hr.pusher.channel(chan('hr')).bind('leave.escalated', () => backend.hrApproves().catch((e) => failures.push(e)));
  const decided = parties.employee.record(chan('employee'), 'leave.decided');

  await backend.submit();
  assert.deepEqual((await decided.next('the decision', 15_000)).data, {
    leave_id: request.leave_id,
    status: 'approved',
    step: 3,
  });
  assert.deepEqual(failures, []);
  assert.deepEqual(
    timeline.map((t) => `${t.who}:${t.event}:${t.data.step}`),
    ['manager:leave.requested:1', 'hr:leave.escalated:2', 'employee:leave.decided:3'],
  );
  for (const who of Object.keys(ids)) {
    await parties[who].barrier();
    const others = Object.keys(ids).filter((o) => o !== who);
    assert.equal(appEvents(parties[who], chan(who)).length, 1, `${who} got exactly its own step`);
    for (const o of others) assert.deepEqual(appEvents(parties[who], chan(o)), [], `${who} saw nothing of ${o}`);
  }
});

test("unit isolation: a unit A user cannot subscribe to unit B's private channel", async () => {
  const run = h.uid('');
  const unitA = `private-unit.A${run}`;
  const unitB = `private-unit.B${run}`;
  const onlyUnit = (ch) => (name) => (name === ch ? null : `Forbidden: not a member of ${name.slice('private-unit.'.length)}`);
  const bob = h.client(server, { name: 'bob (unit B)', policy: onlyUnit(unitB) });
  await bob.subscribe(unitB);
  const bobRec = bob.record(unitB, 'unit.alert');

  // 1) the app's auth handler refuses: pusher-js emits pusher:subscription_error locally
  let mode = 'policy';
  const alice = h.client(server, {
    name: 'alice (unit A)',
    customHandler: (p, cb) => {
      if (mode === 'policy') {
        const refusal = onlyUnit(unitA)(p.channelName);
        return refusal ? cb(new Error(refusal), null) : cb(null, api.authorizeChannel(p.socketId, p.channelName));
      }
      // 2) a forged auth: alice's valid signature for her own unit, presented for unit B
      return cb(null, api.authorizeChannel(p.socketId, unitA));
    },
  });
  await alice.subscribe(unitA);
  const bChannel = alice.pusher.subscribe(unitB);
  const subErr = await h.withTimeout(
    new Promise((resolve) => bChannel.bind('pusher:subscription_error', resolve)),
    h.WAIT,
    'pusher:subscription_error',
  );
  assert.deepEqual(subErr, { type: 'AuthError', error: `Forbidden: not a member of B${run}` });
  assert.equal(bChannel.subscribed, false);
  await alice.barrier();
  assert.equal(alice.errors.items.length, 0, 'refused locally: nothing was sent to the server');

  mode = 'forge';
  alice.pusher.subscribe(unitB); // pusher-js retries the subscription after an auth error
  const err = await alice.errors.next('the server refusal of the forged auth');
  assert.equal(err.data.code, null);
  assert.equal(
    err.data.message.split(', but got')[0],
    `Invalid signature: Expected HMAC SHA256 hex digest of ${alice.socketId}:${unitB}`,
  );

  // 3) a made-up signature from another client
  const mallory = h.client(server, {
    name: 'mallory',
    customHandler: (p, cb) => cb(null, { auth: `${server.apps.main.key}:${'ab'.repeat(32)}` }),
  });
  mallory.pusher.subscribe(unitB);
  const err3 = await mallory.errors.next('the server refusal of the made-up auth');
  assert.match(err3.data.message, /^Invalid signature/);

  assert.deepEqual(await h.json(api.get({ path: `/channels/${unitB}`, params: { info: 'subscription_count' } })), {
    occupied: true,
    subscription_count: 1, // bob only
  });
  const alert = { unit: 'B', text: 'Fire drill at 14:00' };
  await h.json(api.trigger(unitB, 'unit.alert', alert));
  assert.deepEqual((await bobRec.next()).data, alert);
  for (const c of [alice, mallory]) {
    await c.barrier();
    assert.deepEqual(appEvents(c, unitB), [], `${c === alice ? 'alice' : 'mallory'} got nothing of unit B`);
  }
  // alice still gets her own unit's events
  const aliceRec = alice.record(unitA, 'unit.alert');
  await h.json(api.trigger(unitA, 'unit.alert', { unit: 'A' }));
  assert.deepEqual((await aliceRec.next()).data, { unit: 'A' });
});
