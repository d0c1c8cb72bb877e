'use strict';
// Client-side helpers: pusher-js clients that record everything they see, the Node and Python
// server SDKs, raw WebSockets, and bounded waits. Every wait has a deadline.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const Pusher = require('pusher-js'); // the Node build of pusher-js 8 (bundles tweetnacl)
const PusherServer = require('pusher'); // pusher-http-node 5
const WebSocket = require('ws');
const nacl = require('tweetnacl');

const { COMPAT_DIR, ENCRYPTION_MASTER_KEY_BASE64 } = require('./harness');

const WAIT = 5_000;
const SOCKET_ID = /^\d+\.\d+$/;

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Polls `cond` (sync or async) until it returns a truthy value, which it resolves with; rejects
 * after `timeout`. Only for server state that has no client-visible event (e.g. a socket that
 * pusher-js has closed); everything else waits for the event itself.
 */
async function eventually(cond, what, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20)); // poll interval, not synchronisation
  }
}

/** An append-only log with cursor-based waits: nothing that arrived early is missed. */
class Recorder {
  constructor(label) {
    this.label = label;
    this.items = [];
    this.cursor = 0;
    this.waiters = new Set();
  }

  push(item) {
    this.items.push(item);
    for (const w of [...this.waiters]) w();
  }

  /** Resolves with the first item at index >= `from` matching `pred`. */
  find(pred, what, { from = 0, timeout = WAIT } = {}) {
    const scan = () => {
      for (let i = from; i < this.items.length; i++) if (pred(this.items[i])) return { i, item: this.items[i] };
      return null;
    };
    const hit = scan();
    if (hit) return Promise.resolve(hit);
    let wake;
    const p = new Promise((resolve) => {
      wake = () => {
        const h = scan();
        if (h) resolve(h);
      };
      this.waiters.add(wake);
    });
    return withTimeout(p, timeout, `${what} (${this.label})`).finally(() => this.waiters.delete(wake));
  }

  /** The next item after the ones already taken with next(). */
  async next(what = 'the next item', timeout = WAIT) {
    const { i, item } = await this.find(() => true, what, { from: this.cursor, timeout });
    this.cursor = i + 1;
    return item;
  }
}

// ---------------------------------------------------------------------------------------------
// server SDKs

/** pusher-http-node configured for `app` on the test server (override e.g. { secret }). */
function sdk(server, app = server.apps.main, overrides = {}) {
  return new PusherServer({
    appId: app.id,
    key: app.key,
    secret: app.secret,
    host: server.host,
    port: String(server.port),
    useTLS: false,
    timeout: WAIT,
    encryptionMasterKeyBase64: ENCRYPTION_MASTER_KEY_BASE64,
    ...overrides,
  });
}

/** JSON body of a Node SDK response (a fetch Response). */
async function json(responsePromise) {
  const res = await withTimeout(Promise.resolve(responsePromise), WAIT, 'the REST response');
  return withTimeout(res.json(), WAIT, 'the REST response body');
}

const PYTHON = path.join(COMPAT_DIR, '.venv', 'bin', 'python');
const PY_SCRIPT = path.join(COMPAT_DIR, 'python', 'sdk_ops.py');

/**
 * Runs operations through pusher-http-python in a subprocess and returns one result per op:
 * `{ok: true, result}` or `{ok: false, error: '<exception class>', message}`.
 * ops: [{op: 'trigger', args: [...], kwargs: {...}}, ...]
 */
function python(server, ops, { app = server.apps.main, secret = app.secret, timeout = 20_000 } = {}) {
  if (!fs.existsSync(PYTHON)) {
    return Promise.reject(new Error(`${PYTHON} is missing: run compat/run once to create the virtualenv`));
  }
  const child = spawn(PYTHON, [PY_SCRIPT, JSON.stringify(ops)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      HERALD_HOST: server.host,
      HERALD_PORT: String(server.port),
      PUSHER_APP_ID: app.id,
      PUSHER_KEY: app.key,
      PUSHER_SECRET: secret,
      PUSHER_ENCRYPTION_MASTER_KEY_BASE64: ENCRYPTION_MASTER_KEY_BASE64,
    },
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c) => (err += c));
  const done = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`python exited with ${code}:\n${err}\n${out}`));
      try {
        resolve(JSON.parse(out));
      } catch (e) {
        reject(new Error(`python printed no JSON (${e.message}):\n${out}\n${err}`));
      }
    });
  });
  return withTimeout(done, timeout, `python ${ops.map((o) => o.op).join(',')}`).catch((e) => {
    child.kill('SIGKILL');
    throw e;
  });
}

/** Runs ops in Python and fails unless every one succeeded; returns the results. */
async function pythonOk(server, ops, options) {
  const results = await python(server, ops, options);
  results.forEach((r, i) => {
    if (!r.ok) throw new Error(`python op ${JSON.stringify(ops[i])} failed: ${r.error}: ${r.message}`);
  });
  return results.map((r) => r.result);
}

// ---------------------------------------------------------------------------------------------
// pusher-js clients

const openClients = new Set();

/**
 * pusher-js's Node transport (a bundled faye-websocket) arms a 30 s close timer when pusher-js
 * closes a socket the server has already closed, as it does after a refusal close code
 * (4000-4099, e.g. 4009). The timer does nothing but would keep the test process alive for 30 s,
 * so it is unref'd once the client is done.
 */
function releaseCloseTimers(c) {
  for (const s of c.transportSockets) if (s._closeTimer && s._closeTimer.unref) s._closeTimer.unref();
}

/**
 * A pusher-js client on the test server that records every frame it receives, its connection
 * states and its connection errors.
 *
 * options:
 *  - app: which app (default main)
 *  - user: {user_id, user_info} for presence channel auth
 *  - signer: the Node SDK used to sign (default: the app's correct credentials)
 *  - signSocketId: sign for this socket_id instead of the real one
 *  - policy(channelName): the app's own rule; return a string to refuse with that message
 *  - customHandler: replace the whole channel authorization handler
 *  - signinAs: user_data ({id, user_info, watchlist}) that pusher.signin() gets signed for,
 *    through the SDK's authenticateUser in a userAuthentication customHandler
 *  - pusherOptions: extra pusher-js options
 */
function client(server, options = {}) {
  const app = options.app || server.apps.main;
  const signer = options.signer || sdk(server, app);
  const authLog = new Recorder('auth requests');
  const handler =
    options.customHandler ||
    ((params, callback) => {
      authLog.push(params);
      const refusal = options.policy ? options.policy(params.channelName) : null;
      if (refusal) return callback(new Error(refusal), null);
      try {
        const socketId = options.signSocketId || params.socketId;
        const presence = params.channelName.startsWith('presence-') ? options.user : undefined;
        callback(null, signer.authorizeChannel(socketId, params.channelName, presence));
      } catch (e) {
        callback(e, null);
      }
    });
  // Answer asynchronously, like a real auth endpoint, so listeners bound right after
  // subscribe() see the outcome.
  const customHandler = (params, callback) => setImmediate(() => handler(params, callback));
  const signinLog = new Recorder('sign-in requests');
  const userAuthentication = {
    customHandler: (params, callback) =>
      setImmediate(() => {
        signinLog.push(params);
        if (!options.signinAs) return callback(new Error('this test client has no signinAs'), null);
        try {
          callback(null, signer.authenticateUser(params.socketId, options.signinAs));
        } catch (e) {
          callback(e, null);
        }
      }),
  };
  const pusher = new Pusher(app.key, {
    wsHost: server.host,
    wsPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    cluster: '',
    enableStats: false,
    nacl,
    channelAuthorization: { customHandler },
    userAuthentication,
    ...(options.pusherOptions || {}),
  });
  const c = {
    pusher,
    app,
    initialState: pusher.connection.state,
    frames: new Recorder(`frames of ${options.name || 'client'}`),
    states: new Recorder(`states of ${options.name || 'client'}`),
    errors: new Recorder(`connection errors of ${options.name || 'client'}`),
    /** pusher.user.watchlist 'online' / 'offline' events, as pusher-js emits them. */
    watchlist: new Recorder(`watchlist events of ${options.name || 'client'}`),
    /** {event, data} of every event pusher-js emits on pusher.user (sendToUser). */
    userEvents: new Recorder(`user events of ${options.name || 'client'}`),
    authLog,
    signinLog,
    /** pusher-js's transport sockets, one per connection (see releaseCloseTimers). */
    transportSockets: [],
    get socketId() {
      return pusher.connection.socket_id;
    },
    connected() {
      return c.states.find((s) => s.current === 'connected', 'state connected').then(() => c.socketId);
    },
    /**
     * Subscribes and waits for pusher:subscription_succeeded; rejects on an error first.
     * `binds` ({event: handler}) are bound before the subscription goes out, so events that
     * follow subscription_succeeded at once (pusher:cache_miss, pusher:subscription_count) are
     * not missed.
     */
    subscribe(name, binds = {}) {
      const channel = pusher.subscribe(name);
      for (const [event, fn] of Object.entries(binds)) channel.bind(event, fn);
      return withTimeout(
        new Promise((resolve, reject) => {
          channel.bind('pusher:subscription_succeeded', (members) => resolve({ channel, members }));
          channel.bind('pusher:subscription_error', (e) =>
            reject(new Error(`subscription_error on ${name}: ${JSON.stringify(e)}`)),
          );
          channel.bind('pusher:error', (e) => reject(new Error(`pusher:error on ${name}: ${JSON.stringify(e)}`)));
        }),
        WAIT,
        `subscription to ${name}`,
      ).then((r) => r.channel);
    },
    /** Records (data, metadata) of every `event` on `channelName` (pusher-js's own dispatch). */
    record(channelName, event) {
      const rec = new Recorder(`${event} on ${channelName}`);
      const ch = pusher.channel(channelName);
      if (!ch) throw new Error(`record(): subscribe to ${channelName} first`);
      ch.bind(event, (data, metadata) => rec.push({ data, metadata }));
      return rec;
    },
    /** Raw frames (as decoded by pusher-js) for one channel, with an optional event filter. */
    framesFor(channelName, event) {
      return c.frames.items.filter((f) => f.channel === channelName && (!event || f.event === event));
    },
    /**
     * Barrier: sends pusher:ping and waits for the pong. herald handles a connection's frames in
     * order and enqueues deliveries synchronously, so anything caused before (by this socket or
     * by a REST call that has returned) is already received when the pong arrives.
     */
    async barrier() {
      const from = c.frames.items.length;
      pusher.send_event('pusher:ping', {});
      await c.frames.find((f) => f.event === 'pusher:pong', 'pusher:pong (barrier)', { from });
    },
    /**
     * pusher.signin() and waits for pusher:signin_success and for pusher-js's own subscription
     * to #server-to-user-<id>. Resolves with the signin_success frame.
     */
    async signin() {
      const from = c.frames.items.length;
      pusher.signin();
      const { item: ok } = await c.frames.find(
        (f) => f.event === 'pusher:signin_success' || f.event === 'pusher:error',
        'pusher:signin_success',
        { from },
      );
      if (ok.event !== 'pusher:signin_success') throw new Error(`sign-in refused: ${JSON.stringify(ok)}`);
      const userChannel = `#server-to-user-${options.signinAs.id}`;
      await c.frames.find(
        (f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === userChannel,
        `subscription_succeeded on ${userChannel}`,
        { from },
      );
      return ok;
    },
    disconnect() {
      pusher.disconnect();
      releaseCloseTimers(c);
      openClients.delete(c);
    },
  };
  pusher.connection.bind('message', (ev) => c.frames.push(ev));
  pusher.connection.bind('state_change', (s) => c.states.push(s));
  pusher.connection.bind('connected', () => {
    const conn = pusher.connection.connection;
    if (conn && conn.transport && conn.transport.socket) c.transportSockets.push(conn.transport.socket);
  });
  pusher.connection.bind('error', (e) => c.errors.push(e));
  pusher.user.watchlist.bind('online', (e) => c.watchlist.push(e));
  pusher.user.watchlist.bind('offline', (e) => c.watchlist.push(e));
  pusher.user.bind_global((event, data) => c.userEvents.push({ event, data }));
  openClients.add(c);
  return c;
}

/** Disconnects every pusher-js client still open (call in `after`). */
function closeAllClients() {
  for (const c of openClients) {
    try {
      c.pusher.disconnect();
      releaseCloseTimers(c);
    } catch {}
  }
  openClients.clear();
}

// ---------------------------------------------------------------------------------------------
// raw WebSocket (the `ws` package) for exact frames and close codes

const openSockets = new Set();

/** Opens ws://host:port{pathAndQuery}; frames are recorded as {raw, json}. */
async function rawSocket(server, pathAndQuery, protocols) {
  const ws = new WebSocket(`${server.wsUrl}${pathAndQuery}`, protocols);
  openSockets.add(ws);
  const frames = new Recorder(`raw frames of ${pathAndQuery}`);
  const closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => {
      openSockets.delete(ws);
      resolve({ code, reason: reason.toString('utf8') });
    });
  });
  ws.on('message', (data, isBinary) => {
    const raw = data.toString('utf8');
    let parsed;
    try {
      parsed = JSON.parse(raw);
    } catch {
      parsed = undefined;
    }
    frames.push({ raw, json: parsed, isBinary });
  });
  await withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (_, res) => reject(new Error(`HTTP ${res.statusCode} instead of an upgrade`)));
    }),
    WAIT,
    `WebSocket upgrade of ${pathAndQuery}`,
  );
  return {
    ws,
    frames,
    closed: () => withTimeout(closed, WAIT, `close of ${pathAndQuery}`),
    send: (obj) => ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)),
    next: (what) => frames.next(what),
    close: () => ws.close(),
  };
}

function closeAllSockets() {
  for (const ws of openSockets) {
    try {
      ws.terminate();
    } catch {}
  }
  openSockets.clear();
}

/** after() hook body: close clients, then stop the server. */
async function teardown(server) {
  closeAllClients();
  closeAllSockets();
  if (server) await server.stop();
}

/** Unique channel-name suffix so tests in one file never share a channel. */
let seq = 0;
function uid(prefix) {
  seq += 1;
  return `${prefix}${seq}-${process.pid}`;
}

module.exports = {
  Pusher,
  PusherServer,
  Recorder,
  SOCKET_ID,
  WAIT,
  client,
  closeAllClients,
  eventually,
  json,
  python,
  pythonOk,
  rawSocket,
  sdk,
  teardown,
  uid,
  withTimeout,
};
