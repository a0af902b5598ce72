// Unit tests of the client's per-room state (no browser, no server).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { NebulaSession } from '../../crates/server/web/sdk/index.js';
import { RoomState, charCount } from '../../crates/server/web/store.js';

const ROOM = '0193a1b2-0000-7000-8000-000000000001';
const msg = (seq, room = ROOM) => ({ id: `m${seq}`, room_id: room, seq, content: `#${seq}`, sender_id: 'u', created_at: '' });

function fresh() {
  return new RoomState({ id: ROOM, name: 'r' });
}

// Which messages a room holds, in which version, with no hole and no duplicate, and the position
// it resumes from, is the SDK session's: the copy the page runs (sdk/index.js) is driven here
// through a fake socket and a fake REST client (clients/typescript/test/timeline.test.mjs has
// more), then the page's mirror of it (store.js).

/** A WebSocket the test opens and feeds; `frames`: what the session sent. */
class FakeSocket {
  static last = null;
  constructor() {
    this.readyState = 0;
    this.frames = [];
    FakeSocket.last = this;
  }
  send(data) {
    this.frames.push(JSON.parse(data));
  }
  close() {
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(event) {
    this.onmessage?.({ data: JSON.stringify(event) });
  }
}

/** A session following ROOM, whose REST client serves `stored` (seq → message). */
function sdk(stored = {}) {
  const all = () => Object.values(stored).sort((a, b) => a.seq - b.seq);
  const client = {
    async messages(roomId, q) {
      if (q.page) return { messages: all().slice(-q.page_size) };
      if (q.before_seq !== undefined) return { messages: all().filter((m) => m.seq < q.before_seq).slice(-q.limit) };
      return { messages: all().filter((m) => m.seq > q.after_seq).slice(0, q.limit) };
    },
  };
  const session = new NebulaSession({ baseUrl: 'http://x', token: 't', WebSocket: FakeSocket, pingIntervalMs: 60_000, client });
  session.subscribe(ROOM);
  return session;
}
const seqs = (session) => session.timeline(ROOM).map((m) => m.seq);
const rev = (seq, r = seq) => ({ ...msg(seq), rev: r });

test('newest page then live messages: sorted, deduplicated, contiguous', async () => {
  const stored = {};
  for (let s = 1; s <= 100; s++) stored[s] = rev(s);
  const session = sdk(stored);
  await session.loadLatest(ROOM, { limit: 50 });
  assert.deepEqual(session.roomState(ROOM), { seq: 100, rev: 100, lowSeq: 51, hasMoreOlder: true, subscribed: false });
  session.connect();
  const ws = FakeSocket.last;
  ws.open();
  assert.deepEqual(ws.frames[0], { type: 'subscribe', room_id: ROOM, since_seq: 100, since_rev: 100 });
  ws.receive({ type: 'subscribed', room_id: ROOM, last_seq: 101, last_rev: 101, online: [] });
  ws.receive({ type: 'message.new', message: rev(100) });
  ws.receive({ type: 'message.new', message: rev(101) });
  ws.receive({ type: 'message.new', message: rev(101) });
  ws.receive({ type: 'message.new', message: { ...rev(5), room_id: 'other-room' } });
  assert.deepEqual(seqs(session), Array.from({ length: 51 }, (_, i) => 51 + i));
  session.close();
});

test('a hole is held back until it is filled, in any order; over REST when no replay is coming', async () => {
  const stored = {};
  for (let s = 1; s <= 10; s++) stored[s] = rev(s);
  const session = sdk(stored);
  await session.loadLatest(ROOM);
  for (let s = 11; s <= 14; s++) stored[s] = rev(s);
  // Not subscribed (socket down): my post over REST is 14; 11–13 are fetched with after_seq.
  const filled = new Promise((resolve) => session.addEventListener('timeline', () => seqs(session).length === 14 && resolve()));
  session.apply(stored[14]);
  assert.deepEqual(seqs(session).at(-1), 10, 'nothing past the hole yet');
  await filled;
  assert.deepEqual(seqs(session), Array.from({ length: 14 }, (_, i) => i + 1));
  assert.equal(session.position(ROOM).sinceRev, 10, 'REST answers do not move the resume rev');
  session.close();
});

test('an empty room: a live message above 1 waits for the ones before it', () => {
  const session = sdk();
  session.connect();
  const ws = FakeSocket.last;
  ws.open();
  ws.receive({ type: 'subscribed', room_id: ROOM, last_seq: 0, last_rev: 0, online: [] });
  assert.equal(session.roomState(ROOM).hasMoreOlder, false, 'nothing below seq 1');
  ws.receive({ type: 'message.ack', client_msg_id: 'c', message: rev(3) });
  assert.deepEqual(seqs(session), []);
  ws.receive({ type: 'message.new', message: rev(1) });
  ws.receive({ type: 'message.new', message: rev(2) });
  assert.deepEqual(seqs(session), [1, 2, 3]);
  session.close();
});

test('since_rev advances with live events, but not past a replay that may still be running', () => {
  const session = sdk();
  session.connect();
  let ws = FakeSocket.last;
  ws.open();
  ws.receive({ type: 'subscribed', room_id: ROOM, last_seq: 5, last_rev: 5, online: [] });
  assert.equal(session.position(ROOM).sinceRev, 5, 'a fresh subscription knows every change up to last_rev');
  ws.receive({ type: 'message.new', message: rev(6) });
  ws.receive({ type: 'message.updated', message: rev(6, 7) });
  assert.deepEqual(session.position(ROOM), { sinceSeq: 6, sinceRev: 7 });
  // Resumed from (6, 7); the room is at 12: the replayed message.new may carry any rev up to 12.
  session.reconnect();
  ws = FakeSocket.last;
  ws.open();
  assert.deepEqual(ws.frames.find((f) => f.type === 'subscribe'), { type: 'subscribe', room_id: ROOM, since_seq: 6, since_rev: 7 });
  ws.receive({ type: 'subscribed', room_id: ROOM, last_seq: 7, last_rev: 12, online: [] });
  ws.receive({ type: 'message.new', message: rev(7, 12) });
  assert.equal(session.position(ROOM).sinceRev, 7, 'a replayed message.new proves nothing about updates still to come');
  ws.receive({ type: 'message.updated', message: rev(2, 9) });
  assert.equal(session.position(ROOM).sinceRev, 9);
  ws.receive({ type: 'message.new', message: rev(8, 13) });
  assert.deepEqual(session.position(ROOM), { sinceSeq: 8, sinceRev: 13 }, 'anything live moves it');
  session.close();
});


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
