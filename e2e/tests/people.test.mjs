// Browser tests of direct messages, people search, contacts, blocks and calls (see ../README.md).
// Alice and Bob each use their own Chromium (launched with a fake microphone and no permission
// prompt), so the call goes between two browsers over loopback.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { FAKE_MEDIA_ARGS, launchBrowser, newPage, pageSession, send, shownMessages, signUp } from '../lib/browser.mjs';
import { NebulaServer, rest, uniqueName } from '../lib/server.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Retry an assertion until it passes or the time is up (then throw its last error). */
async function eventually(fn, { timeout = 20_000, interval = 150 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(interval);
    }
  }
}

/** The names in the "Direct messages" list, top first. */
function dmNames(page) {
  return page.$$eval('#dm-list .dm-item .room-name', (els) => els.map((e) => e.textContent));
}

/** Open the conversation with `name` from the sidebar (waiting until it is listed). */
async function openDmWith(page, name) {
  const item = page.locator('#dm-list .dm-item', { hasText: name });
  await item.waitFor({ timeout: 20_000 });
  await item.click();
  await page.locator('#room-title', { hasText: name }).waitFor();
}

/** Search People for `name` and return the result's row. */
async function findPerson(page, name) {
  await page.fill('#people-search', name);
  const row = page.locator('#people-results li.person', { hasText: name });
  await row.waitFor();
  return row;
}

describe('people: direct messages, contacts, blocks, calls', () => {
  let server;
  let browserA;
  let browserB;
  let alice; // {context, page}
  let bob;
  const aliceName = uniqueName('alice');
  const bobName = uniqueName('bob');
  const carolName = uniqueName('carol');
  let carol; // {token, user} over REST

  before(async () => {
    // Short ring timeout so that the unanswered call ends within the test.
    server = await NebulaServer.create({ RATE_LIMIT_MESSAGES_PER_SECOND: '0', CALL_RING_TIMEOUT_SECONDS: '8' });
    browserA = await launchBrowser(FAKE_MEDIA_ARGS);
    browserB = await launchBrowser(FAKE_MEDIA_ARGS);
    alice = await newPage(browserA);
    bob = await newPage(browserB);
    for (const p of [alice.page, bob.page]) p.setDefaultTimeout(15_000);
    await signUp(alice.page, server.url, aliceName);
    await signUp(bob.page, server.url, bobName);
    carol = await rest(server.url, 'POST', '/auth/register', { body: { username: carolName, password: 'correct-horse-battery' } });
  });

  after(async () => {
    for (const p of [alice, bob]) {
      if (p?.page && p.page.errors.length) console.log('page errors:', p.page.errors);
    }
    await browserA?.close();
    await browserB?.close();
    if (server) {
      if (process.env.KEEP_E2E_DIR) console.log('server log:', server.logPath);
      await server.stop();
    }
  });

  test('user search → start a conversation → messages on both sides, ordered by latest', async () => {
    // Searching never lists oneself.
    await alice.page.fill('#people-search', aliceName);
    await alice.page.locator('#people-empty').waitFor();
    const row = await findPerson(alice.page, bobName);
    await row.locator('.message-btn').click();
    await alice.page.locator('#room-title', { hasText: bobName }).waitFor();
    assert.match(await alice.page.textContent('#room-meta'), /Direct message/);
    assert.equal(await alice.page.locator('#leave-room').isVisible(), false);
    assert.equal(await alice.page.locator('#call-btn').isVisible(), true);
    // Listed under Direct messages by Bob's name, not under My rooms.
    await alice.page.locator('#dm-list .dm-item', { hasText: bobName }).waitFor();
    assert.equal(await alice.page.locator('#my-rooms .room-item').count(), 0);

    await send(alice.page, 'Hi Bob, just us');
    await alice.page.locator('#message-list .msg-body', { hasText: 'Hi Bob, just us' }).waitFor();

    // Bob never asked for this room: it shows up in his list by Alice's name, unread.
    const bobItem = bob.page.locator('#dm-list .dm-item', { hasText: aliceName });
    await bobItem.waitFor({ timeout: 20_000 });
    await eventually(async () => assert.equal(await bobItem.locator('.badge').textContent(), '1'));
    await bobItem.click();
    await bob.page.locator('#message-list .msg-body', { hasText: 'Hi Bob, just us' }).waitFor();
    await send(bob.page, 'Hi Alice');
    await alice.page.locator('#message-list .msg-body', { hasText: 'Hi Alice' }).waitFor();
    assert.deepEqual(
      (await shownMessages(bob.page)).map((m) => m.text),
      ['Hi Bob, just us', 'Hi Alice'],
    );

    // Carol writes to Alice (over REST): her conversation comes first in Alice's list…
    const dm = await rest(server.url, 'POST', '/dms', { token: carol.token, body: { username: aliceName } });
    assert.equal(dm.kind, 'direct');
    await rest(server.url, 'POST', `/rooms/${dm.id}/messages`, { token: carol.token, body: { content: 'Carol here' } });
    await eventually(async () => assert.deepEqual(await dmNames(alice.page), [carolName, bobName]));
    // …until Bob writes again, which moves his to the top at once.
    await send(bob.page, 'Me again');
    await eventually(async () => assert.deepEqual(await dmNames(alice.page), [bobName, carolName]), { timeout: 5_000 });
  });

  test('contact request from a profile card, accepted in the other browser; a decline', async () => {
    // Alice opens Bob's card by clicking his name on a message of his.
    await alice.page.locator('#dm-list .dm-item', { hasText: bobName }).click();
    await alice.page.locator('#message-list li.msg:not(.mine) .msg-author', { hasText: bobName }).first().click();
    const card = alice.page.locator('#profile-dialog[open]');
    await card.locator('#profile-name', { hasText: bobName }).waitFor();
    await card.locator('#profile-contact', { hasText: 'Add contact' }).click();
    await card.locator('#profile-status', { hasText: 'Contact request sent.' }).waitFor();
    assert.equal(await card.locator('#profile-contact').isDisabled(), true);
    await alice.page.locator('#requests-out li', { hasText: bobName }).waitFor();

    // Bob sees the incoming request and accepts it.
    const incoming = bob.page.locator('#requests-in li', { hasText: aliceName });
    await incoming.waitFor({ timeout: 20_000 });
    await incoming.locator('.accept-request').click();
    await bob.page.locator('#contact-list li', { hasText: aliceName }).waitFor();
    assert.equal(await bob.page.locator('#requests-section').isVisible(), false);

    // Alice's open card and her lists follow.
    await card.locator('#profile-status', { hasText: /Contact since/ }).waitFor({ timeout: 20_000 });
    await card.locator('#profile-contact', { hasText: 'Remove contact' }).waitFor();
    await alice.page.locator('#contact-list li', { hasText: bobName }).waitFor();
    assert.equal(await alice.page.locator('#requests-out li').count(), 0);
    await alice.page.click('#profile-close');

    // Carol asks Bob; Bob declines: it is gone on both sides.
    await rest(server.url, 'POST', '/contacts/requests', { token: carol.token, body: { username: bobName } });
    const carolReq = bob.page.locator('#requests-in li', { hasText: carolName });
    await carolReq.waitFor({ timeout: 20_000 });
    await carolReq.locator('.decline-request').click();
    await carolReq.waitFor({ state: 'detached' });
    const theirs = await rest(server.url, 'GET', '/contacts/requests', { token: carol.token });
    assert.equal(theirs.outgoing.length, 0);
    assert.equal(await bob.page.locator('#contact-list li', { hasText: carolName }).count(), 0);
  });

  test('block from a profile card: sending fails visibly on both sides; unblock restores it', async () => {
    await openDmWith(alice.page, bobName);
    await openDmWith(bob.page, aliceName);

    // Alice opens Bob's card from a search result and blocks him.
    const row = await findPerson(alice.page, bobName);
    await row.locator('.person-name').click();
    const card = alice.page.locator('#profile-dialog[open]');
    await card.locator('#profile-block', { hasText: 'Block' }).click();
    await card.locator('#profile-status', { hasText: 'You blocked them' }).waitFor();
    await card.locator('#profile-block', { hasText: 'Unblock' }).waitFor();
    assert.equal(await card.locator('#profile-message').isVisible(), false);
    await alice.page.click('#profile-close');
    // Blocking ended the contact.
    await alice.page.locator('#contacts-section').waitFor({ state: 'hidden' });
    await alice.page.locator('#room-meta', { hasText: 'you blocked them' }).waitFor();

    await send(alice.page, 'Blocked words');
    const failed = alice.page.locator('#pending-list li.failed', { hasText: 'Blocked words' });
    await failed.waitFor();
    assert.match(await failed.locator('.pending-text').textContent(), /Not sent — you cannot message this user/);
    await send(bob.page, 'Can you hear me?');
    await bob.page.locator('#pending-list li.failed', { hasText: 'Can you hear me?' }).waitFor();
    // The call button refuses too: the server answers the invite with an error.
    await bob.page.click('#call-btn');
    await bob.page.locator('#call-panel[data-state="ended"][data-reason="cannot_message_user"]').waitFor();
    await bob.page.click('#call-dismiss');

    // Unblock from the card in the room header; Retry delivers the message once.
    await alice.page.locator('#room-title .peer-name').click();
    await card.locator('#profile-block', { hasText: 'Unblock' }).click();
    await card.locator('#profile-block', { hasText: /^Block$/ }).waitFor();
    await alice.page.click('#profile-close');
    await failed.locator('.retry-btn').click();
    await failed.waitFor({ state: 'detached' });
    await bob.page.locator('#message-list .msg-body', { hasText: 'Blocked words' }).waitFor();
    await send(bob.page, 'Back again');
    await alice.page.locator('#message-list .msg-body', { hasText: 'Back again' }).waitFor();
    const texts = (await shownMessages(bob.page)).map((m) => m.text);
    assert.equal(texts.filter((t) => t === 'Blocked words').length, 1);
  });

  test('audio call between two browsers: ring, accept, connected, hang up; decline; timeout', async () => {
    await openDmWith(alice.page, bobName);
    // Bob has a second tab: it rings too, and stops when the first one answers.
    const bob2 = await newPage(browserB);
    bob2.page.setDefaultTimeout(15_000);
    try {
      await bob2.page.goto(`${server.url}/`);
      const s = await pageSession(bob.page);
      await bob2.page.evaluate((v) => sessionStorage.setItem('nebula.session', JSON.stringify(v)), s);
      await bob2.page.reload();
      await bob2.page.waitForSelector('#conn-status[data-state="online"]');

      await alice.page.click('#call-btn');
      await alice.page.locator('#call-panel[data-state="outgoing"]').waitFor();
      for (const p of [bob.page, bob2.page]) {
        await p.locator('#call-panel[data-state="incoming"] #call-peer', { hasText: aliceName }).waitFor();
      }
      await bob.page.click('#call-accept');
      await bob2.page.locator('#call-panel[data-state="ended"][data-reason="answered_elsewhere"]').waitFor();
      assert.match(await bob2.page.textContent('#call-status'), /Answered on another device/);

      // Both peer connections reach "connected" over loopback, audio flowing.
      await alice.page.locator('#call-panel[data-state="connected"][data-pc-state="connected"]').waitFor({ timeout: 30_000 });
      await bob.page.locator('#call-panel[data-state="connected"][data-pc-state="connected"]').waitFor({ timeout: 30_000 });
      const hasRemoteAudio = (p) => p.evaluate(() => !!document.getElementById('call-audio').srcObject?.getAudioTracks().length);
      assert.equal(await hasRemoteAudio(alice.page), true);
      assert.equal(await hasRemoteAudio(bob.page), true);

      await alice.page.click('#call-hangup');
      await bob.page.locator('#call-panel[data-state="ended"] #call-status', { hasText: `${aliceName} hung up.` }).waitFor();
      await alice.page.locator('#call-panel[data-state="ended"] #call-status', { hasText: 'You hung up.' }).waitFor();

      // A declined call: the caller is told, the other tab stops ringing.
      await alice.page.click('#call-btn');
      await bob.page.locator('#call-panel[data-state="incoming"]').waitFor();
      await bob2.page.locator('#call-panel[data-state="incoming"]').waitFor();
      await bob.page.click('#call-reject');
      await alice.page.locator('#call-panel[data-state="ended"] #call-status', { hasText: `${bobName} declined the call.` }).waitFor();
      await bob2.page.locator('#call-panel[data-state="ended"][data-reason="rejected_elsewhere"]').waitFor();

      // Nobody answers: the server ends it (CALL_RING_TIMEOUT_SECONDS=8) on both sides.
      await alice.page.click('#call-btn');
      await bob.page.locator('#call-panel[data-state="incoming"]').waitFor();
      await alice.page.locator('#call-panel[data-state="ended"][data-reason="timeout"] #call-status', { hasText: 'No answer.' }).waitFor({ timeout: 20_000 });
      await bob.page.locator('#call-panel[data-state="ended"][data-reason="timeout"] #call-status', { hasText: 'Missed call.' }).waitFor();

      // Connected, then the caller's tab goes away: the callee hears "disconnected".
      await bob2.context.close();
      await alice.page.click('#call-btn');
      await bob.page.click('#call-panel[data-state="incoming"] #call-accept');
      await bob.page.locator('#call-panel[data-pc-state="connected"]').waitFor({ timeout: 30_000 });
      await alice.context.close();
      await bob.page
        .locator('#call-panel[data-state="ended"][data-reason="disconnected"] #call-status', { hasText: `${aliceName} was disconnected.` })
        .waitFor({ timeout: 20_000 });
    } finally {
      await bob2.context.close().catch(() => {});
    }
    // No script errors (a 404 for GET /voip/turn, which has no TURN server here, is expected).
    assert.deepEqual(
      bob.page.errors.filter((e) => !/Failed to load resource.*404/.test(e)),
      [],
    );
  });
});
