// Debian's Chromium driven by playwright-core (never a downloaded browser).

import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

/** Chromium flags for call tests: a fake microphone, and no permission prompt for it. */
export const FAKE_MEDIA_ARGS = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];

/** `extraArgs`: more Chromium flags (e.g. FAKE_MEDIA_ARGS). */
export function launchBrowser(extraArgs = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--disable-component-update',
      '--no-first-run',
      // Hidden test pages must keep their timers running at full speed.
      '--disable-background-timer-throttling',
      '--disable-renderer-backgrounding',
      '--disable-backgrounding-occluded-windows',
      ...extraArgs,
    ],
  });
}

/**
 * A page that records console errors, page errors and dialogs (so a test can assert that no
 * `alert()` ever fired).
 */
export async function newPage(browser, { viewport = { width: 1280, height: 800 } } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.dialogs = [];
  page.errors = [];
  page.on('dialog', async (d) => {
    page.dialogs.push(`${d.type()}: ${d.message()}`);
    await d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') page.errors.push(`console: ${m.text()}`);
  });
  return { context, page };
}

/** Sign up through the UI and wait until the socket is online. */
export async function signUp(page, base, username, password = 'correct-horse-battery') {
  await page.goto(`${base}/`);
  await page.click('#auth-mode-register');
  await page.fill('#auth-username', username);
  await page.fill('#auth-password', password);
  await page.click('#auth-submit');
  await page.waitForSelector('#chat-screen:not([hidden])');
  await waitOnline(page);
}

/** Log in through the UI. */
export async function logIn(page, base, username, password = 'correct-horse-battery') {
  await page.goto(`${base}/`);
  await page.click('#auth-mode-login');
  await page.fill('#auth-username', username);
  await page.fill('#auth-password', password);
  await page.click('#auth-submit');
  await page.waitForSelector('#chat-screen:not([hidden])');
  await waitOnline(page);
}

export function waitOnline(page, timeout = 30_000) {
  return page.waitForSelector('#conn-status[data-state="online"]', { timeout });
}

/** Session token the page holds (to call REST as that user from the test). */
export async function pageSession(page) {
  return page.evaluate(() => JSON.parse(sessionStorage.getItem('nebula.session')));
}

/** Type and send a message through the composer. */
export async function send(page, text) {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
}

/** Texts of the messages shown (acknowledged ones), in order, with their seq. */
export function shownMessages(page) {
  return page.$$eval('#message-list > li.msg', (lis) =>
    lis.map((li) => ({ seq: Number(li.dataset.seq), text: li.querySelector('.msg-body').textContent })),
  );
}
