// A room's timeline in the session, driven event by event through a fake socket and a fake REST
// client (no server): ordering, duplicates, versions by rev, the position it resumes from,
// history pages and messages obtained over REST. The same session against the real server is
// in session.test.mjs.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { NebulaSession } from '../src/index.js';

const ROOM = '0193a1b2-0000-7000-8000-000000000001';
const msg = (seq, extra = {}) => ({ id: `m${seq}`, room_id: ROOM, seq, rev: seq, content: `#${seq}`, sender_id: 'u', ...extra });

/** A WebSocket the test opens, feeds and closes; `frames` are what the session sent, parsed. */
class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.frames = [];
    FakeSocket.all.push(this);
  }
  send(data) {
    this.frames.push(JSON.parse(data));
  }
  close(code = 1000, reason = '') {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(event) {
    this.onmessage?.({ data: JSON.stringify(event) });
  }
  subscribes() {
    return this.frames.filter((f) => f.type === 'subscribe');
  }
}

/** The room's messages in the store, `{seq: message}`; `messages(query)` answers like the server. */
function fakeClient(stored) {
  const calls = [];
  const all = () => Object.values(stored).sort((a, b) => a.seq - b.seq);
  return {
    calls,
    async messages(roomId, query) {
      calls.push(query);
      await Promise.resolve();
      const list = all();
      if (query.page) return { messages: list.slice(-query.page_size) };
      if (query.before_seq !== undefined) {
        const below = list.filter((m) => m.seq < query.before_seq);
        return { messages: below.slice(-query.limit), has_more: below.length > query.limit };
      }
      const above = list.filter((m) => m.seq > query.after_seq);
      return { messages: above.slice(0, query.limit), has_more: above.length > query.limit };
    },
  };
}

function session(client = fakeClient({})) {
  FakeSocket.all = [];
  const s = new NebulaSession({ baseUrl: 'http://x', token: 't', WebSocket: FakeSocket, minBackoffMs: 1, maxBackoffMs: 2, pingIntervalMs: 60_000, client });
  const events = { message: [], update: [], timeline: 0 };
  s.addEventListener('message', (e) => events.message.push(e.detail.message.seq));
  s.addEventListener('update', (e) => events.update.push(`${e.detail.message.seq}@${e.detail.message.rev}`));
  s.addEventListener('timeline', () => (events.timeline += 1));
  return { s, events, client };
}

const seqs = (s) => s.timeline(ROOM).map((m) => m.seq);
const nextSocket = () =>
  new Promise((resolve) => {
    const n = FakeSocket.all.length;
    const check = setInterval(() => {
      if (FakeSocket.all.length > n) {
        clearInterval(check);
        resolve(FakeSocket.all.at(-1));
      }
    }, 1);
  });

test('live messages: in seq order, once, whatever order acks and repeats come in', () => {
  const { s, events } = session();
  s.subscribe(ROOM);
  s.connect();
  const ws = FakeSocket.all[0];
  ws.open();
  assert.deepEqual(ws.subscribes(), [{ type: 'subscribe', room_id: ROOM }], 'from now: no position');
  ws.receive({ type: 'subscribed', room_id: ROOM, last_seq: 5, last_rev: 9, online: [] });
  ws.receive({ type: 'message.new', message: msg(6, { rev: 10 }) });
  ws.receive({ type: 'message.new', message: msg(6, { rev: 10 }) });
  // My ack overtakes the message before it: held until that one comes.
  ws.receive({ type: 'message.ack', client_msg_id: 'c', message: msg(8, { rev: 12 }) });
  assert.deepEqual(seqs(s), [6]);
  ws.receive({ type: 'message.new', message: msg(7, { rev: 11 }) });
  ws.receive({ type: 'message.new', message: msg(8, { rev: 12 }) });
  assert.deepEqual(seqs(s), [6, 7, 8]);
  assert.deepEqual(events.message, [6, 7, 8], 'one message event each, in order');
  assert.deepEqual(s.position(ROOM), { sinceSeq: 8, sinceRev: 11 }, 'an ack does not move the rev');
  ws.receive({ type: 'message.new', message: msg(9, { rev: 14 }) });
  assert.deepEqual(s.position(ROOM), { sinceSeq: 9, sinceRev: 14 }, 'the next live message does');
  assert.equal(s.roomState(ROOM).lowSeq, 6);
  assert.equal(s.roomState(ROOM).hasMoreOlder, true, 'seqs 1–5 exist below');
  s.close();
});

test('versions by rev; a resume replays from the position, and a replay does not move the rev', async () => {
  const { s, events } = session();
  s.subscribe(ROOM);
  s.connect();
  let ws = FakeSocket.all[0];
  ws.open();
  ws.receive({ type: 'subscribed', room_id: ROOM, last_seq: 0, last_rev: 0, online: [] });
  for (const seq of [1, 2, 3]) ws.receive({ type: 'message.new', message: msg(seq) });
  ws.receive({ type: 'message.updated', message: msg(1, { rev: 5, content: 'edited' }) });
  ws.receive({ type: 'message.updated', message: msg(1, { rev: 4, content: 'older' }) });
  assert.equal(s.timeline(ROOM)[0].content, 'edited', 'the higher rev wins');
  assert.deepEqual(events.update, ['1@5']);
  assert.deepEqual(s.position(ROOM), { sinceSeq: 3, sinceRev: 5 });

  // Cut: the next socket resumes from (3, 5).
  const reopened = nextSocket();
  ws.close(1006);
  ws = await reopened;
  ws.open();
  assert.deepEqual(ws.subscribes(), [{ type: 'subscribe', room_id: ROOM, since_seq: 3, since_rev: 5 }]);
  ws.receive({ type: 'subscribed', room_id: ROOM, last_seq: 4, last_rev: 9, online: [] });
  // Replay: message 4 in its current version (rev 9), then the older messages' changes.
  ws.receive({ type: 'message.new', message: msg(4, { rev: 9 }) });
  assert.equal(s.position(ROOM).sinceRev, 5, 'a replayed message.new proves nothing about changes still to come');
  ws.receive({ type: 'message.updated', message: msg(2, { rev: 7, deleted_at: 'x', content: '' }) });
  assert.equal(s.position(ROOM).sinceRev, 7);
  ws.receive({ type: 'message.new', message: msg(4, { rev: 9 }) });
  assert.deepEqual(seqs(s), [1, 2, 3, 4]);
  assert.equal(s.timeline(ROOM)[1].deleted_at, 'x');
  ws.receive({ type: 'message.new', message: msg(5, { rev: 10 }) });
  assert.deepEqual(s.position(ROOM), { sinceSeq: 5, sinceRev: 10 }, 'a live message moves it');
  s.close();
});

test('before any subscription the newest page sets the position; the subscription resumes from it', async () => {
  const stored = Object.fromEntries([1, 2, 3, 4, 5].map((seq) => [seq, msg(seq)]));
  stored[2] = msg(2, { rev: 8, content: 'edited' });
  const { s, events, client } = session(fakeClient(stored));
  s.subscribe(ROOM);
  const timeline = await s.loadLatest(ROOM, { limit: 3 });
  assert.deepEqual(timeline.map((m) => m.seq), [3, 4, 5]);
  assert.deepEqual(client.calls, [{ page: 1, page_size: 3 }]);
  // Message 2's change (rev 8) is outside the page: resuming from rev 5 replays it.
  assert.deepEqual(s.position(ROOM), { sinceSeq: 5, sinceRev: 5 }, 'the page’s newest seq and highest rev');
  assert.deepEqual(events.message, [], 'history is not news');
  assert.equal(events.timeline, 1);
  s.connect();
  const ws = FakeSocket.all[0];
  ws.open();
  assert.deepEqual(ws.subscribes(), [{ type: 'subscribe', room_id: ROOM, since_seq: 5, since_rev: 5 }]);

  // Older pages, down to the room's first message; concurrent calls share one fetch.
  const [a, b] = await Promise.all([s.loadOlder(ROOM, { limit: 1 }), s.loadOlder(ROOM, { limit: 1 })]);
  assert.deepEqual([a, b], [1, 1]);
  assert.deepEqual(seqs(s), [2, 3, 4, 5]);
  assert.equal(s.timeline(ROOM)[0].content, 'edited');
  assert.equal(await s.loadOlder(ROOM, { limit: 10 }), 1);
  assert.equal(s.roomState(ROOM).hasMoreOlder, false);
  assert.equal(await s.loadOlder(ROOM), 0, 'nothing below seq 1: no fetch');
  assert.equal(client.calls.length, 3);
  s.close();
});

test('after a subscription the newest page fills in below the live messages and waits for an unanswered subscribe', async () => {
  const stored = Object.fromEntries([1, 2, 3, 4, 5, 6].map((seq) => [seq, msg(seq)]));
  const { s, client } = session(fakeClient(stored));
  s.subscribe(ROOM);
  s.connect();
  const ws = FakeSocket.all[0];
  ws.open();
  const loading = s.loadLatest(ROOM, { limit: 4 });
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(client.calls.length, 0, 'no page before the subscription is answered');
  ws.receive({ type: 'subscribed', room_id: ROOM, last_seq: 5, last_rev: 5, online: [] });
  ws.receive({ type: 'message.new', message: msg(6) });
  ws.receive({ type: 'message.updated', message: msg(3, { rev: 7, content: 'edited live' }) });
  await loading;
  assert.deepEqual(seqs(s), [3, 4, 5, 6]);
  assert.equal(s.timeline(ROOM)[0].content, 'edited live', 'a newer version seen live beats the page’s');
  assert.deepEqual(s.position(ROOM), { sinceSeq: 6, sinceRev: 7 }, 'the position is the socket’s');
  s.close();
});

test('a message over REST is applied by seq and rev; one beyond a hole fills the hole over REST when unsubscribed', async () => {
  const stored = Object.fromEntries([1, 2, 3].map((seq) => [seq, msg(seq)]));
  const { s, events, client } = session(fakeClient(stored));
  s.subscribe(ROOM);
  await s.loadLatest(ROOM);
  s.apply(msg(2, { rev: 6, content: 'edited over REST' }));
  assert.equal(s.timeline(ROOM)[1].content, 'edited over REST');
  assert.deepEqual(events.update, ['2@6']);
  assert.deepEqual(s.position(ROOM), { sinceSeq: 3, sinceRev: 3 }, 'REST answers do not move the position’s rev');
  // Posted over REST while offline: seq 5, and 4 was posted by someone else meanwhile.
  stored[4] = msg(4);
  stored[5] = msg(5);
  const filled = new Promise((resolve) => s.addEventListener('timeline', () => seqs(s).length === 5 && resolve()));
  s.apply(msg(5));
  await filled;
  assert.deepEqual(seqs(s), [1, 2, 3, 4, 5]);
  assert.deepEqual(client.calls.at(-1), { after_seq: 3, limit: 100 });
  assert.deepEqual(events.message, [4, 5]);
  assert.equal(s.position(ROOM).sinceRev, 3);
  s.close();
});

test('loading history needs the room to be followed', async () => {
  const { s } = session();
  await assert.rejects(s.loadLatest(ROOM), /subscribe/);
  assert.throws(() => s.loadOlder(ROOM), /subscribe/);
});
