'use strict';
// Starts the real herald binary for one test file: writes a TOML config with the compat apps
// to a temp dir, picks a free port, waits for GET /health, and always stops the process. Also
// starts private redis-server processes for the multi-node tests.

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const COMPAT_DIR = path.resolve(__dirname, '..');
const HOST = '127.0.0.1';

// Numeric ids: the Python SDK refuses anything else.
const APPS = {
  // client events on
  main: { id: '1001', key: 'compat-key-1001', secret: 'compat-secret-1001', enabled: true, clientEvents: true },
  // client events off
  quiet: { id: '1002', key: 'compat-key-1002', secret: 'compat-secret-1002', enabled: true, clientEvents: false },
  // disabled
  disabled: { id: '1003', key: 'compat-key-1003', secret: 'compat-secret-1003', enabled: false, clientEvents: true },
};

// Base64 of 32 bytes, used by the server SDKs to derive per-channel keys for encrypted channels.
const ENCRYPTION_MASTER_KEY_BASE64 = Buffer.from(
  Array.from({ length: 32 }, (_, i) => (i * 7 + 3) & 0xff),
).toString('base64');

function resolveBinary() {
  const candidates = [];
  if (process.env.HERALD_BIN) {
    const p = path.resolve(process.env.HERALD_BIN);
    if (isExecutable(p)) return p;
    throw new Error(`HERALD_BIN=${process.env.HERALD_BIN} is not an executable file`);
  }
  candidates.push(path.join(COMPAT_DIR, '..', 'target', 'release', 'herald'));
  candidates.push(path.join(COMPAT_DIR, '..', 'target', 'debug', 'herald'));
  for (const c of candidates) if (isExecutable(c)) return c;
  throw new Error(
    'No herald binary found. Set HERALD_BIN=/path/to/herald, or build one with ' +
      '`cargo build --release` (looked in: ' + candidates.join(', ') + ')',
  );
}

function isExecutable(p) {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

function tomlString(s) {
  return JSON.stringify(String(s)); // JSON string escapes are valid TOML basic-string escapes
}

/**
 * The TOML config herald is started with.
 *  - apps: the app table; an app's optional `toml` string is appended inside its [[apps]] entry
 *    (e.g. `enable_watchlist_events = true`, or `[[apps.webhooks]]` sub-tables)
 *  - topLevelToml: keys that must precede every table (e.g. `adapter = "redis"`)
 *  - serverToml: more keys of the [server] table (e.g. `http_session_timeout = 1`)
 *  - extraToml: more top-level tables after the apps (e.g. `[redis]`, `[webhooks]`)
 */
function configToml(apps, { topLevelToml = '', serverToml = '', extraToml = '' } = {}) {
  const lines = [];
  if (topLevelToml) lines.push(topLevelToml, '');
  lines.push(
    '[server]',
    `host = ${tomlString(HOST)}`,
    'shutdown_timeout = 2',
    '',
  );
  if (serverToml) lines.push(serverToml, '');
  for (const a of Object.values(apps)) {
    lines.push(
      '[[apps]]',
      `id = ${tomlString(a.id)}`,
      `key = ${tomlString(a.key)}`,
      `secret = ${tomlString(a.secret)}`,
      `enabled = ${a.enabled ? 'true' : 'false'}`,
      `enable_client_messages = ${a.clientEvents ? 'true' : 'false'}`,
      '',
    );
    if (a.toml) lines.push(a.toml, '');
  }
  if (extraToml) lines.push(extraToml, '');
  return lines.join('\n');
}

/**
 * The compat apps with extra TOML for some of them, by name:
 * appsWith({ main: 'enable_subscription_count = true' }).
 */
function appsWith(extra) {
  const apps = {};
  for (const [name, a] of Object.entries(APPS)) apps[name] = { ...a };
  for (const [name, toml] of Object.entries(extra)) {
    if (!apps[name]) throw new Error(`appsWith(): no app named ${name}`);
    apps[name].toml = [apps[name].toml, toml].filter(Boolean).join('\n');
  }
  return apps;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function getHealth(port, timeoutMs) {
  return new Promise((resolve) => {
    const req = http.get({ host: HOST, port, path: '/health', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(null));
  });
}

const live = new Set(); // running herald processes
const tempDirs = new Set(); // their config dirs
let exitHookInstalled = false;
function killAllNow() {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {}
  }
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
}
function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort: never leave a server behind, whatever way this test process ends.
  process.on('exit', killAllNow);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.once(sig, () => {
      killAllNow();
      process.exit(128 + (os.constants.signals[sig] || 1));
    });
  }
}

// The built-in development app (herald without --config).
const DEVELOPMENT_APP = { id: 'app-id', key: 'app-key', secret: 'app-secret', enabled: true, clientEvents: true };

/**
 * Starts herald with the compat apps. Returns { host, port, apps, httpUrl, stop(), output() }.
 * Options: { apps } to override the app table (e.g. a different secret than the SDKs use, or
 * appsWith(...) for per-app keys); { topLevelToml, extraToml } for more config (see configToml);
 * { development: true } for no config file at all (the development app, as `apps.main`);
 * { configFile, apps, env } to run an existing config file (e.g. config.toml.example) with
 * extra environment; { metricsPort } to serve /metrics on that port (off otherwise: tests run in
 * parallel).
 */
async function startServer(options = {}) {
  const bin = resolveBinary();
  const apps = options.development ? { main: DEVELOPMENT_APP } : options.apps || APPS;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-compat-'));
  tempDirs.add(dir);
  let configFile = options.configFile || null;
  if (!options.development && !configFile) {
    configFile = path.join(dir, 'config.toml');
    fs.writeFileSync(configFile, configToml(apps, options));
  }
  installExitHook();

  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      const server = await launch(bin, configFile, port, apps, dir, options.env || {}, options.metricsPort);
      return server;
    } catch (e) {
      lastError = e;
      if (!e.retryable) break;
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
  throw lastError;
}

async function launch(bin, configFile, port, apps, dir, env, metricsPort) {
  let output = '';
  const config = configFile ? ['--config', configFile] : [];
  const metrics = metricsPort ? String(metricsPort) : 'off';
  const args = [...config, '--host', HOST, '--port', String(port), '--metrics-port', metrics];
  const child = spawn(bin, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1', RUST_LOG: process.env.RUST_LOG || 'warn', ...env },
  });
  live.add(child);
  const keep = (c) => {
    output += c;
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      live.delete(child);
      resolve(exited);
    });
    child.on('error', (err) => {
      exited = { code: null, signal: null, error: err };
      live.delete(child);
      resolve(exited);
    });
  });

  const deadline = Date.now() + 10_000;
  let healthy = false;
  while (Date.now() < deadline && !exited) {
    const r = await getHealth(port, 500);
    if (r && r.status === 200) {
      healthy = true;
      break;
    }
    await new Promise((r2) => setTimeout(r2, 50)); // poll interval, not synchronisation
  }
  if (!healthy) {
    if (!exited) {
      child.kill('SIGKILL');
      await exitPromise;
    }
    const err = new Error(
      `herald did not become healthy on ${HOST}:${port} within 10 s ` +
        `(exit: ${JSON.stringify(exited)}):\n${output}`,
    );
    err.retryable = /address already in use|in use|EADDRINUSE/i.test(output);
    throw err;
  }

  let stopping = null;
  const stop = () => {
    if (stopping) return stopping;
    stopping = (async () => {
      if (!exited) {
        child.kill('SIGTERM');
        const t = setTimeout(() => {
          if (!exited) child.kill('SIGKILL');
        }, 5_000);
        await exitPromise;
        clearTimeout(t);
      }
      fs.rmSync(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
      return exited;
    })();
    return stopping;
  };

  return {
    host: HOST,
    port,
    apps,
    httpUrl: `http://${HOST}:${port}`,
    wsUrl: `ws://${HOST}:${port}`,
    configFile,
    metricsUrl: metricsPort ? `http://${HOST}:${metricsPort}/metrics` : null,
    /** SIGKILL, as a crash: no drain, no goodbye to the cluster. Resolves once it exited. */
    kill: async () => {
      if (!exited) {
        child.kill('SIGKILL');
        await exitPromise;
      }
    },
    stop,
    output: () => output,
    exited: () => exited,
  };
}

// ---------------------------------------------------------------------------------------------
// redis-server for the multi-node tests

const REDIS_MISSING =
  "redis-server is not installed: install Debian's redis-server package (apt-get install redis-server)";

function redisServerBinary() {
  const r = spawnSync('redis-server', ['--version'], { encoding: 'utf8', timeout: 5_000 });
  if (r.error || r.status !== 0) throw new Error(`${REDIS_MISSING} (${r.error ? r.error.message : r.stderr})`);
  return 'redis-server';
}

/** Resolves true once redis answers PING with +PONG on 127.0.0.1:port. */
function redisPing(port, timeoutMs) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: HOST, port });
    let got = '';
    const done = (ok) => {
      clearTimeout(t);
      sock.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (c) => {
      got += c.toString('utf8');
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
    sock.on('error', () => done(false));
  });
}

/**
 * Starts a private redis-server on a free 127.0.0.1 port, without persistence. Returns
 * { port, url, stop(), output() }; stop() kills it (also done at process exit).
 */
async function startRedis() {
  const bin = redisServerBinary();
  installExitHook();
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-compat-redis-'));
    tempDirs.add(dir);
    const child = spawn(
      bin,
      ['--port', String(port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    live.add(child);
    let output = '';
    const keep = (c) => {
      output += c;
      if (output.length > 100_000) output = output.slice(-50_000);
    };
    child.stdout.setEncoding('utf8').on('data', keep);
    child.stderr.setEncoding('utf8').on('data', keep);
    let exited = null;
    const exitPromise = new Promise((resolve) => {
      const onEnd = (info) => {
        exited = info;
        live.delete(child);
        resolve(info);
      };
      child.on('exit', (code, signal) => onEnd({ code, signal }));
      child.on('error', (err) => onEnd({ code: null, signal: null, error: err.message }));
    });
    const stop = async () => {
      if (!exited) {
        child.kill('SIGKILL');
        await exitPromise;
      }
      fs.rmSync(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
    };

    const deadline = Date.now() + 10_000;
    let ready = false;
    while (Date.now() < deadline && !exited) {
      if (await redisPing(port, 500)) {
        ready = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 50)); // poll interval, not synchronisation
    }
    if (ready) {
      return { port, url: `redis://${HOST}:${port}/0`, stop, output: () => output };
    }
    await stop();
    lastError = new Error(
      `redis-server did not answer PING on ${HOST}:${port} within 10 s (exit: ${JSON.stringify(exited)}):\n${output}`,
    );
    if (!/in use|bind/i.test(output)) break;
  }
  throw lastError;
}

module.exports = {
  APPS,
  DEVELOPMENT_APP,
  COMPAT_DIR,
  ENCRYPTION_MASTER_KEY_BASE64,
  HOST,
  appsWith,
  configToml,
  freePort,
  resolveBinary,
  startRedis,
  startServer,
  tomlString,
};
