// Browser tests of reporting and administration: a member reports a message and a user, the
// admin sees both in the queue, resolving with delete_message deletes the message live on the
// reporter's page; deactivating from the users list ends the victim's open session; rooms are
// searched and deleted; the audit log shows what happened; non-admins never see the page.
// Run: cd e2e && npm ci && node --test tests/admin.test.mjs

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { launchBrowser, logIn, newPage, pageSession, send, signUp, waitOnline } from '../lib/browser.mjs';
import { NebulaServer, rest, uniqueName } from '../lib/server.mjs';

const PASSWORD = 'correct-horse-battery';

/** The `<li>` of the message whose text is exactly `text`. */
function message(page, text) {
  return page.locator('#message-list > li.msg').filter({
    has: page.locator('.msg-body', { hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }),
  });
}

async function openRoom(page, base, roomId, name) {
  await page.goto(`${base}/#room=${roomId}`);
  await page.reload();
  await waitOnline(page);
  await page.locator('#room-title', { hasText: name }).waitFor();
}

/** Type `q` into the users search and wait until the list is that search's answer. */
async function searchUsers(page, q) {
  await page.fill('#admin-user-search', q);
  await page.waitForFunction(
    (q) => {
      const rows = [...document.querySelectorAll('#admin-users > li.user')];
      return rows.length > 0 && rows.every((li) => li.dataset.username.toLowerCase().startsWith(q.toLowerCase()));
    },
    q,
  );
}

async function openAdminTab(page, tab) {
  await page.click(`#admin-tab-${tab}`);
  await page.waitForSelector(`#admin-${tab}-panel:not([hidden])`);
}

describe('reports and the admin page', () => {
  let server;
  let browser;
  let admin; // {context, page}
  let carol; // reports things
  let dave; // is reported
  const adminName = uniqueName('admin');
  const carolName = uniqueName('carol');
  const daveName = uniqueName('dave');
  const roomName = `Moderated ${randomUUID().slice(0, 6)}`;
  let roomId;
  let daveId;

  before(async () => {
    server = await NebulaServer.create({ RATE_LIMIT_MESSAGES_PER_SECOND: '0' });
    browser = await launchBrowser();
    // An operator makes an existing account an admin.
    await rest(server.url, 'POST', '/auth/register', { body: { username: adminName, password: PASSWORD } });
    await server.grantAdmin(adminName);
    admin = await newPage(browser);
    carol = await newPage(browser);
    dave = await newPage(browser);
    for (const p of [admin.page, carol.page, dave.page]) p.setDefaultTimeout(15_000);
    await logIn(admin.page, server.url, adminName);
    await signUp(carol.page, server.url, carolName);
    await signUp(dave.page, server.url, daveName);
    const carolToken = (await pageSession(carol.page)).token;
    const daveSession = await pageSession(dave.page);
    daveId = daveSession.user.id;
    roomId = (await rest(server.url, 'POST', '/rooms', { token: carolToken, body: { name: roomName } })).id;
    await rest(server.url, 'POST', `/rooms/${roomId}/members`, { token: daveSession.token, body: {} });
    await openRoom(carol.page, server.url, roomId, roomName);
    await openRoom(dave.page, server.url, roomId, roomName);
  });

  after(async () => {
    await browser?.close().catch(() => {});
    if (server) {
      if (process.exitCode) console.error(`--- server log tail ---\n${server.logTail(60)}`);
      await server.stop();
    }
  });

  test('the Admin entry shows to admins only, and the API refuses everyone else', async () => {
    await admin.page.locator('#open-admin').waitFor({ state: 'visible' });
    // Carol's account is loaded (the Settings page shows it) and she has no Admin entry.
    await carol.page.click('#open-settings');
    await carol.page.locator('#totp-status', { hasText: /^(On|Off):/ }).waitFor();
    assert.equal(await carol.page.locator('#open-admin').isHidden(), true);
    await carol.page.click('#settings-back');
    await carol.page.waitForSelector('#chat-screen:not([hidden])');
    const token = (await pageSession(carol.page)).token;
    await assert.rejects(rest(server.url, 'GET', '/admin/users', { token }), (e) => e.status === 403 && e.body.code === 'admin_required');
  });

  test('a reported message shows in the queue; delete_message removes it live for the reporter', async () => {
    await send(dave.page, 'Buy cheap followers at spam.example');
    await message(carol.page, 'Buy cheap followers at spam.example').waitFor();
    await send(dave.page, 'A perfectly fine message');
    await message(carol.page, 'A perfectly fine message').waitFor();

    // One's own messages have no Report action.
    const own = message(dave.page, 'A perfectly fine message');
    await own.hover();
    assert.equal(await own.locator('.act-report').count(), 0);

    // Carol reports the spam from the message's actions; an empty reason is refused.
    const spam = message(carol.page, 'Buy cheap followers at spam.example');
    await spam.hover();
    await spam.locator('.act-report').click();
    await carol.page.waitForSelector('#report-dialog[open]');
    await carol.page.locator('#report-subject', { hasText: `${daveName}: “Buy cheap followers at spam.example”` }).waitFor();
    await carol.page.click('#report-submit');
    await carol.page.locator('#report-error', { hasText: 'Say what is wrong' }).waitFor();
    await carol.page.fill('#report-reason', 'Spam link');
    await carol.page.click('#report-submit');
    await carol.page.locator('.toast', { hasText: 'Reported.' }).waitFor();
    assert.equal(await carol.page.locator('#report-dialog[open]').count(), 0);

    // Carol also reports Dave himself from his profile card.
    await spam.locator('.msg-author').click();
    await carol.page.locator('#profile-dialog[open] #profile-name', { hasText: daveName }).waitFor();
    await carol.page.click('#profile-report');
    await carol.page.waitForSelector('#report-dialog[open]');
    await carol.page.locator('#report-title', { hasText: `Report ${daveName}` }).waitFor();
    await carol.page.fill('#report-reason', 'Keeps posting spam');
    await carol.page.click('#report-submit');
    await carol.page.locator('.toast', { hasText: 'Reported.' }).nth(1).waitFor();

    // The admin's queue shows both, oldest first.
    await admin.page.click('#open-admin');
    await admin.page.waitForSelector('#admin-screen:not([hidden])');
    await openAdminTab(admin.page, 'reports');
    const reports = admin.page.locator('#admin-reports > li.report');
    await reports.nth(1).waitFor();
    const messageReport = reports.filter({ hasText: 'Spam link' });
    const userReport = reports.filter({ hasText: 'Keeps posting spam' });
    await messageReport.locator('strong', { hasText: `Message by ${daveName}, reported by ${carolName}` }).waitFor();
    await userReport.locator('strong', { hasText: `User ${daveName}, reported by ${carolName}` }).waitFor();
    // Deleting a message is not an action on a user report.
    assert.deepEqual(await userReport.locator('.report-action option').evaluateAll((os) => os.map((o) => o.value)), ['none', 'deactivate_user']);

    // Resolve with delete_message: Carol's page shows the tombstone without a reload.
    await messageReport.locator('.report-action').selectOption('delete_message');
    await messageReport.locator('.report-note').fill('Spam, removed');
    await messageReport.locator('.report-resolve-btn').click();
    await admin.page.locator('#admin-reports > li.report', { hasText: 'Spam link' }).waitFor({ state: 'detached' });
    const gone = carol.page.locator('#message-list > li.msg.deleted .msg-body', { hasText: 'message deleted' });
    await gone.waitFor();
    await message(carol.page, 'A perfectly fine message').waitFor();
    assert.equal(await message(carol.page, 'Buy cheap followers at spam.example').count(), 0);

    // The user report is closed with no action; both are in the resolved list with the outcome.
    await userReport.locator('.report-resolve-btn').click();
    await admin.page.locator('#admin-reports-empty').waitFor({ state: 'visible' });
    await admin.page.selectOption('#admin-report-status', 'resolved');
    const resolved = admin.page.locator('#admin-reports > li.report');
    await resolved.filter({ hasText: 'Resolved' }).nth(1).waitFor();
    await resolved.filter({ hasText: 'Spam link' }).locator('.report-outcome', { hasText: 'Delete the message — Spam, removed' }).waitFor();
    assert.equal(await resolved.locator('.report-resolve-btn').count(), 0, 'resolved reports have no actions');
  });

  test('deactivating a user from the admin page closes their open session; reactivating lets them back', async () => {
    await admin.page.click('#open-admin');
    await openAdminTab(admin.page, 'users');
    await searchUsers(admin.page, daveName);
    const row = admin.page.locator(`#admin-users > li.user[data-username="${daveName}"]`);
    assert.equal(await admin.page.locator('#admin-users > li.user').count(), 1, 'the search finds only Dave');
    await admin.page.locator('#admin-users-page', { hasText: 'Page 1 of 1 · 1 in all' }).waitFor();
    // An admin's own row has no button.
    await searchUsers(admin.page, adminName);
    await admin.page.locator(`#admin-users > li.user[data-username="${adminName}"] .badge-flag`, { hasText: 'admin' }).waitFor();
    assert.equal(await admin.page.locator(`#admin-users > li.user[data-username="${adminName}"] .user-toggle`).isHidden(), true);
    await searchUsers(admin.page, daveName);

    await row.locator('.user-toggle', { hasText: 'Deactivate' }).click();
    await admin.page.click('#confirm-ok');
    await row.locator('.badge-flag', { hasText: 'deactivated' }).waitFor();

    // Dave's open page is logged out by its socket closing, within moments.
    await dave.page.waitForSelector('#auth-screen:not([hidden])', { timeout: 5_000 });
    await dave.page.locator('#auth-error', { hasText: 'Your session has ended' }).waitFor();
    await dave.page.fill('#auth-username', daveName);
    await dave.page.fill('#auth-password', PASSWORD);
    await dave.page.click('#auth-submit');
    await dave.page.locator('#auth-error', { hasText: 'This account has been deactivated by an administrator.' }).waitFor();

    await row.locator('.user-toggle', { hasText: 'Reactivate' }).click();
    await row.locator('.user-toggle', { hasText: 'Deactivate' }).waitFor();
    await logIn(dave.page, server.url, daveName);

    // The audit log has both actions, newest first, by the admin, about Dave.
    await openAdminTab(admin.page, 'audit');
    const entries = admin.page.locator('#admin-audit > li.audit-entry');
    await entries.first().waitFor();
    const actions = await entries.evaluateAll((lis) => lis.map((li) => li.dataset.action));
    const re = actions.indexOf('admin.user_reactivated');
    const de = actions.indexOf('admin.user_deactivated');
    assert.ok(re >= 0 && de > re, `reactivation listed before deactivation: ${actions.join(', ')}`);
    await entries.nth(de).locator('.admin-item-meta', { hasText: `user:${daveId}` }).waitFor();
    await entries.nth(de).locator('span', { hasText: `by ${adminName}` }).first().waitFor();
  });

  test('rooms are searched, paged and deleted; members lose the room live', async () => {
    const adminToken = (await pageSession(admin.page)).token;
    // 21 rooms of one prefix: two pages of 20.
    const prefix = `Page${randomUUID().slice(0, 4)}`;
    for (let i = 0; i < 21; i++) {
      await rest(server.url, 'POST', '/rooms', { token: adminToken, body: { name: `${prefix} ${String(i).padStart(2, '0')}` } });
    }
    await admin.page.click('#open-admin');
    await openAdminTab(admin.page, 'rooms');
    await admin.page.fill('#admin-room-search', prefix);
    await admin.page.locator('#admin-rooms-page', { hasText: 'Page 1 of 2 · 21 in all' }).waitFor();
    assert.equal(await admin.page.locator('#admin-rooms > li.room').count(), 20);
    await admin.page.click('#admin-rooms-next');
    await admin.page.locator('#admin-rooms-page', { hasText: 'Page 2 of 2' }).waitFor();
    assert.equal(await admin.page.locator('#admin-rooms > li.room').count(), 1);
    assert.equal(await admin.page.locator('#admin-rooms-next').isDisabled(), true);

    // Delete Carol's room: it leaves her sidebar and her open view.
    await carol.page.locator(`#my-rooms [data-room-id="${roomId}"]`).waitFor();
    await admin.page.fill('#admin-room-search', roomName);
    const row = admin.page.locator(`#admin-rooms > li.room[data-room-id="${roomId}"]`);
    await row.locator('.room-delete').click();
    await admin.page.click('#confirm-ok');
    await row.waitFor({ state: 'detached' });
    await carol.page.locator(`#my-rooms [data-room-id="${roomId}"]`).waitFor({ state: 'detached' });
    assert.equal(await carol.page.locator('#room-pane').isHidden(), true);
  });
});
