'use strict';
// End-to-end encrypted channels: the server SDKs encrypt with a master key, herald relays the
// ciphertext untouched, pusher-js decrypts with the shared_secret from authorizeChannel.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const nacl = require('tweetnacl');
const { startServer, ENCRYPTION_MASTER_KEY_BASE64 } = require('../lib/harness');
const h = require('../lib/clients');

let server;
let api;
before(async () => {
  server = await startServer();
  api = h.sdk(server); // configured with encryptionMasterKeyBase64
});
after(() => h.teardown(server));

/** pusher-js client whose auth handler also keeps what it returned (to see shared_secret). */
function encryptedClient(name) {
  const returned = [];
  const c = h.client(server, {
    name,
    customHandler: (p, cb) => {
      const auth = api.authorizeChannel(p.socketId, p.channelName);
      returned.push({ ...auth }); // a copy: pusher-js deletes shared_secret from the object it gets
      cb(null, auth);
    },
  });
  c.returnedAuth = returned;
  return c;
}

function expectedSharedSecret(channel) {
  return crypto
    .createHash('sha256')
    .update(Buffer.concat([Buffer.from(channel), Buffer.from(ENCRYPTION_MASTER_KEY_BASE64, 'base64')]))
    .digest('base64');
}

test('pusher-js decrypts an event the Node SDK encrypted; the wire carries only ciphertext', async () => {
  const ch = h.uid('private-encrypted-payroll-');
  const a = encryptedClient('a');
  const channel = await a.subscribe(ch);
  assert.equal(channel.subscribed, true);
  assert.equal(a.returnedAuth.length, 1);
  assert.deepEqual(Object.keys(a.returnedAuth[0]).sort(), ['auth', 'shared_secret']);
  assert.equal(a.returnedAuth[0].shared_secret, expectedSharedSecret(ch));
  const subscribeFrame = a.frames.items.find((f) => f.event === 'pusher_internal:subscription_succeeded');
  assert.equal(subscribeFrame.channel, ch);

  const rec = a.record(ch, 'salary');
  const payload = { employee: 'ann', amount: 4200, note: 'top secret: café ☕' };
  assert.deepEqual(await h.json(api.trigger(ch, 'salary', payload)), {});
  assert.deepEqual((await rec.next('decrypted salary')).data, payload);

  const wire = a.framesFor(ch, 'salary')[0];
  assert.deepEqual(Object.keys(wire.data).sort(), ['ciphertext', 'nonce']);
  assert.ok(!JSON.stringify(wire).includes('top secret'), 'no plaintext on the wire');
  // The ciphertext opens with the derived key: herald did not alter a byte.
  const opened = nacl.secretbox.open(
    Buffer.from(wire.data.ciphertext, 'base64'),
    Buffer.from(wire.data.nonce, 'base64'),
    Buffer.from(expectedSharedSecret(ch), 'base64'),
  );
  assert.ok(opened, 'secretbox authenticates');
  assert.deepEqual(JSON.parse(Buffer.from(opened).toString('utf8')), payload);
});

test('pusher-js decrypts an event the Python SDK encrypted', async () => {
  const ch = h.uid('private-encrypted-py-');
  const a = encryptedClient('a');
  await a.subscribe(ch);
  const rec = a.record(ch, 'note');
  await h.pythonOk(server, [{ op: 'trigger', args: [ch, 'note', { text: 'from python', n: [1, 2] }] }]);
  assert.deepEqual((await rec.next('decrypted note')).data, { text: 'from python', n: [1, 2] });
  const wire = a.framesFor(ch, 'note')[0];
  assert.deepEqual(Object.keys(wire.data).sort(), ['ciphertext', 'nonce']);
});

test('a subscriber of another encrypted channel cannot read it (different derived key, no delivery)', async () => {
  const mine = h.uid('private-encrypted-mine-');
  const theirs = h.uid('private-encrypted-theirs-');
  const a = encryptedClient('a');
  const b = encryptedClient('b');
  await a.subscribe(mine);
  await b.subscribe(theirs);
  assert.notEqual(a.returnedAuth[0].shared_secret, b.returnedAuth[0].shared_secret);
  const recB = b.record(theirs, 'x');
  await h.json(api.trigger(mine, 'x', { only: 'a' }));
  await h.json(api.trigger(theirs, 'x', { only: 'b' }));
  assert.deepEqual((await recB.next()).data, { only: 'b' });
  assert.deepEqual(b.framesFor(mine), []);
});
