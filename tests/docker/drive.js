'use strict';
// Drives docker-compose.example.yml through nginx with real pusher-js clients and the Node
// `pusher` SDK; run by tests/docker/smoke (which passes the SMOKE_* environment) after
// `docker-compose up`. Node identities are only read from each node's /metrics (the container's
// address on the compose network): every client and every trigger goes through nginx.
//
// 1. clients connect one at a time; private and presence channels across both nodes, a trigger
//    through nginx reaches every client on both channels, a client event crosses nodes;
// 2. `docker kill` node A: its clients reconnect through nginx to B, the presence member of a
//    client that does not come back is removed within the node timeout, events keep flowing;
// 3. `docker stop` node B: every socket is closed with 4100, spread over drain_seconds, and the
//    container exits 0 within the stop grace period.
// Writes what it measured to $SMOKE_RESULTS (JSON: label -> text).

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const assert = require('node:assert/strict');
const Pusher = require('pusher-js');
const PusherServer = require('pusher');
const WebSocket = require('ws');

function env(k) {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
}
const PORT = Number(env('SMOKE_HTTP_PORT'));
const DOCKER = env('SMOKE_DOCKER');
const NODES = {
  a: { ip: env('SMOKE_A_IP'), container: env('SMOKE_A_CONTAINER') },
  b: { ip: env('SMOKE_B_IP'), container: env('SMOKE_B_CONTAINER') },
};
const NODE_TIMEOUT_MS = Number(env('SMOKE_NODE_TIMEOUT_MS'));
const DRAIN_MS = Number(env('SMOKE_DRAIN_SECONDS')) * 1000;
const GRACE_MS = Number(env('SMOKE_STOP_GRACE_SECONDS')) * 1000;
const KEY = process.env.HERALD_APP_KEY || 'my-app-key';
const SECRET = env('HERALD_APP_SECRET');
const results = {};
const t0 = Date.now();

function log(msg) {
  console.log(`  [${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}`);
}

/** Polls `cond` until it returns a truthy value (which it resolves with); fails after `ms`. */
async function until(cond, what, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function docker(...args) {
  return new Promise((resolve, reject) =>
    execFile(DOCKER, args, (err, stdout, stderr) => (err ? reject(new Error(`docker ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout.trim()))),
  );
}

/** herald_connections of one node, from its metrics listener (inside the compose network). */
function connections(node) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: NODES[node].ip, port: 9601, path: '/metrics', timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        const m = /^herald_connections (\d+)$/m.exec(body);
        m ? resolve(Number(m[1])) : reject(new Error(`no herald_connections in node ${node}'s metrics`));
      });
    });
    req.on('timeout', () => req.destroy(new Error(`node ${node}'s metrics timed out`)));
    req.on('error', reject);
  });
}
async function bothConnections() {
  return { a: await connections('a'), b: await connections('b') };
}

// The Node SDK, through nginx.
const api = new PusherServer({ appId: '1001', key: KEY, secret: SECRET, host: '127.0.0.1', port: String(PORT), useTLS: false });

const uid = Math.random().toString(36).slice(2, 8);
const PRIVATE = `private-smoke-${uid}`;
const PRESENCE = `presence-smoke-${uid}`;

/** A pusher-js client through nginx that records states, errors, events and presence changes. */
function client(name, { channels = true } = {}) {
  const c = { name, user: `user-${name}`, node: null, states: [], errors: [], events: [], members: [], subscribed: [] };
  c.p = new Pusher(KEY, {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: PORT,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        try {
          const data = channelName.startsWith('presence-') ? { user_id: c.user, user_info: { name } } : undefined;
          callback(null, api.authorizeChannel(socketId, channelName, data));
        } catch (e) {
          callback(e, null);
        }
      },
    },
  });
  c.p.connection.bind('state_change', ({ current }) => {
    c.states.push({ t: Date.now(), state: current, socketId: c.p.connection.socket_id });
    if (c.onState) c.onState(current);
  });
  c.p.connection.bind('error', (e) => c.errors.push({ t: Date.now(), code: e && e.data ? e.data.code : undefined }));
  for (const ch of channels ? [PRIVATE, PRESENCE] : []) {
    const channel = c.p.subscribe(ch);
    channel.bind('pusher:subscription_succeeded', () => c.subscribed.push({ t: Date.now(), ch }));
    channel.bind('pusher:subscription_error', (e) => c.errors.push({ t: Date.now(), ch, status: e && e.status }));
    channel.bind_global((event, data) => {
      if (!event.startsWith('pusher:') && !event.startsWith('pusher_internal:')) c.events.push({ t: Date.now(), ch, event, data });
    });
  }
  if (!channels) return c;
  const presence = c.p.channel(PRESENCE);
  presence.bind('pusher:member_added', (m) => c.members.push({ t: Date.now(), op: 'added', id: m.id }));
  presence.bind('pusher:member_removed', (m) => c.members.push({ t: Date.now(), op: 'removed', id: m.id }));
  c.memberIds = () => {
    const ids = [];
    presence.members.each((m) => ids.push(m.id));
    return ids.sort();
  };
  c.subscribedSince = (t) =>
    [PRIVATE, PRESENCE].every((ch) => c.subscribed.some((s) => s.ch === ch && s.t >= t)) &&
    [PRIVATE, PRESENCE].map((ch) => c.subscribed.filter((s) => s.ch === ch && s.t >= t).pop().t);
  return c;
}

/** Triggers `event` on both channels through nginx; every client in `clients` receives it on both. */
async function triggerReachesAll(clients, event, what) {
  const data = { n: Math.random() };
  const res = await api.trigger([PRIVATE, PRESENCE], event, data);
  assert.equal(res.status, 200, `trigger through nginx: HTTP ${res.status}`);
  await until(
    () => clients.every((c) => [PRIVATE, PRESENCE].every((ch) => c.events.some((e) => e.ch === ch && e.event === event && e.data.n === data.n))),
    `${what}: "${event}" on both channels at ${clients.map((c) => c.name).join(', ')}`,
  );
  for (const c of clients) {
    for (const ch of [PRIVATE, PRESENCE]) {
      const n = c.events.filter((e) => e.ch === ch && e.event === event).length;
      assert.equal(n, 1, `${c.name} received "${event}" on ${ch} ${n} times`);
    }
  }
}

/** A raw WebSocket through nginx, resolved once herald said connection_established. */
async function rawSocket() {
  const ws = new WebSocket(`ws://127.0.0.1:${PORT}/app/${KEY}?protocol=7&client=smoke&version=1`);
  const r = { ws, close: null, frames: [] };
  ws.on('close', (code) => (r.close = { code, t: Date.now() }));
  ws.on('message', (m) => r.frames.push(JSON.parse(m)));
  await until(() => r.frames.length > 0 || r.close, 'a raw socket through nginx connected');
  const hello = r.frames[0];
  assert.equal(hello && hello.event, 'pusher:connection_established', `raw socket: ${JSON.stringify(hello)}`);
  r.socketId = JSON.parse(hello.data).socket_id;
  return r;
}

async function restUsers() {
  const res = await api.get({ path: `/channels/${PRESENCE}/users` });
  assert.equal(res.status, 200, `GET users through nginx: HTTP ${res.status}`);
  return (await res.json()).users.map((u) => u.id).sort();
}

async function main() {
  // --- 1. connect one at a time: each client's node, from the metrics -------------------------
  const clients = [];
  while (clients.filter((c) => c.node === 'a').length < 2 || clients.filter((c) => c.node === 'b').length < 2) {
    assert.ok(clients.length < 12, `nginx sent ${clients.length} clients to only one node`);
    const before = await bothConnections();
    const c = client(`c${clients.length}`);
    await until(() => c.p.connection.state === 'connected', `${c.name} connected through nginx`);
    const after = await until(async () => {
      const now = await bothConnections();
      return now.a + now.b === before.a + before.b + 1 && now;
    }, `${c.name}'s connection in one node's herald_connections`);
    c.node = after.a > before.a ? 'a' : 'b';
    clients.push(c);
  }
  log(`${clients.length} pusher-js clients through nginx: ${clients.map((c) => `${c.name}→${c.node}`).join(' ')}`);

  // The ghost: a raw socket on node A in the presence channel, which does not reconnect when A
  // dies; only the survivors' node timeout can remove its member.
  let ghost;
  for (let i = 0; !ghost; i++) {
    assert.ok(i < 6, 'no raw socket landed on node A');
    const before = await bothConnections();
    const r = await rawSocket();
    const after = await until(async () => {
      const now = await bothConnections();
      return now.a + now.b === before.a + before.b + 1 && now;
    }, "the raw socket's connection in one node's herald_connections");
    if (after.a > before.a) {
      ghost = r;
    } else {
      r.ws.close();
      await until(async () => {
        const now = await bothConnections();
        return now.a + now.b === before.a + before.b;
      }, 'the raw socket on node B closed');
    }
  }
  ghost.user = 'user-ghost';
  const channelData = JSON.stringify({ user_id: ghost.user, user_info: { name: 'ghost' } });
  const { auth } = api.authorizeChannel(ghost.socketId, PRESENCE, { user_id: ghost.user, user_info: { name: 'ghost' } });
  ghost.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: PRESENCE, auth, channel_data: channelData } }));
  await until(() => ghost.frames.some((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === PRESENCE), 'the ghost in the presence channel');

  await until(() => clients.every((c) => c.subscribedSince(0)), 'every client subscribed to the private and presence channels');
  const everyone = [...clients.map((c) => c.user), ghost.user].sort();
  await until(
    () => clients.every((c) => JSON.stringify(c.memberIds()) === JSON.stringify(everyone)),
    `every client seeing all ${everyone.length} presence members (both nodes)`,
  );
  assert.deepEqual(await restUsers(), everyone, 'REST users of the presence channel through nginx');
  log(`private and presence channels across both nodes: ${everyone.length} members seen by every client and by REST`);

  await triggerReachesAll(clients, 'smoke-before', 'a trigger through nginx before the kill');
  const sender = clients.find((c) => c.node === 'a');
  sender.p.channel(PRIVATE).trigger('client-hello', { from: sender.name });
  const others = clients.filter((c) => c !== sender);
  await until(
    () => others.every((c) => c.events.some((e) => e.event === 'client-hello' && e.ch === PRIVATE)),
    'the client event from node A at every other client',
  );
  log(`trigger through nginx reached every client on both channels; ${sender.name}'s client event reached both nodes`);

  // --- 2. docker kill node A ---------------------------------------------------------------------
  const onA = clients.filter((c) => c.node === 'a');
  const onB = clients.filter((c) => c.node === 'b');
  const movers = onA;
  const tKill = Date.now();
  await docker('kill', NODES.a.container);
  const killMs = Date.now() - tKill;
  log(`docker kill herald-a returned after ${killMs} ms (pusher-js ${onA.map((c) => c.name).join(', ')} and the ghost there)`);

  const resubscribed = await until(
    () => {
      const t = movers.map((c) => c.subscribedSince(tKill));
      return t.every(Boolean) && t.map((ts) => Math.max(...ts));
    },
    'node A’s clients reconnected through nginx and resubscribed',
    30_000,
  );
  // from docker kill to resubscribed on node B: pusher-js itself waits 1 s after a lost connection
  // before it reconnects; a reconnect that nginx tries on the dead node first adds its connect
  // timeout
  const fromKill = resubscribed.map((t) => t - tKill);
  for (const c of movers) {
    assert.equal(c.p.connection.state, 'connected');
    assert.notEqual(c.states.filter((s) => s.state === 'connected').pop().socketId, c.states.find((s) => s.state === 'connected').socketId);
  }
  const nowConnections = await connections('b');
  assert.equal(nowConnections, onB.length + movers.length, `node B's connections after the reconnects`);
  log(`node A's clients back on node B through nginx, resubscribed ${fromKill.join(', ')} ms after docker kill`);
  results['reconnect gap'] = `${Math.min(...fromKill)} to ${Math.max(...fromKill)} ms from docker kill to resubscribed on the other node (pusher-js waits 1 s before reconnecting; nginx's 2 s connect timeout when it tries the dead node first)`;

  // nginx still sends every other new connection to node A's vanished address until it marks it
  // failed: requests must not wait long for that (nginx's default connect timeout is 60 s)
  const latencies = [];
  for (let i = 0; i < 6; i++) {
    const t = Date.now();
    const res = await api.get({ path: '/channels' });
    assert.equal(res.status, 200, `GET /channels through nginx after the kill: HTTP ${res.status}`);
    latencies.push(Date.now() - t);
  }
  const late = Date.now();
  const newcomer = client('late', { channels: false });
  await until(() => newcomer.p.connection.state === 'connected', 'a new client connected through nginx after the kill');
  latencies.push(Date.now() - late);
  newcomer.p.disconnect();
  assert.ok(Math.max(...latencies) < 5000, `requests through nginx after the kill took ${latencies.join(', ')} ms`);
  const stateA = JSON.parse(await docker('inspect', '-f', '{{json .State}}', NODES.a.container));
  log(`REST requests and a new connection through nginx after the kill: ${latencies.join(', ')} ms; herald-a ${stateA.Status} (docker kill is a manual stop: the restart policy leaves it)`);
  results['requests after the kill'] = `worst ${Math.max(...latencies)} ms (6 REST calls and a new pusher-js connection through nginx, one node dead)`;

  // node B's own clients, subscribed all along, are told; the movers resubscribed to node B, whose
  // member list drops the ghost by the same reap
  const survivors = clients;
  const removed = await until(
    () => onB.every((c) => c.members.some((m) => m.op === 'removed' && m.id === ghost.user && m.t >= tKill)) &&
      onB.map((c) => c.members.find((m) => m.op === 'removed' && m.id === ghost.user).t),
    `member_removed for ${ghost.user} (node A's socket that did not come back) at node B's clients`,
    NODE_TIMEOUT_MS + 10_000,
  );
  const cleanup = Math.max(...removed) - tKill;
  assert.ok(cleanup <= NODE_TIMEOUT_MS + 3000, `presence cleaned up ${cleanup} ms after the kill (node timeout ${NODE_TIMEOUT_MS} ms)`);
  const remaining = clients.map((c) => c.user).sort();
  await until(
    () => survivors.every((c) => JSON.stringify(c.memberIds()) === JSON.stringify(remaining)),
    'every survivor seeing exactly the surviving members',
  );
  assert.deepEqual(await restUsers(), remaining, 'REST users after the cleanup');
  const flicker = clients.flatMap((c) => c.members.filter((m) => m.t >= tKill && m.op === 'removed' && m.id !== ghost.user));
  if (flicker.length) {
    for (const c of clients) {
      const seen = c.members.filter((m) => m.t >= tKill).map((m) => `${m.op} ${m.id} +${m.t - tKill} ms`);
      log(`  ${c.name} (${c.node}, ${c.user}) after the kill: ${seen.join('; ') || 'nothing'}`);
    }
    for (const c of movers) log(`  ${c.name} resubscribed +${Math.max(...c.subscribedSince(tKill)) - tKill} ms`);
    // a mover back within the node timeout never left: a member_removed for it is wrong
    assert.ok(Math.max(...fromKill) >= NODE_TIMEOUT_MS, 'member_removed for users that reconnected within the node timeout');
  }
  log(`presence: ${ghost.user} removed ${cleanup} ms after the kill (node timeout ${NODE_TIMEOUT_MS} ms); members and REST users agree${flicker.length ? ` (movers flickered: ${flicker.length} member_removed)` : ''}`);
  results['presence cleanup'] = `${cleanup} ms after docker kill (node_timeout_ms ${NODE_TIMEOUT_MS})`;

  await triggerReachesAll(survivors, 'smoke-after-kill', 'a trigger through nginx after the kill');
  log('a trigger through nginx after the kill reached every survivor on both channels');

  // --- 3. docker stop node B: the drain ------------------------------------------------------------
  const raw = [];
  for (let i = 0; i < 12; i++) raw.push(await rawSocket());
  const expected = survivors.length + raw.length;
  await until(async () => (await connections('b')) === expected, `node B's herald_connections at ${expected} (every socket there) before the stop`);
  for (const c of survivors) c.errors.length = 0;
  const tStop = Date.now();
  const stopped = docker('stop', NODES.b.container).then(() => Date.now());
  log(`docker stop herald-b with ${survivors.length} pusher-js clients and ${raw.length} raw sockets on it`);
  const tStopped = await stopped;
  const stopMs = tStopped - tStop;
  await until(() => raw.every((r) => r.close), 'every raw socket closed');
  const codes = [...new Set(raw.map((r) => r.close.code))];
  assert.deepEqual(codes, [4100], `raw sockets' close codes during the drain: ${codes}`);
  const closedAt = raw.map((r) => r.close.t - tStop).sort((x, y) => x - y);
  const spread = closedAt[closedAt.length - 1] - closedAt[0];
  await until(() => survivors.every((c) => c.errors.length > 0), 'every pusher-js client told of its close');
  const firstCodes = [...new Set(survivors.map((c) => c.errors[0].code))];
  assert.deepEqual(firstCodes, [4100], `pusher-js clients' first close code: ${firstCodes}`);
  assert.ok(closedAt[closedAt.length - 1] <= DRAIN_MS + 2000, `last close ${closedAt[closedAt.length - 1]} ms after the stop (drain_seconds ${DRAIN_MS / 1000})`);
  assert.ok(spread >= DRAIN_MS / 4, `closes spread over only ${spread} ms (drain_seconds ${DRAIN_MS / 1000})`);
  assert.ok(stopMs < GRACE_MS, `docker stop took ${stopMs} ms (stop grace period ${GRACE_MS / 1000} s)`);
  const state = JSON.parse(await docker('inspect', '-f', '{{json .State}}', NODES.b.container));
  assert.equal(state.ExitCode, 0, `herald-b's exit code after docker stop`);
  log(`drain: ${raw.length} raw sockets closed with 4100 from ${closedAt[0]} to ${closedAt[closedAt.length - 1]} ms after docker stop; pusher-js clients saw 4100; docker stop returned after ${stopMs} ms, exit code 0`);
  results['drain'] = `closes with 4100 spread over ${spread} ms (first ${closedAt[0]} ms, last ${closedAt[closedAt.length - 1]} ms; drain_seconds ${DRAIN_MS / 1000}); docker stop ${stopMs} ms (grace ${GRACE_MS / 1000} s), exit 0`;

  for (const c of clients) c.p.disconnect();
  for (const r of raw) r.ws.terminate();
  fs.writeFileSync(env('SMOKE_RESULTS'), JSON.stringify(results, null, 2));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`drive.js: ${e.stack || e}`);
    process.exit(1);
  },
);
