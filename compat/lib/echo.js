'use strict';
// Laravel Echo 2 (broadcaster 'pusher', with pusher-js passed in) on a test server, recording the
// frames its pusher-js connection receives. Call loadEcho() once (in `before`) first.

const h = require('./clients');

let Echo = null;
const open = new Set();

/**
 * ESM import: laravel-echo 2.5's `require` entry (dist/echo.common.js) uses `exports` inside a
 * "type": "module" package, so Node cannot load it with require().
 */
async function loadEcho() {
  if (!Echo) Echo = (await import('laravel-echo')).default;
  return Echo;
}

/**
 * An Echo instance on `server`. `user` is the Laravel user ({id, name}) for presence channels;
 * `signer` is the Node SDK that signs (default: the app's correct credentials); authStyle picks
 * the pusher-js hook: 'customHandler' (channelAuthorization) or 'authorizer' (the form Laravel's
 * docs show). Adds e.frames (Recorder), e.connected() and e.barrier() (ping/pong).
 */
function echo(server, name, { user, signer, app = server.apps.main, authStyle = 'customHandler' } = {}) {
  if (!Echo) throw new Error('echo(): call loadEcho() first');
  const api = signer || h.sdk(server, app);
  const sign = (socketId, channelName) =>
    api.authorizeChannel(
      socketId,
      channelName,
      channelName.startsWith('presence-') ? { user_id: user.id, user_info: user } : undefined,
    );
  const auth =
    authStyle === 'authorizer'
      ? {
          authorizer: (channel) => ({
            authorize: (socketId, callback) => callback(null, sign(socketId, channel.name)),
          }),
        }
      : { channelAuthorization: { customHandler: (p, cb) => cb(null, sign(p.socketId, p.channelName)) } };
  const e = new Echo({
    broadcaster: 'pusher',
    key: app.key,
    Pusher: h.Pusher,
    wsHost: server.host,
    wsPort: server.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    cluster: '',
    enableStats: false,
    ...auth,
  });
  open.add(e);
  const pusher = e.connector.pusher;
  const frames = new h.Recorder(`frames of echo ${name}`);
  pusher.connection.bind('message', (m) => frames.push(m));
  e.frames = frames;
  e.connected = () =>
    h.withTimeout(
      new Promise((resolve) => {
        if (pusher.connection.state === 'connected') return resolve(e.socketId());
        pusher.connection.bind('connected', () => resolve(e.socketId()));
      }),
      h.WAIT,
      `echo ${name} connected`,
    );
  e.barrier = async () => {
    const from = frames.items.length;
    pusher.send_event('pusher:ping', {});
    await frames.find((f) => f.event === 'pusher:pong', 'pong', { from });
  };
  return e;
}

/** Resolves when an Echo channel is subscribed. Call right after creating it, before yielding. */
function subscribed(channel, what) {
  return h.withTimeout(
    new Promise((resolve, reject) => {
      channel.subscribed(resolve);
      channel.error((err) => reject(new Error(`${what}: ${JSON.stringify(err)}`)));
    }),
    h.WAIT,
    what,
  );
}

/** Disconnects every Echo instance still open (call in `after`, before stopping servers). */
function disconnectAll() {
  for (const e of open) {
    try {
      e.disconnect();
    } catch {}
  }
  open.clear();
}

module.exports = { disconnectAll, echo, loadEcho, subscribed };
