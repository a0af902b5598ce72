// Unit tests of the client's per-room state (no browser, no server).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { RoomState, charCount } from '../../crates/server/web/store.js';

const ROOM = '0193a1b2-0000-7000-8000-000000000001';
const msg = (seq, room = ROOM) => ({ id: `m${seq}`, room_id: room, seq, content: `#${seq}`, sender_id: 'u', created_at: '' });

function fresh() {
  return new RoomState({ id: ROOM, name: 'r' });
}

// Which messages a room holds, in which version, with no hole and no duplicate, and the position
// it resumes from, is the SDK session's (clients/typescript/test/timeline.test.mjs tests that
// logic event by event; the page only mirrors it). Here: the page's mirror of it.

test('a synced timeline: messages by seq in order, the session’s position, what is new', () => {
  const r = fresh();
  const page = [51, 52, 53].map((s) => ({ ...msg(s), rev: s }));
  assert.deepEqual(r.sync(page, { seq: 53, lowSeq: 51, hasMoreOlder: true }), [51, 52, 53]);
  assert.deepEqual(r.order, [51, 52, 53]);
  assert.equal(r.seq, 53);
  assert.equal(r.lowSeq, 51);
  assert.equal(r.hasMoreOlder, true);
  // An older page below and a live message above: only those are new.
  const more = [49, 50, 51, 52, 53, 54].map((s) => ({ ...msg(s), rev: s }));
  assert.deepEqual(r.sync(more, { seq: 54, lowSeq: 49, hasMoreOlder: true }), [49, 50, 54]);
  assert.deepEqual(r.order, [49, 50, 51, 52, 53, 54]);
  assert.equal(r.messages.get(54).content, '#54');
  // The start of the room reached.
  r.sync([1, 2].map((s) => ({ ...msg(s), rev: s })), { seq: 2, lowSeq: 1, hasMoreOlder: false });
  assert.equal(r.hasMoreOlder, false);
  assert.equal(r.get('m49', 49), null, 'what the session no longer holds is gone');
});

test('of two versions of a message the higher rev wins, whatever the order; reply targets too', () => {
  const r = fresh();
  r.sync([{ ...msg(1), rev: 1 }]);
  assert.equal(r.applyVersion({ ...msg(1), content: 'edited', rev: 3 }), true);
  assert.equal(r.applyVersion({ ...msg(1), content: 'reacted', rev: 2 }), false, 'older version ignored');
  assert.equal(r.messages.get(1).content, 'edited');
  assert.equal(r.applyVersion({ ...msg(2), rev: 9 }), false, 'a message not held is not added');
  assert.equal(r.applyVersion({ ...msg(1, 'other-room'), rev: 9 }), false, 'other room ignored');
  // A reply target fetched on its own, later in the session's timeline in an older version.
  r.addRef({ ...msg(7), content: 'newer', rev: 8 });
  assert.equal(r.get('m7', 7).content, 'newer');
  assert.equal(r.applyVersion({ ...msg(7), content: 'newest', rev: 9 }), true);
  assert.equal(r.get('m7', 7).content, 'newest');
  r.sync([{ ...msg(7), content: 'older', rev: 4 }]);
  assert.equal(r.messages.get(7).content, 'newest');
  assert.equal(r.refs.size, 0);
});

test('the "New messages" divider goes before the first message of someone else after my read position', () => {
  const r = fresh();
  r.sync([
    { ...msg(1), sender_id: 'other' },
    { ...msg(2), sender_id: 'me' },
    { ...msg(3), sender_id: 'other', deleted_at: '2024-01-01T00:00:00Z' },
    { ...msg(4), sender_id: 'other' },
  ]);
  assert.equal(r.firstUnreadSeq('me', 1), 4, 'not mine, not deleted');
  assert.equal(r.firstUnreadSeq('me', 4), null);
});

test('unread: the server count, then live messages once each, none of mine or already read', () => {
  const r = new RoomState({ id: ROOM, name: 'r', last_seq: 10, last_read_seq: 7, unread_count: 2 });
  assert.equal(r.unread, 2);
  assert.equal(r.countUnread(msg(10)), false, 'already in the server count');
  assert.equal(r.countUnread(msg(11)), true);
  assert.equal(r.countUnread(msg(11)), false, 'a replay counts once');
  assert.equal(r.countUnread({ ...msg(12), deleted_at: '2024-01-01T00:00:00Z' }), false);
  assert.equal(r.unread, 3);
  r.applyListing({ id: ROOM, name: 'r', last_seq: 10, last_read_seq: 7, unread_count: 2 });
  assert.equal(r.unread, 3, 'an older listing does not undo live counting');
  r.markSeen();
  assert.equal(r.unread, 0);
  r.seq = 12;
  r.markSeen();
  assert.equal(r.countUnread(msg(12)), false);
});

test('typing entries expire', () => {
  const r = fresh();
  r.typing.set('a', { username: 'zed', until: Date.now() + 1000 });
  r.typing.set('b', { username: 'amy', until: Date.now() - 1 });
  assert.deepEqual(r.typingNames(), ['zed']);
  assert.equal(r.typing.has('b'), false);
});

test('characters are counted as the server counts them (scalar values)', () => {
  assert.equal(charCount('héllo'), 5);
  assert.equal(charCount('👋🏽'), 2);
  assert.equal(charCount('𝄞'), 1);
});
