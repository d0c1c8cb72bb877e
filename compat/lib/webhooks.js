'use strict';
// A webhook receiver for the tests: a plain HTTP server on 127.0.0.1 that records every request
// (method, path, lower-cased headers, raw body) and every event in the bodies, and answers 200.

const http = require('node:http');

const { HOST, tomlString } = require('./harness');
const { Recorder, WAIT, withTimeout } = require('./clients');

/**
 * Starts the receiver on a free port. Returns { url, requests, events, close() }: `requests`
 * records {method, path, headers, rawBody}; `events` records {event, request} for each entry of
 * a JSON body's `events` (unverified: the tests check the signatures with the SDKs).
 */
async function startReceiver(pathname = '/hooks') {
  const requests = new Recorder('webhook requests');
  const events = new Recorder('webhook events');
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const request = {
        method: req.method,
        path: req.url,
        headers: req.headers,
        rawBody: Buffer.concat(chunks).toString('utf8'),
      };
      requests.push(request);
      let body;
      try {
        body = JSON.parse(request.rawBody);
      } catch {
        body = null;
      }
      for (const event of (body && Array.isArray(body.events) && body.events) || []) events.push({ event, request });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await withTimeout(
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, HOST, resolve); // port 0: the kernel picks a free port, no race
    }),
    WAIT,
    'the webhook receiver to listen',
  );
  const { port } = server.address();
  return {
    url: `http://${HOST}:${port}${pathname}`,
    requests,
    events,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A [[apps.webhooks]] sub-table for appsWith(): one receiver, optional event-type filter. */
function webhookToml(url, { events } = {}) {
  const lines = ['[[apps.webhooks]]', `url = ${tomlString(url)}`];
  if (events) lines.push(`events = [${events.map(tomlString).join(', ')}]`);
  return lines.join('\n');
}

module.exports = { startReceiver, webhookToml };
