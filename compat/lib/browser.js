'use strict';
// Headless Chromium (Debian's package) for the browser tests: one launch and one teardown, with
// the flags this machine's closed network needs.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/** Launches Chromium with a fresh profile; `options` are extra playwright context options. */
async function launchChromium(options = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (compat/run does it as root)`);
  }
  const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-compat-chromium-'));
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    ...options,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return { context, profileDir };
}

/** Closes what `launchChromium` opened (bounded) and removes the profile. */
async function closeChromium(launched, withTimeout) {
  if (!launched) return;
  await withTimeout(launched.context.close(), 10_000, 'chromium to close').catch(() => {});
  fs.rmSync(launched.profileDir, { recursive: true, force: true });
}

module.exports = { CHROMIUM, launchChromium, closeChromium };
