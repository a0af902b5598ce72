// Browser tests of the web client against the real server (see ../README.md).
// Run: cd e2e && npm ci && node --test

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { launchBrowser, logIn, newPage, pageSession, send, shownMessages, signUp, waitOnline } from '../lib/browser.mjs';
import { NebulaServer, rest, uniqueName } from '../lib/server.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Retry an assertion until it passes or the time is up (then throw its last error). */
async function eventually(fn, { timeout = 15_000, interval = 150 } = {}) {
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

/** Every message shown once, in strictly increasing and gap-free seq order from `from`. */
function assertContiguous(msgs, from = 1) {
  const seqs = msgs.map((m) => m.seq);
  assert.deepEqual(
    seqs,
    Array.from({ length: seqs.length }, (_, i) => from + i),
    `seqs not contiguous: ${seqs.join(',')}`,
  );
}

function countOf(msgs, text) {
  return msgs.filter((m) => m.text === text).length;
}

async function currentRoomId(page) {
  const hash = await page.evaluate(() => location.hash);
  const m = /^#room=(.+)$/.exec(hash);
  assert.ok(m, `no room in the URL: ${hash}`);
  return m[1];
}

describe('Nebula web client', () => {
  let server;
  let browser;
  let alice; // {context, page}
  let bob;
  const aliceName = uniqueName('alice');
  const bobName = uniqueName('bob');
  const roomName = `Lounge ${randomUUID().slice(0, 6)}`;
  let roomId;

  before(async () => {
    // The message rate limit is off so the history test can post 130 messages quickly; the
    // server's own tests cover the limiter.
    server = await NebulaServer.create({ RATE_LIMIT_MESSAGES_PER_SECOND: '0' });
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close().catch(() => {});
    if (server) {
      if (process.exitCode) console.error(`--- server log tail ---\n${server.logTail(60)}`);
      await server.stop();
    }
  });

  test('two users: create, find in the public list, join, chat both ways, typing, presence, read', async () => {
    alice = await newPage(browser);
    bob = await newPage(browser);
    for (const p of [alice.page, bob.page]) p.setDefaultTimeout(15_000);

    await signUp(alice.page, server.url, aliceName);
    await alice.page.click('#new-room');
    await alice.page.fill('#new-room-name', roomName);
    await alice.page.fill('#new-room-description', 'Where everyone hangs out');
    await alice.page.click('#create-room-submit');
    await alice.page.locator('#room-title', { hasText: roomName }).waitFor();
    roomId = await currentRoomId(alice.page);

    await signUp(bob.page, server.url, bobName);
    // Search the public directory by part of the name, then join from the list.
    await bob.page.fill('#public-search', roomName.split(' ')[1].toUpperCase());
    const entry = bob.page.locator('#public-rooms li', { hasText: roomName });
    await entry.waitFor();
    assert.equal(await bob.page.locator('#public-rooms li').count(), 1, 'search should narrow the list');
    await entry.locator('.join-btn').click();
    await bob.page.locator('#room-title', { hasText: roomName }).waitFor();
    await bob.page.locator('#my-rooms .room-item', { hasText: roomName }).waitFor();
    assert.equal(await currentRoomId(bob.page), roomId);

    // Presence: each sees the other online in the room.
    await alice.page.locator('#online-list li', { hasText: bobName }).waitFor();
    await bob.page.locator('#online-list li', { hasText: aliceName }).waitFor();

    // Typing indicator, Alice → Bob.
    await alice.page.locator('#composer-input').pressSequentially('Hi Bob, welcome!', { delay: 15 });
    await bob.page.locator('#typing', { hasText: `${aliceName} is typing` }).waitFor();
    await alice.page.press('#composer-input', 'Enter');
    await bob.page.locator('#message-list .msg-body', { hasText: 'Hi Bob, welcome!' }).waitFor();
    await bob.page.waitForFunction(() => document.getElementById('typing').textContent === '');

    // Typing indicator, Bob → Alice, and the reply.
    await bob.page.locator('#composer-input').pressSequentially('Thanks Alice 👋', { delay: 15 });
    await alice.page.locator('#typing', { hasText: `${bobName} is typing` }).waitFor();
    await bob.page.press('#composer-input', 'Enter');
    await alice.page.locator('#message-list .msg-body', { hasText: 'Thanks Alice 👋' }).waitFor();

    for (const p of [alice.page, bob.page]) {
      await eventually(async () => {
        const msgs = await shownMessages(p);
        assert.deepEqual(
          msgs.map((m) => m.text),
          ['Hi Bob, welcome!', 'Thanks Alice 👋'],
        );
        assertContiguous(msgs);
        assert.equal(await p.locator('#pending-list li').count(), 0, 'nothing left pending');
      });
    }
    // Own messages are marked as such.
    assert.equal(await alice.page.locator('#message-list li.msg.mine').count(), 1);

    // Read markers: Bob has seen Alice's message → Alice sees it.
    await alice.page.locator('#message-list .receipts', { hasText: bobName }).waitFor();

    assert.deepEqual(alice.page.errors, [], 'no page errors (alice)');
    assert.deepEqual(bob.page.errors, [], 'no page errors (bob)');
  });

  test('message content is shown as literal text, never as HTML', async () => {
    const payloads = [
      '<img src=x onerror=alert(1)>',
      '<script>window.__pwned = 1</script>',
      '"><svg onload=alert(2)>',
    ];
    for (const text of payloads) await send(bob.page, text);
    for (const p of [alice.page, bob.page]) {
      await eventually(async () => {
        const msgs = await shownMessages(p);
        for (const text of payloads) assert.equal(countOf(msgs, text), 1, text);
      });
      assert.equal(await p.locator('#message-list img, #message-list script, #message-list .msg-body svg').count(), 0);
      assert.equal(await p.locator('img[src="x"]').count(), 0);
      assert.equal(await p.evaluate(() => window.__pwned), undefined);
    }
    await sleep(300);
    assert.deepEqual(alice.page.dialogs, [], 'no dialog opened (alice)');
    assert.deepEqual(bob.page.dialogs, [], 'no dialog opened (bob)');
  });

  test('server killed and restarted: reconnecting → online, nothing missing, nothing doubled', async (t) => {
    const { token: bobToken } = await pageSession(bob.page);

    await server.kill('SIGKILL');
    await alice.page.waitForSelector('#conn-status[data-state="reconnecting"]');
    await bob.page.waitForSelector('#conn-status[data-state="reconnecting"]');

    // Alice writes while the server is down: the send fails visibly, with a retry button.
    const offlineText = 'written while the server was down';
    await send(alice.page, offlineText);
    const failed = alice.page.locator('#pending-list li.failed', { hasText: offlineText });
    await failed.waitFor();
    assert.equal(await failed.locator('.retry-btn').isVisible(), true);

    await server.start();
    // Messages posted while the pages are still reconnecting (REST, as Bob).
    const during = ['during the outage 1', 'during the outage 2', 'during the outage 3'];
    for (const content of during) {
      await rest(server.url, 'POST', `/rooms/${roomId}/messages`, {
        token: bobToken,
        body: { content, client_msg_id: randomUUID() },
      });
    }
    // Usually still reconnecting here (backoff), so these arrive by the since_seq replay.
    const states = await Promise.all([alice.page, bob.page].map((p) => p.getAttribute('#conn-status', 'data-state')));
    t.diagnostic(`page states when the outage messages were posted: ${states.join(', ')}`);
    await waitOnline(alice.page);
    await waitOnline(bob.page);

    // And after both are back: one more over REST, and Alice's retry (same client_msg_id).
    const afterText = 'after the reconnect';
    await rest(server.url, 'POST', `/rooms/${roomId}/messages`, {
      token: bobToken,
      body: { content: afterText, client_msg_id: randomUUID() },
    });
    await failed.locator('.retry-btn').click();

    for (const p of [alice.page, bob.page]) {
      await eventually(async () => {
        const msgs = await shownMessages(p);
        for (const t of [...during, afterText, offlineText]) assert.equal(countOf(msgs, t), 1, `"${t}" once`);
        assertContiguous(msgs);
        assert.equal(await p.locator('#pending-list li').count(), 0, 'nothing left pending');
      }, { timeout: 20_000 });
    }
    // The server agrees: as many messages as the pages show.
    const latest = await rest(server.url, 'GET', `/rooms/${roomId}/messages?after_seq=0&limit=100`, { token: bobToken });
    assert.equal(latest.messages.length, (await shownMessages(alice.page)).length);
  });

  test('older history loads as you scroll up, without gaps or duplicates', async () => {
    const { token } = await pageSession(alice.page);
    const room = await rest(server.url, 'POST', '/rooms', { token, body: { name: `History ${randomUUID().slice(0, 6)}` } });
    const total = 130;
    for (let i = 1; i <= total; i++) {
      await rest(server.url, 'POST', `/rooms/${room.id}/messages`, {
        token,
        body: { content: `history message ${i}`, client_msg_id: randomUUID() },
      });
    }
    // A fresh page load straight into the room (the session survives in sessionStorage).
    await alice.page.goto(`${server.url}/#room=${room.id}`);
    await alice.page.reload();
    await waitOnline(alice.page);
    await alice.page.locator('#room-title', { hasText: room.name }).waitFor();
    await eventually(async () => assert.ok((await shownMessages(alice.page)).length >= 50));
    const first = await shownMessages(alice.page);
    assert.equal(first.at(-1).text, `history message ${total}`, 'opens at the newest message');
    assert.ok(first.length < total, 'does not load everything at once');

    await eventually(
      async () => {
        await alice.page.$eval('#scroller', (s) => (s.scrollTop = 0));
        const msgs = await shownMessages(alice.page);
        assert.equal(msgs.length, total);
      },
      { timeout: 20_000, interval: 300 },
    );
    const msgs = await shownMessages(alice.page);
    assertContiguous(msgs);
    assert.deepEqual(
      msgs.map((m) => m.text),
      Array.from({ length: total }, (_, i) => `history message ${i + 1}`),
    );
    await alice.page.locator('#history-status', { hasText: 'beginning of the room' }).waitFor();

    // Back to the shared room for the next tests.
    await alice.page.click(`#my-rooms .room-item:has-text("${roomName}")`);
    await alice.page.locator('#room-title', { hasText: roomName }).waitFor();
  });

  test('private room: owner adds a member by username; phone-width layout works', async () => {
    // Carol exists already (registered over REST) and logs in on a phone-sized screen.
    const carolName = uniqueName('carol');
    await rest(server.url, 'POST', '/auth/register', { body: { username: carolName, password: 'correct-horse-battery' } });

    const privateName = `Secret ${randomUUID().slice(0, 6)}`;
    await alice.page.click('#new-room');
    await alice.page.fill('#new-room-name', privateName);
    await alice.page.check('#new-room-private');
    await alice.page.click('#create-room-submit');
    await alice.page.locator('#room-title', { hasText: privateName }).waitFor();
    await alice.page.click('#members-toggle');
    await alice.page.locator('#add-member-form').waitFor();
    await alice.page.fill('#add-member-username', carolName);
    await alice.page.click('#add-member-form button[type="submit"]');
    await alice.page.locator('#member-list li', { hasText: carolName }).waitFor();
    await send(alice.page, 'psst, Carol');

    const carol = await newPage(browser, { viewport: { width: 375, height: 740 } });
    carol.page.setDefaultTimeout(15_000);
    try {
      await logIn(carol.page, server.url, carolName);
      // The private room is in her rooms but not in the public directory.
      const item = carol.page.locator('#my-rooms .room-item', { hasText: privateName });
      await item.waitFor();
      await carol.page.locator('#public-rooms li', { hasText: roomName }).waitFor();
      assert.equal(await carol.page.locator('#public-rooms li', { hasText: privateName }).count(), 0);

      // Phone layout: the list, then the room full-screen with a back button.
      assert.equal(await carol.page.locator('#room-view').isVisible(), false);
      await item.click();
      await carol.page.locator('#message-list .msg-body', { hasText: 'psst, Carol' }).waitFor();
      assert.equal(await carol.page.locator('#sidebar').isVisible(), false);
      assert.equal(await carol.page.locator('#room-back').isVisible(), true);
      assert.equal(await carol.page.locator('#composer-input').isVisible(), true);
      assert.equal(await carol.page.locator('#conn-status').isVisible(), true);
      const overflow = await carol.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `no horizontal scrolling (overflow ${overflow}px)`);
      await send(carol.page, 'got it 👍');
      await alice.page.locator('#message-list .msg-body', { hasText: 'got it 👍' }).waitFor();
      await carol.page.click('#room-back');
      await carol.page.locator('#sidebar').waitFor();

      // Added to another private room while signed in: it shows up at once (`room.added`),
      // with its messages; nothing polls for it.
      const { token } = await pageSession(alice.page);
      const laterName = `Later ${randomUUID().slice(0, 6)}`;
      const later = await rest(server.url, 'POST', '/rooms', { token, body: { name: laterName, is_private: true } });
      await rest(server.url, 'POST', `/rooms/${later.id}/messages`, { token, body: { content: 'welcome aboard' } });
      await rest(server.url, 'POST', `/rooms/${later.id}/members`, { token, body: { username: carolName } });
      const added = carol.page.locator('#my-rooms .room-item', { hasText: laterName });
      await added.waitFor();
      await added.click();
      await carol.page.locator('#message-list .msg-body', { hasText: 'welcome aboard' }).waitFor();
      await carol.page.click('#room-back');
      await carol.page.locator('#sidebar').waitFor();
      assert.deepEqual(carol.page.dialogs, []);
      assert.deepEqual(carol.page.errors, []);
    } finally {
      await carol.context.close();
    }
    await alice.page.click(`#my-rooms .room-item:has-text("${roomName}")`);
    await alice.page.locator('#room-title', { hasText: roomName }).waitFor();
  });

  test('a rejected token sends the user back to the login screen', async () => {
    const ctx = await newPage(browser);
    try {
      await ctx.context.addInitScript(() => {
        if (!sessionStorage.getItem('nebula.test.seeded')) {
          sessionStorage.setItem('nebula.test.seeded', '1');
          sessionStorage.setItem(
            'nebula.session',
            JSON.stringify({ token: 'not-a-jwt', user: { id: '00000000-0000-0000-0000-000000000000', username: 'ghost' } }),
          );
        }
      });
      await ctx.page.goto(`${server.url}/`);
      await ctx.page.locator('#auth-screen').waitFor({ state: 'visible', timeout: 15_000 });
      assert.equal(await ctx.page.locator('#chat-screen').isVisible(), false);
      assert.equal(await ctx.page.evaluate(() => sessionStorage.getItem('nebula.session')), null);
    } finally {
      await ctx.context.close();
    }
  });

  test('when Bob closes his tab, Alice sees him go offline', async () => {
    await alice.page.locator('#online-list li', { hasText: bobName }).waitFor();
    await bob.context.close();
    // The contract allows up to 10 s for the offline transition.
    await alice.page.locator('#online-list li', { hasText: bobName }).waitFor({ state: 'detached', timeout: 20_000 });
    assert.deepEqual(alice.page.dialogs, []);
  });
});
