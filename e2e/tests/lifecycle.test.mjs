// Browser tests of the message lifecycle in the web client: replies, edits, deletes, reactions,
// catching up after a lost connection, unread badges and the "New messages" divider.
// Run: cd e2e && npm ci && node --test

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { launchBrowser, newPage, pageSession, send, signUp, waitOnline } from '../lib/browser.mjs';
import { NebulaServer, rest, uniqueName } from '../lib/server.mjs';

/** The `<li>` of the message whose text is exactly `text`. */
function message(page, text) {
  return page.locator('#message-list > li.msg').filter({
    has: page.locator('.msg-body', { hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }),
  });
}

/** Click one of a message's action buttons (they show on hover). */
async function act(page, li, action) {
  await li.hover();
  await li.locator(`.act-${action}`).click();
}

/** The reaction chips of a message as {emoji: count}. */
function chips(li) {
  return li.locator('.reaction').evaluateAll((els) =>
    Object.fromEntries(els.map((b) => [b.querySelector('.reaction-emoji').textContent, Number(b.querySelector('.reaction-count').textContent)])),
  );
}

/** Wait until the chips of the message are exactly `expected`. */
async function waitChips(page, li, expected) {
  const want = JSON.stringify(expected);
  await page.waitForFunction(
    ([el, want]) => {
      const got = Object.fromEntries(
        [...el.querySelectorAll('.reaction')].map((b) => [
          b.querySelector('.reaction-emoji').textContent,
          Number(b.querySelector('.reaction-count').textContent),
        ]),
      );
      return JSON.stringify(got) === want;
    },
    [await li.elementHandle(), want],
  );
}

/**
 * A page's WebSocket that the test can cut off and let back (the page itself stays open);
 * `sent` records the frames the page sent, parsed.
 */
async function cuttableSocket(page) {
  const ctl = { offline: false, routes: new Set(), sent: [] };
  await page.routeWebSocket(/\/ws\?/, (ws) => {
    if (ctl.offline) {
      ws.close({ code: 1001, reason: 'test: offline' });
      return;
    }
    const server = ws.connectToServer();
    ws.onMessage((frame) => {
      ctl.sent.push(JSON.parse(frame));
      server.send(frame);
    });
    ctl.routes.add(ws);
  });
  ctl.cut = async () => {
    ctl.offline = true;
    for (const ws of ctl.routes) await ws.close({ code: 1001, reason: 'test: offline' });
    ctl.routes.clear();
  };
  ctl.restore = () => {
    ctl.offline = false;
  };
  return ctl;
}

async function openRoomByUrl(page, base, roomId, name) {
  await page.goto(`${base}/#room=${roomId}`);
  await page.reload();
  await waitOnline(page);
  await page.locator('#room-title', { hasText: name }).waitFor();
}

describe('message lifecycle in the web client', () => {
  let server;
  let browser;
  let alice; // {context, page}: the room's owner
  let bob; // a member, whose socket the test can cut
  let bobSocket;
  let aliceToken;
  let bobToken;
  const aliceName = uniqueName('alice');
  const bobName = uniqueName('bob');
  const roomName = `Lifecycle ${randomUUID().slice(0, 6)}`;
  let roomId;

  before(async () => {
    server = await NebulaServer.create({ RATE_LIMIT_MESSAGES_PER_SECOND: '0' });
    browser = await launchBrowser();
    alice = await newPage(browser);
    bob = await newPage(browser);
    bobSocket = await cuttableSocket(bob.page);
    for (const p of [alice.page, bob.page]) p.setDefaultTimeout(15_000);
    await signUp(alice.page, server.url, aliceName);
    await signUp(bob.page, server.url, bobName);
    aliceToken = (await pageSession(alice.page)).token;
    bobToken = (await pageSession(bob.page)).token;
    roomId = (await rest(server.url, 'POST', '/rooms', { token: aliceToken, body: { name: roomName } })).id;
    await rest(server.url, 'POST', `/rooms/${roomId}/members`, { token: bobToken, body: {} });
    await openRoomByUrl(alice.page, server.url, roomId, roomName);
    await openRoomByUrl(bob.page, server.url, roomId, roomName);
  });

  after(async () => {
    await browser?.close().catch(() => {});
    if (server) {
      if (process.exitCode) console.error(`--- server log tail ---\n${server.logTail(60)}`);
      await server.stop();
    }
  });

  test('reply, edit, delete, react and unreact, each seen live by the other user', async () => {
    await send(alice.page, 'What time is the launch?');
    const question = (p) => message(p, 'What time is the launch?');
    await question(bob.page).waitFor();

    // Bob replies: the composer says to whom, the reply quotes the question on both pages.
    await act(bob.page, question(bob.page), 'reply');
    await bob.page.locator('#reply-bar', { hasText: `Replying to ${aliceName}: What time is the launch?` }).waitFor();
    await send(bob.page, 'At noon.');
    assert.equal(await bob.page.locator('#reply-bar').isVisible(), false, 'the reply bar closes once sent');
    for (const p of [alice.page, bob.page]) {
      const quote = message(p, 'At noon.').locator('.reply-quote');
      await quote.locator('.reply-author', { hasText: aliceName }).waitFor();
      await quote.locator('.reply-text', { hasText: 'What time is the launch?' }).waitFor();
    }

    // Only the author may edit; only the author, owners and admins may delete.
    await question(bob.page).hover();
    assert.equal(await question(bob.page).locator('.act-edit').count(), 0, 'Bob cannot edit Alice’s message');
    assert.equal(await question(bob.page).locator('.act-delete').count(), 0, 'Bob cannot delete Alice’s message');
    await message(alice.page, 'At noon.').hover();
    assert.equal(await message(alice.page, 'At noon.').locator('.act-edit').count(), 0, 'Alice cannot edit Bob’s message');
    assert.equal(await message(alice.page, 'At noon.').locator('.act-delete').count(), 1, 'the owner may delete any message');

    // Alice edits her question: an empty text is refused in place, Escape cancels, Enter saves.
    await act(alice.page, question(alice.page), 'edit');
    const editor = alice.page.locator('#message-list .edit-input');
    await editor.fill('   ');
    await editor.press('Enter');
    await alice.page.locator('#message-list .edit-error', { hasText: 'cannot be empty' }).waitFor();
    await editor.press('Escape');
    await question(alice.page).waitFor();
    assert.equal(await alice.page.locator('#message-list .msg-edited').count(), 0, 'cancelled: not edited');
    await act(alice.page, question(alice.page), 'edit');
    await editor.fill('What time is the launch on Friday?');
    await editor.press('Enter');
    for (const p of [alice.page, bob.page]) {
      const edited = message(p, 'What time is the launch on Friday?');
      await edited.locator('.msg-edited', { hasText: '(edited)' }).waitFor();
      assert.match(await edited.locator('.msg-edited').getAttribute('title'), /^Edited /);
      // The reply's quote follows the edit.
      await message(p, 'At noon.').locator('.reply-text', { hasText: 'on Friday?' }).waitFor();
    }

    // Reactions: Bob picks 👍, Alice adds hers by clicking the chip, then takes it back.
    const q = (p) => message(p, 'What time is the launch on Friday?');
    await act(bob.page, q(bob.page), 'react');
    await bob.page.locator('.emoji-picker .emoji-choice', { hasText: '👍' }).click();
    for (const p of [alice.page, bob.page]) await waitChips(p, q(p), { '👍': 1 });
    await q(bob.page).locator('.reaction.mine', { hasText: '👍' }).waitFor();
    assert.equal(await q(alice.page).locator('.reaction.mine').count(), 0, 'not Alice’s reaction');
    await q(alice.page).locator('.reaction', { hasText: '👍' }).click();
    for (const p of [alice.page, bob.page]) await waitChips(p, q(p), { '👍': 2 });
    await q(alice.page).locator('.reaction.mine', { hasText: '👍' }).waitFor();
    // Who reacted shows on hover.
    await q(alice.page).locator('.reaction').hover();
    await alice.page.waitForFunction(
      ([el, names]) => names.every((n) => (el.querySelector('.reaction')?.title || '').includes(n)),
      [await q(alice.page).elementHandle(), [aliceName, bobName]],
    );
    await q(alice.page).locator('.reaction', { hasText: '👍' }).click();
    for (const p of [alice.page, bob.page]) await waitChips(p, q(p), { '👍': 1 });
    await q(alice.page).locator('.reaction:not(.mine)', { hasText: '👍' }).waitFor();
    await q(bob.page).locator('.reaction', { hasText: '👍' }).click();
    for (const p of [alice.page, bob.page]) await waitChips(p, q(p), {});

    // Alice deletes her question: a tombstone in its place, and the reply's quote says so.
    const seq = await q(alice.page).getAttribute('data-seq');
    await act(alice.page, q(alice.page), 'delete');
    await alice.page.locator('#confirm-dialog[open]').waitFor();
    await alice.page.click('#confirm-ok');
    for (const p of [alice.page, bob.page]) {
      const tomb = p.locator(`#message-list > li.msg.deleted[data-seq="${seq}"] .msg-body.tombstone`);
      await tomb.waitFor();
      assert.equal(await tomb.textContent(), 'message deleted');
      await message(p, 'At noon.').locator('.reply-quote .reply-text', { hasText: 'message deleted' }).waitFor();
    }
    assert.equal(await bob.page.locator(`#message-list > li[data-seq="${seq}"] .msg-actions button`).count(), 0, 'no actions on a tombstone');

    for (const p of [alice.page, bob.page]) assert.deepEqual(p.errors, [], 'no page errors');
  });

  test('a reply to a message outside the loaded history: quoted, and a click jumps there', async () => {
    const anchor = 'The plan, for the record';
    const { id: anchorId } = await rest(server.url, 'POST', `/rooms/${roomId}/messages`, {
      token: aliceToken,
      body: { content: anchor, client_msg_id: randomUUID() },
    });
    for (let i = 1; i <= 60; i++) {
      await rest(server.url, 'POST', `/rooms/${roomId}/messages`, {
        token: aliceToken,
        body: { content: `filler ${i}`, client_msg_id: randomUUID() },
      });
    }
    await rest(server.url, 'POST', `/rooms/${roomId}/messages`, {
      token: bobToken,
      body: { content: 'Agreed with the plan', client_msg_id: randomUUID(), reply_to: anchorId },
    });
    // A fresh load holds only the newest page, so the quoted message is fetched on its own.
    await openRoomByUrl(alice.page, server.url, roomId, roomName);
    const reply = message(alice.page, 'Agreed with the plan');
    await reply.locator('.reply-text', { hasText: anchor }).waitFor();
    assert.equal(await message(alice.page, anchor).count(), 0, 'the quoted message is not loaded yet');

    await reply.locator('.reply-quote').click();
    const target = message(alice.page, anchor);
    await target.and(alice.page.locator('.highlight')).waitFor();
    const inView = await target.evaluate((li) => {
      const r = li.getBoundingClientRect();
      const s = document.getElementById('scroller').getBoundingClientRect();
      return r.top >= s.top && r.bottom <= s.bottom;
    });
    assert.ok(inView, 'the quoted message is scrolled into view');
  });

  test('offline while the other edits, deletes and reacts: back online, the final state is shown', async () => {
    for (const text of ['keep me', 'edit me', 'delete me']) await send(alice.page, text);
    await message(bob.page, 'delete me').waitFor();
    await act(bob.page, message(bob.page, 'keep me'), 'react');
    await bob.page.locator('.emoji-picker .emoji-choice', { hasText: '👍' }).click();
    await waitChips(alice.page, message(alice.page, 'keep me'), { '👍': 1 });
    await bob.page.evaluate(() => (window.__samePage = true));

    await bobSocket.cut();
    await bob.page.waitForSelector('#conn-status[data-state="reconnecting"]');

    await act(alice.page, message(alice.page, 'edit me'), 'edit');
    await alice.page.locator('#message-list .edit-input').fill('edited while Bob was away');
    await alice.page.locator('#message-list .edit-input').press('Enter');
    await message(alice.page, 'edited while Bob was away').waitFor();
    const deletedSeq = await message(alice.page, 'delete me').getAttribute('data-seq');
    await act(alice.page, message(alice.page, 'delete me'), 'delete');
    await alice.page.click('#confirm-ok');
    await alice.page.locator(`#message-list > li.deleted[data-seq="${deletedSeq}"]`).waitFor();
    const keep = message(alice.page, 'keep me');
    await act(alice.page, keep, 'react');
    await alice.page.locator('.emoji-picker .emoji-choice', { hasText: '🎉' }).click();
    await waitChips(alice.page, keep, { '👍': 1, '🎉': 1 });
    await keep.locator('.reaction', { hasText: '👍' }).click(); // Alice adds hers: 2
    await waitChips(alice.page, keep, { '👍': 2, '🎉': 1 });
    await send(alice.page, 'posted while Bob was away');
    await message(alice.page, 'posted while Bob was away').waitFor();

    const sentBefore = bobSocket.sent.length;
    bobSocket.restore();
    await waitOnline(bob.page, 30_000);
    const edited = message(bob.page, 'edited while Bob was away');
    await edited.locator('.msg-edited').waitFor();
    await bob.page.locator(`#message-list > li.deleted[data-seq="${deletedSeq}"] .tombstone`).waitFor();
    await waitChips(bob.page, message(bob.page, 'keep me'), { '👍': 2, '🎉': 1 });
    await message(bob.page, 'posted while Bob was away').waitFor();
    assert.equal(await bob.page.evaluate(() => window.__samePage), true, 'the page caught up without a reload');
    // It resumed: the subscribe asked for the messages and the changes it had not seen.
    const resume = bobSocket.sent.slice(sentBefore).find((f) => f.type === 'subscribe' && f.room_id === roomId);
    assert.ok(resume, 'Bob subscribed to the room again');
    assert.ok(Number.isInteger(resume.since_seq) && resume.since_seq > 0, `since_seq: ${JSON.stringify(resume)}`);
    assert.ok(Number.isInteger(resume.since_rev) && resume.since_rev > 0, `since_rev: ${JSON.stringify(resume)}`);
    assert.equal(await message(bob.page, 'delete me').count(), 0);
    // Nothing twice, and the same list as Alice's, seq by seq.
    const list = (p) =>
      p.$$eval('#message-list > li.msg', (lis) =>
        lis.map((li) => `${li.dataset.seq}:${li.querySelector('.msg-body').textContent}:${li.querySelector('.msg-edited') ? 'e' : ''}`),
      );
    const bobs = await list(bob.page);
    assert.equal(new Set(bobs).size, bobs.length, 'no message shown twice');
    const alices = await list(alice.page);
    assert.deepEqual(bobs.slice(-5), alices.slice(-5));
    assert.deepEqual(bob.page.errors, [], 'no page errors');
  });

  test('the resume goes through the SDK session: from its position, back to exactly the server’s final state', async () => {
    const post = async (content) =>
      rest(server.url, 'POST', `/rooms/${roomId}/messages`, { token: aliceToken, body: { content, client_msg_id: randomUUID() } });
    const a = await post('resume A');
    const b = await post('resume B');
    const c = await post('resume C');
    await message(bob.page, 'resume C').waitFor();
    // What the page's SDK session holds (the module instances the page runs).
    const sdk = (page) =>
      page.evaluate(async (id) => {
        const { state } = await import('/web/state.js');
        const session = state.socket.session;
        return { position: session.position(id), timeline: session.timeline(id) };
      }, roomId);
    const before = await sdk(bob.page);
    assert.equal(before.position.sinceSeq, c.seq, 'the session holds every message in order');

    await bobSocket.cut();
    await bob.page.waitForSelector('#conn-status[data-state="reconnecting"]');
    // While Bob is away: an edit, a delete, a reaction, new messages, an edit of a new one.
    await rest(server.url, 'PATCH', `/rooms/${roomId}/messages/${a.id}`, { token: aliceToken, body: { content: 'resume A (edited)' } });
    await rest(server.url, 'DELETE', `/rooms/${roomId}/messages/${b.id}`, { token: aliceToken });
    await rest(server.url, 'PUT', `/rooms/${roomId}/messages/${c.id}/reactions/${encodeURIComponent('🎉')}`, { token: aliceToken });
    const d = await post('resume D');
    await post('resume E');
    await rest(server.url, 'PATCH', `/rooms/${roomId}/messages/${d.id}`, { token: aliceToken, body: { content: 'resume D (edited)' } });

    const sentBefore = bobSocket.sent.length;
    bobSocket.restore();
    await waitOnline(bob.page, 30_000);
    await message(bob.page, 'resume D (edited)').locator('.msg-edited').waitFor();
    await message(bob.page, 'resume E').waitFor();
    await waitChips(bob.page, message(bob.page, 'resume C'), { '🎉': 1 });
    await bob.page.locator(`#message-list > li.deleted[data-seq="${b.seq}"]`).waitFor();
    await message(bob.page, 'resume A (edited)').locator('.msg-edited').waitFor();

    // The subscribe that resumed asked from exactly the SDK session's position.
    const resume = bobSocket.sent.slice(sentBefore).filter((f) => f.type === 'subscribe' && f.room_id === roomId);
    assert.deepEqual(
      resume.map((f) => [f.since_seq, f.since_rev]),
      [[before.position.sinceSeq, before.position.sinceRev]],
      'one resume, from the session’s position',
    );

    // The list is the session's timeline, and both are the server's final state.
    const server_ = await rest(server.url, 'GET', `/rooms/${roomId}/messages?after_seq=0&limit=100`, { token: bobToken });
    const describe = (m) => `${m.seq}:${m.deleted_at ? '(deleted)' : m.content}:${m.edited_at && !m.deleted_at ? 'e' : ''}`;
    const shown = await bob.page.$$eval('#message-list > li.msg', (lis) =>
      lis.map((li) => {
        const deleted = li.classList.contains('deleted');
        const body = deleted ? '(deleted)' : li.querySelector('.msg-body').textContent;
        return `${li.dataset.seq}:${body}:${li.querySelector('.msg-edited') && !deleted ? 'e' : ''}`;
      }),
    );
    const after = await sdk(bob.page);
    assert.deepEqual(after.timeline.map(describe), shown, 'the page shows the SDK session’s timeline');
    const first = Number(shown[0].split(':')[0]);
    assert.deepEqual(
      shown,
      server_.messages.filter((m) => m.seq >= first).map(describe),
      'the same messages and versions as the server, nothing missing or doubled',
    );
    assert.equal(after.position.sinceSeq, server_.messages.at(-1).seq);
    const reacted = after.timeline.find((m) => m.id === c.id);
    assert.deepEqual(reacted.reactions.map((r) => [r.emoji, r.count]), [['🎉', 1]]);
    assert.deepEqual(bob.page.errors, [], 'no page errors');
  });

  test('unread badges in the room list, and the "New messages" divider', async () => {
    const sideName = `Side ${randomUUID().slice(0, 6)}`;
    const side = await rest(server.url, 'POST', '/rooms', { token: aliceToken, body: { name: sideName } });
    await rest(server.url, 'POST', `/rooms/${side.id}/members`, { token: bobToken, body: {} });
    const post = (content) =>
      rest(server.url, 'POST', `/rooms/${side.id}/messages`, { token: aliceToken, body: { content, client_msg_id: randomUUID() } });
    await post('already read');

    // Bob reads the side room, then goes back to the main one.
    await openRoomByUrl(bob.page, server.url, side.id, sideName);
    await message(bob.page, 'already read').waitFor();
    for (let i = 0; ; i++) {
      const r = await rest(server.url, 'GET', `/rooms/${side.id}`, { token: bobToken });
      if (r.last_read_seq >= 1) break;
      assert.ok(i < 100, 'Bob’s read marker reached the server');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const badge = bob.page.locator('#my-rooms .room-item', { hasText: sideName }).locator('.badge');
    await bob.page.click(`#my-rooms .room-item:has-text("${roomName}")`);
    await bob.page.locator('#room-title', { hasText: roomName }).waitFor();
    assert.equal(await badge.count(), 0);

    // Three new messages while Bob looks at another room: the badge counts them live.
    for (const text of ['unread 1', 'unread 2', 'unread 3']) await post(text);
    await badge.filter({ hasText: /^3$/ }).waitFor();
    await bob.page.waitForFunction(() => document.title.startsWith('(3)'));

    // After a reload the count comes from the server.
    await openRoomByUrl(bob.page, server.url, roomId, roomName);
    await badge.filter({ hasText: /^3$/ }).waitFor();

    // Opening the room: the divider sits right before the first unread message; no badge.
    await bob.page.click(`#my-rooms .room-item:has-text("${sideName}")`);
    await bob.page.locator('#room-title', { hasText: sideName }).waitFor();
    const divided = bob.page.locator('#message-list > li.msg').filter({ has: bob.page.locator('.unread-sep') });
    await divided.locator('.msg-body', { hasText: 'unread 1' }).waitFor();
    assert.equal(await bob.page.locator('#message-list .unread-sep').count(), 1);
    assert.equal(await divided.locator('.unread-sep').textContent(), 'New messages');
    assert.equal(await badge.count(), 0);

    // A message arriving while the room is open adds no second divider; back in the main room,
    // the next one counts again.
    await post('while open');
    await message(bob.page, 'while open').waitFor();
    assert.equal(await bob.page.locator('#message-list .unread-sep').count(), 1);
    await bob.page.click(`#my-rooms .room-item:has-text("${roomName}")`);
    await bob.page.locator('#room-title', { hasText: roomName }).waitFor();
    await post('one more');
    await badge.filter({ hasText: /^1$/ }).waitFor();
    assert.deepEqual(bob.page.errors, [], 'no page errors');
  });
});
