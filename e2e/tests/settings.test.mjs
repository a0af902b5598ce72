// Browser tests of the settings page: changing the password (the other session is logged
// out, this one carries on), two-factor authentication (a QR code drawn in the page, enabling
// with a code, logging in with a code and with a recovery code), logging out everywhere,
// exporting one's data and deleting the account.
// Run: cd e2e && npm ci && node --test tests/settings.test.mjs

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { launchBrowser, logIn, newPage, pageSession, signUp, waitOnline } from '../lib/browser.mjs';
import { NebulaServer, rest, uniqueName } from '../lib/server.mjs';
import { currentStep, totpAt } from '../lib/totp.mjs';
import qrcode from '../../crates/server/web/vendor/qrcode-generator.js';

const PASSWORD = 'correct-horse-battery';

async function openSettings(page) {
  await page.click('#open-settings');
  await page.waitForSelector('#settings-screen:not([hidden])');
  // The account (`/me`) is loaded when the page opens.
  await page.locator('#totp-status', { hasText: /^(On|Off):/ }).waitFor();
}

/** The login screen, showing `message`. */
async function loggedOut(page, message) {
  await page.waitForSelector('#auth-screen:not([hidden])', { timeout: 10_000 });
  if (message) await page.locator('#auth-error', { hasText: message }).waitFor();
  assert.equal(await page.locator('#chat-screen').isHidden(), true);
  assert.equal(await page.locator('#settings-screen').isHidden(), true);
}

/** Script errors on the page (the refusals this test provokes log "Failed to load resource"). */
function scriptErrors(...pages) {
  return pages.flatMap((p) => p.errors).filter((e) => !e.includes('Failed to load resource'));
}

/** Fill the login form (without waiting for the chat). */
async function submitLogin(page, base, username, password) {
  await page.goto(`${base}/`);
  await page.click('#auth-mode-login');
  await page.fill('#auth-username', username);
  await page.fill('#auth-password', password);
  await page.click('#auth-submit');
}

describe('settings page', () => {
  let server;
  let browser;
  const pages = [];

  before(async () => {
    server = await NebulaServer.create();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    if (server) {
      if (process.exitCode) console.error(`--- server log tail ---\n${server.logTail(60)}`);
      await server.stop();
    }
  });

  async function page() {
    const p = await newPage(browser);
    p.page.setDefaultTimeout(15_000);
    pages.push(p);
    return p;
  }

  test('a password change logs the other session out; this page carries on with a new token', async () => {
    const name = uniqueName('pw');
    const here = await page();
    const there = await page();
    await signUp(here.page, server.url, name);
    await logIn(there.page, server.url, name);
    const oldToken = (await pageSession(here.page)).token;

    await openSettings(here.page);
    // A wrong current password is refused in place, and nothing changes.
    await here.page.fill('#password-current', 'not-my-password');
    await here.page.fill('#password-new', 'a-brand-new-secret');
    await here.page.click('#password-submit');
    await here.page.locator('#password-error', { hasText: 'That password is wrong.' }).waitFor();
    // Too short a new password never reaches the server.
    await here.page.fill('#password-current', PASSWORD);
    await here.page.fill('#password-new', 'short');
    await here.page.click('#password-submit');
    await here.page.locator('#password-error', { hasText: '8–128 characters' }).waitFor();

    await here.page.fill('#password-new', 'a-brand-new-secret');
    await here.page.click('#password-submit');
    await here.page.locator('.toast', { hasText: 'Password changed.' }).waitFor();

    // The other session is sent to the login screen, by its socket closing with 4001.
    await loggedOut(there.page, 'Your session has ended');

    // This page holds a new token, its socket is back online, and the old token is dead.
    const fresh = (await pageSession(here.page)).token;
    assert.notEqual(fresh, oldToken);
    await waitOnline(here.page);
    assert.equal(await here.page.locator('#settings-screen').isVisible(), true, 'still on the settings page');
    assert.equal((await rest(server.url, 'GET', '/me', { token: fresh })).username, name);
    await assert.rejects(rest(server.url, 'GET', '/me', { token: oldToken }), (e) => e.status === 401);

    // The old password no longer logs in; the new one does.
    await submitLogin(there.page, server.url, name, PASSWORD);
    await there.page.locator('#auth-error', { hasText: 'Wrong username or password.' }).waitFor();
    await logIn(there.page, server.url, name, 'a-brand-new-secret');
    assert.deepEqual(scriptErrors(here.page, there.page), []);
  });

  test('two-factor: a QR code drawn in the page, enabled with a code, then asked for at login', async () => {
    const name = uniqueName('tfa');
    const { page: p } = await page();
    const elsewhere = [];
    p.on('request', (req) => {
      if (!req.url().startsWith(server.url)) elsewhere.push(req.url());
    });
    await signUp(p, server.url, name);
    await openSettings(p);
    await p.locator('#totp-status', { hasText: 'Off:' }).waitFor();

    const setupAnswer = p.waitForResponse((r) => r.url().endsWith('/me/2fa/setup'));
    await p.click('#totp-setup');
    const setup = await (await setupAnswer).json();
    const svg = p.locator('#totp-qr svg.qr');
    await svg.waitFor();
    const secret = await p.locator('#totp-secret').textContent();
    assert.equal(secret, setup.secret, 'the key is shown as text too');

    // The drawn QR code is the otpauth URL: the same modules as encoding it here.
    const code = qrcode(0, 'M');
    code.addData(setup.otpauth_url, 'Byte');
    code.make();
    const n = code.getModuleCount();
    assert.equal(Number(await svg.getAttribute('data-modules')), n);
    const d = await svg.locator('path').getAttribute('d');
    const dark = new Set([...d.matchAll(/M(\d+) (\d+)h1v1h-1z/g)].map((m) => `${Number(m[2]) - 4},${Number(m[1]) - 4}`));
    let expected = 0;
    for (let row = 0; row < n; row++) {
      for (let col = 0; col < n; col++) {
        if (code.isDark(row, col)) {
          expected += 1;
          assert.ok(dark.has(`${row},${col}`), `module ${row},${col} is dark`);
        }
      }
    }
    assert.equal(dark.size, expected, 'no extra dark modules');

    // A wrong code is refused with a readable message; the right one turns 2FA on.
    const step = currentStep();
    await p.fill('#totp-enable-code', totpAt(secret, step + 5));
    await p.click('#totp-enable-form button[type=submit]');
    await p.locator('#totp-error', { hasText: 'That code is wrong or was already used.' }).waitFor();
    await p.fill('#totp-enable-code', totpAt(secret, step));
    await p.click('#totp-enable-form button[type=submit]');
    await p.locator('#totp-recovery-codes li').nth(9).waitFor();
    const codes = await p.locator('#totp-recovery-codes li').allTextContents();
    assert.equal(codes.length, 10, 'ten recovery codes, shown once');
    assert.ok(codes.every((c) => /^[a-z0-9]{5}-[a-z0-9]{5}$/.test(c)), codes.join(' '));
    await p.click('#totp-recovery-done');
    await p.locator('#totp-status', { hasText: 'On:' }).waitFor();
    assert.equal(await p.locator('#totp-recovery-codes li').count(), 0, 'the codes are gone from the page');
    assert.equal(await p.locator('#totp-disable-form').isVisible(), true);

    // Log out; logging in now asks for the code.
    await p.click('#logout');
    await submitLogin(p, server.url, name, PASSWORD);
    await p.locator('#auth-error', { hasText: 'Enter your authentication code.' }).waitFor();
    assert.equal(await p.locator('#auth-totp-field').isVisible(), true);
    // The code just used to enable it is refused (a code counts once), with the reason.
    await p.fill('#auth-totp', totpAt(secret, step));
    await p.click('#auth-submit');
    await p.locator('#auth-error', { hasText: 'That code is wrong or was already used.' }).waitFor();
    // The next step's code (one step of clock skew is allowed) logs in.
    await p.fill('#auth-totp', totpAt(secret, step + 1));
    await p.click('#auth-submit');
    await p.waitForSelector('#chat-screen:not([hidden])');
    await waitOnline(p);

    // A recovery code logs in too, once.
    await p.click('#logout');
    await submitLogin(p, server.url, name, PASSWORD);
    await p.locator('#auth-totp-field').waitFor();
    await p.fill('#auth-totp', codes[3]);
    await p.click('#auth-submit');
    await p.waitForSelector('#chat-screen:not([hidden])');

    // Turning it off needs the password and a code; a used recovery code is refused.
    await openSettings(p);
    await p.fill('#totp-disable-password', PASSWORD);
    await p.fill('#totp-disable-code', codes[3]);
    await p.click('#totp-disable-form button[type=submit]');
    await p.locator('#totp-error', { hasText: 'That code is wrong or was already used.' }).waitFor();
    await p.fill('#totp-disable-code', codes[4]);
    await p.click('#totp-disable-form button[type=submit]');
    await p.locator('#totp-status', { hasText: 'Off:' }).waitFor();
    assert.equal((await rest(server.url, 'GET', '/me', { token: (await pageSession(p)).token })).totp_enabled, false);

    assert.deepEqual(elsewhere, [], 'nothing (the secret least of all) goes to another host');
    assert.deepEqual(scriptErrors(p), []);
  });

  test('log out everywhere ends every session of the account, this one too', async () => {
    const name = uniqueName('all');
    const here = await page();
    const there = await page();
    await signUp(here.page, server.url, name);
    await logIn(there.page, server.url, name);
    await openSettings(here.page);
    await here.page.click('#logout-all');
    await loggedOut(here.page, 'You have been logged out everywhere.');
    await loggedOut(there.page, 'Your session has ended');
  });

  test('export downloads my data as JSON; deleting the account needs the password and ends it', async () => {
    const name = uniqueName('bye');
    const { page: p } = await page();
    await signUp(p, server.url, name);
    await openSettings(p);

    const download = p.waitForEvent('download');
    await p.click('#export-data');
    const file = await download;
    assert.match(file.suggestedFilename(), new RegExp(`^nebula-${name}-export\\.json$`));
    const data = JSON.parse(fs.readFileSync(await file.path(), 'utf8'));
    assert.equal(data.account.username, name);
    assert.ok(Array.isArray(data.messages), 'messages are part of it');

    // A wrong password is refused in place.
    await p.fill('#delete-password', 'not-my-password');
    await p.click('#delete-submit');
    await p.click('#confirm-ok');
    await p.locator('#delete-error', { hasText: 'That password is wrong.' }).waitFor();
    // Cancelling the confirmation deletes nothing.
    await p.fill('#delete-password', PASSWORD);
    await p.click('#delete-submit');
    await p.click('#confirm-cancel');
    assert.equal(await p.locator('#settings-screen').isVisible(), true);

    await p.click('#delete-submit');
    await p.click('#confirm-ok');
    await loggedOut(p, 'Your account has been deleted.');
    await submitLogin(p, server.url, name, PASSWORD);
    await p.locator('#auth-error', { hasText: /\S/ }).waitFor();
    assert.equal(await p.locator('#chat-screen').isHidden(), true, 'a deleted account cannot log in');
  });
});
