'use strict';
// The README's snippets, taken from README.md's text and run as a newcomer would paste them:
// the pusher-js client (client.mjs) and the Node SDK trigger (trigger.mjs) against the
// development app, the Python SDK trigger (trigger.py) against config.toml.example copied to
// config.toml. The only change made to a snippet is the port: each test server has its own.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { COMPAT_DIR, resolveBinary, startServer } = require('../lib/harness');
const h = require('../lib/clients');

const README = fs.readFileSync(path.join(COMPAT_DIR, '..', 'README.md'), 'utf8');
const PYTHON = path.join(COMPAT_DIR, '.venv', 'bin', 'python');

/** Every fenced block of the README: {lang, code}. */
function blocks() {
  return [...README.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1], code: m[2] }));
}

/** The runnable snippets by the file name on their first line (`// client.mjs`, `# trigger.py`). */
function snippets() {
  const out = {};
  for (const { lang, code } of blocks()) {
    if (lang !== 'js' && lang !== 'python') continue;
    const first = code.split('\n')[0];
    const m = first.match(/^(?:\/\/|#) (\S+\.(?:mjs|py))$/);
    assert.ok(m, `every ${lang} snippet names its file on its first line, so it can be run as pasted: ${first}`);
    out[m[1]] = code;
  }
  return out;
}

// Snippets live in a folder inside compat/ so that `import 'pusher-js'` finds compat/node_modules.
let dir;
before(() => {
  dir = fs.mkdtempSync(path.join(COMPAT_DIR, '.readme-'));
});
after(() => {
  h.closeAllClients();
  for (const c of children) c.kill('SIGKILL');
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const children = new Set();

/** Writes a snippet with the test server's port instead of 6001. */
function write(name, code, port) {
  assert.ok(code.includes('6001'), `${name} talks to port 6001`);
  const file = path.join(dir, name);
  fs.writeFileSync(file, code.replaceAll('6001', String(port)));
  return file;
}

/** Runs a command to its end (bounded); resolves {code, stdout, stderr}. */
function run(cmd, args, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: dir, env: { ...process.env, ...env } });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} did not finish in 20 s:\n${stdout}\n${stderr}`));
    }, 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

test('the README snippets are all named and there is one of each kind we run', () => {
  assert.deepEqual(Object.keys(snippets()).sort(), ['client.mjs', 'trigger.mjs', 'trigger.py']);
});

test('client.mjs prints what trigger.mjs sends, against the development app', async () => {
  const server = await startServer({ development: true });
  try {
    const s = snippets();
    const client = spawn('node', [write('client.mjs', s['client.mjs'], server.port)], { cwd: dir });
    children.add(client);
    const lines = new h.Recorder('client.mjs output');
    let buffered = '';
    client.stdout.setEncoding('utf8').on('data', (c) => {
      buffered += c;
      const parts = buffered.split('\n');
      buffered = parts.pop();
      for (const l of parts) lines.push(l);
    });
    let stderr = '';
    client.stderr.setEncoding('utf8').on('data', (c) => (stderr += c));
    // The client has subscribed once the channel is occupied (no client-visible event to await).
    const api = h.sdk(server);
    await h.eventually(
      async () => (await h.json(api.get({ path: '/channels/hotel-grand' }))).occupied,
      `client.mjs subscribed (stderr: ${stderr})`,
    );
    const trigger = await run('node', [write('trigger.mjs', s['trigger.mjs'], server.port)]);
    assert.deepEqual({ code: trigger.code, stderr: trigger.stderr }, { code: 0, stderr: '' });
    // What the README says the client prints.
    const promised = README.match(/the client above\s+prints `([^`]+)`/)[1];
    assert.equal(await lines.next('the event printed by client.mjs'), promised);
    client.kill('SIGTERM');
    children.delete(client);
  } finally {
    await server.stop();
  }
});

test('trigger.py reaches a pusher-js client of config.toml.example copied to config.toml', async (t) => {
  const config = path.join(dir, 'config.toml');
  fs.copyFileSync(path.join(COMPAT_DIR, '..', 'config.toml.example'), config);
  const env = { HERALD_APP_SECRET: 'change-me' };
  const check = spawnSync(resolveBinary(), ['check-config', 'config.toml'], {
    cwd: dir,
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  assert.equal(check.status, 0, check.stderr);
  assert.match(check.stdout, /^config\.toml: OK \(1 app\(s\), listening on 127\.0\.0\.1:6001\)$/m);
  const app = { id: '1001', key: 'my-app-key', secret: 'change-me' };
  const server = await startServer({ configFile: config, env, apps: { main: app } });
  try {
    const c = h.client(server, { name: 'subscriber' });
    await c.subscribe('hotel-grand');
    const got = c.record('hotel-grand', 'clock-status-updated');
    const py = await run(PYTHON, [write('trigger.py', snippets()['trigger.py'], server.port)], env);
    assert.deepEqual({ code: py.code, stderr: py.stderr }, { code: 0, stderr: '' });
    assert.deepEqual((await got.next('the event from trigger.py')).data, { staff: 'ann', status: 'in' });
  } finally {
    h.closeAllClients();
    await server.stop();
  }
});
