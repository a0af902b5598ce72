// Unit tests of the client's per-room state (no browser, no server).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { RoomState, charCount } from '../../crates/server/web/store.js';

const ROOM = '0193a1b2-0000-7000-8000-000000000001';
const msg = (seq, room = ROOM) => ({ id: `m${seq}`, room_id: room, seq, content: `#${seq}`, sender_id: 'u', created_at: '' });

function fresh() {
  return new RoomState({ id: ROOM, name: 'r' });
}

test('newest page then live messages: sorted, deduplicated, contiguous', () => {
  const r = fresh();
  for (let s = 51; s <= 100; s++) assert.ok(r.insert(msg(s), true) >= 0);
  r.loaded = true;
  assert.equal(r.lowSeq, 51);
  assert.equal(r.contigTop, 100);
  assert.equal(r.sinceSeq, 100);
  assert.equal(r.insert(msg(100)), -1, 'duplicate ignored');
  assert.equal(r.insert(msg(101)), 50);
  assert.equal(r.contigTop, 101);
  assert.equal(r.hasGap, false);
  assert.equal(r.insert(msg(5, 'other-room')), -1, 'other room ignored');
});

test('a gap is detected and closed by a fill, in any order', () => {
  const r = fresh();
  for (let s = 1; s <= 10; s++) r.insert(msg(s), true);
  r.loaded = true;
  r.insert(msg(14));
  assert.equal(r.hasGap, true);
  assert.equal(r.contigTop, 10, 'since_seq stays below the hole');
  r.insert(msg(12));
  r.insert(msg(11));
  assert.equal(r.contigTop, 12);
  r.insert(msg(13));
  assert.equal(r.contigTop, 14);
  assert.equal(r.hasGap, false);
  assert.deepEqual(r.order, Array.from({ length: 14 }, (_, i) => i + 1));
});

test('older pages extend the window downwards', () => {
  const r = fresh();
  for (let s = 51; s <= 60; s++) r.insert(msg(s), true);
  for (let s = 41; s <= 50; s++) r.insert(msg(s), true);
  assert.equal(r.lowSeq, 41);
  assert.equal(r.contigTop, 60);
  assert.equal(r.order[0], 41);
});

test('an empty room: a live message above 1 is a gap, not the start', () => {
  const r = fresh();
  r.loaded = true;
  r.insert(msg(3));
  assert.equal(r.contigTop, 0);
  assert.equal(r.hasGap, true);
  r.insert(msg(1));
  r.insert(msg(2));
  assert.equal(r.contigTop, 3);
});

test('of two versions of a message the higher rev wins, whatever the order', () => {
  const r = fresh();
  r.insert({ ...msg(1), rev: 1 }, true);
  assert.equal(r.update({ ...msg(1), content: 'edited', rev: 3 }), true);
  assert.equal(r.update({ ...msg(1), content: 'reacted', rev: 2 }), false, 'older version ignored');
  assert.equal(r.messages.get(1).content, 'edited');
  assert.equal(r.update({ ...msg(2), rev: 9 }), false, 'a message not held is not added');
  // A reply target fetched on its own, later loaded by a history page in an older version.
  r.addRef({ ...msg(7), content: 'newer', rev: 8 });
  assert.equal(r.get('m7', 7).content, 'newer');
  r.insert({ ...msg(7), content: 'older', rev: 4 }, true);
  assert.equal(r.messages.get(7).content, 'newer');
  assert.equal(r.refs.size, 0);
});

test('since_rev advances with live events, but not past a replay that may still be running', () => {
  const r = fresh();
  r.noteSubscribed(5, false);
  assert.equal(r.sinceRev, 5, 'a fresh subscription knows every change up to last_rev');
  r.noteStreamRev(6, false);
  r.noteStreamRev(7, true);
  assert.equal(r.sinceRev, 7);
  // Resumed from 7; the room is at 12. message.new replays may carry any rev up to 12.
  r.noteSubscribed(12, true);
  r.noteStreamRev(11, false);
  r.noteStreamRev(12, false);
  assert.equal(r.sinceRev, 7, 'a replayed message.new proves nothing about updates still to come');
  r.noteStreamRev(9, true);
  assert.equal(r.sinceRev, 7);
  r.noteStreamRev(12, true);
  assert.equal(r.sinceRev, 12, 'the update at last_rev ends the replay');
  r.noteSubscribed(20, true);
  r.noteStreamRev(21, false);
  assert.equal(r.sinceRev, 21, 'anything above last_rev is live');
  r.noteSubscribed(21, true);
  assert.equal(r.replayUntil, null, 'nothing to replay');
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
  r.lastSeq = 12;
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
