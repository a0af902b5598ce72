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
