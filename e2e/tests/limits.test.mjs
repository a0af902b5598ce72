// The web client reads the server's limits instead of hard-coding them: with
// MESSAGE_MAX_CHARS=40 the composer counts to 40 and refuses the 41st character's message
// before sending it (the file size limit is covered in files.test.mjs, from /media/limits).
// Run: cd e2e && npm ci && node --test tests/limits.test.mjs

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { launchBrowser, newPage, pageSession, send, shownMessages, signUp, waitOnline } from '../lib/browser.mjs';
import { NebulaServer, rest, uniqueName } from '../lib/server.mjs';

describe('limits from the server', () => {
  let server;
  let browser;

  before(async () => {
    server = await NebulaServer.create({ MESSAGE_MAX_CHARS: '40' });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
  });

  test('the composer holds messages to MESSAGE_MAX_CHARS, as GET / says', async () => {
    const { page } = await newPage(browser);
    page.setDefaultTimeout(15_000);
    await signUp(page, server.url, uniqueName('short'));
    const token = (await pageSession(page)).token;
    const room = await rest(server.url, 'POST', '/rooms', { token, body: { name: 'Terse' } });
    await page.goto(`${server.url}/#room=${room.id}`);
    await page.reload();
    await waitOnline(page);
    await page.locator('#room-title', { hasText: 'Terse' }).waitFor();

    const outgoing = [];
    page.on('websocket', (ws) => ws.on('framesent', (f) => outgoing.push(String(f.payload))));
    await page.fill('#composer-input', 'x'.repeat(41));
    await page.locator('#char-count.over', { hasText: '41 / 40' }).waitFor();
    await page.press('#composer-input', 'Enter');
    await page.locator('.toast', { hasText: 'Messages are at most 40 characters.' }).waitFor();
    assert.equal(await page.inputValue('#composer-input'), 'x'.repeat(41), 'the text stays to be shortened');
    assert.ok(!outgoing.some((f) => f.includes('message.send')), 'nothing was sent');

    await send(page, 'y'.repeat(40));
    await page.locator('#message-list > li.msg').first().waitFor();
    assert.deepEqual((await shownMessages(page)).map((m) => m.text), ['y'.repeat(40)]);
  });
});
