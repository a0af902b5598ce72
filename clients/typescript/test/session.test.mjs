// The session against the real server: a network cut and a server restart mid-conversation
// lose nothing, repeat nothing and keep the order; edits converge by rev.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';

import { NebulaClient } from '../src/index.js';
import { NebulaServer, Proxy, uniqueName, until } from './helpers.mjs';

let server;
before(async () => {
  server = await NebulaServer.create();
});
after(async () => {
  await server?.stop();
});

async function user(baseUrl) {
  const client = new NebulaClient({ baseUrl });
  await client.register(uniqueName('sdk'), 'correct horse battery');
  return client;
}

function assertInOrder(messages, count) {
  assert.deepEqual(
    messages.map((m) => m.seq),
    Array.from({ length: count }, (_, i) => i + 1),
    'every message once, in seq order',
  );
  assert.equal(new Set(messages.map((m) => m.id)).size, count);
}

test('REST calls are typed by the server’s answers and errors are problems', async () => {
  const alice = await user(server.url);
  const room = await alice.createRoom('sdk rest');
  const posted = await alice.postMessage(room.id, 'hello', { clientMsgId: 'rest-1' });
  assert.equal(posted.seq, 1);
  const again = await alice.postMessage(room.id, 'hello', { clientMsgId: 'rest-1' });
  assert.equal(again.id, posted.id, 'the same client_msg_id is stored once');
  const page = await alice.messages(room.id);
  assert.equal(page.messages.length, 1);
  await assert.rejects(alice.room('00000000-0000-0000-0000-000000000000'), (err) => {
    assert.equal(err.status, 404);
    assert.equal(err.code, 'room_not_found');
    return true;
  });
});

test('a network cut loses nothing, repeats nothing and applies edits by rev', async () => {
  const proxy = new Proxy(server.port);
  await proxy.start();
  const alice = await user(server.url);
  const bob = await user(server.url);
  const room = await alice.createRoom('sdk cut');
  await bob.join(room.id);
  const session = new NebulaClient({ baseUrl: proxy.url, token: alice.token }).session({
    WebSocket,
    minBackoffMs: 50,
    maxBackoffMs: 400,
  });
  let messageEvents = 0;
  session.addEventListener('message', () => (messageEvents += 1));
  session.subscribe(room.id);
  session.connect();
  await until(session, 'subscribed', () => session.rooms.get(room.id)?.subscribed);

  const first = await bob.postMessage(room.id, 'bob 1');
  const mine = await session.send(room.id, 'alice 1');
  assert.equal(mine.seq, 2);
  await until(session, 'timeline', () => session.timeline(room.id).length === 2);

  await proxy.cut();
  // While Alice is away: new messages, and an edit of one she has.
  await bob.postMessage(room.id, 'bob 2');
  await bob.editMessage(room.id, first.id, 'bob 1 (edited)');
  // Sent while disconnected: goes out once the room is resubscribed.
  const queued = session.send(room.id, 'alice 2', { clientMsgId: 'queued-1' });
  await bob.postMessage(room.id, 'bob 3');
  await proxy.start();

  const stored = await queued;
  assert.equal(stored.client_msg_id, 'queued-1');
  await until(session, 'timeline', () => session.timeline(room.id).length === 5);
  await until(session, 'update', () => session.timeline(room.id)[0].content === 'bob 1 (edited)');
  // A resend with the same client_msg_id (as after a lost ack) is not stored again.
  const resent = await session.send(room.id, 'alice 2', { clientMsgId: 'queued-1' });
  assert.equal(resent.id, stored.id);
  const live = await bob.postMessage(room.id, 'bob 4');
  await until(session, 'timeline', () => session.timeline(room.id).length === 6);
  const timeline = session.timeline(room.id);
  assertInOrder(timeline, 6);
  assert.equal(timeline[5].id, live.id);
  assert.equal(messageEvents, 6, 'one message event per message');
  assert.ok(session.connections >= 2, 'it reconnected');
  session.close();
  await proxy.cut();
});

test('a server restart mid-conversation loses nothing and repeats nothing', async () => {
  const alice = await user(server.url);
  const bob = await user(server.url);
  const room = await alice.createRoom('sdk restart');
  await bob.join(room.id);
  // Through a proxy that can hold them off until messages were stored in their absence.
  const proxy = new Proxy(server.port);
  await proxy.start();
  const options = { baseUrl: proxy.url, WebSocket, minBackoffMs: 50, maxBackoffMs: 500 };
  const aliceSession = new NebulaClient({ token: alice.token, ...options }).session(options);
  const bobSession = new NebulaClient({ token: bob.token, ...options }).session(options);
  for (const s of [aliceSession, bobSession]) {
    s.subscribe(room.id);
    s.connect();
    await until(s, 'subscribed', () => s.rooms.get(room.id)?.subscribed);
  }
  const sends = [];
  for (let i = 0; i < 5; i += 1) {
    sends.push(aliceSession.send(room.id, `alice ${i}`), bobSession.send(room.id, `bob ${i}`));
  }
  await Promise.all(sends);
  proxy.hold = true;
  const restarted = server.restart();
  // Sent while the server is going down and away: each is stored exactly once.
  for (let i = 5; i < 10; i += 1) {
    sends.push(aliceSession.send(room.id, `alice ${i}`), bobSession.send(room.id, `bob ${i}`));
  }
  await restarted;
  // Stored before the sessions are back: they must resume from where they were.
  for (let i = 0; i < 3; i += 1) await alice.postMessage(room.id, `rest ${i}`);
  proxy.hold = false;
  await Promise.all(sends);
  for (const s of [aliceSession, bobSession]) {
    await until(s, 'timeline', () => s.timeline(room.id).length === 23);
    assertInOrder(s.timeline(room.id), 23);
  }
  const page = await alice.messages(room.id, { page_size: 100 });
  assert.equal(page.total, 23, 'stored once each');
  aliceSession.close();
  bobSession.close();
  await proxy.cut();
});

test('history pages load into the timeline below live messages, down to the first message', async (t) => {
  // 120 posts in a row: a server of its own without the message rate limit.
  const own = await NebulaServer.create({ RATE_LIMIT_MESSAGES_PER_SECOND: '0' });
  t.after(() => own.stop());
  const alice = await user(own.url);
  const bob = await user(own.url);
  const room = await alice.createRoom('sdk history');
  await bob.join(room.id);
  for (let i = 1; i <= 120; i += 1) await alice.postMessage(room.id, `old ${i}`);
  const session = new NebulaClient({ baseUrl: own.url, token: alice.token }).session({ WebSocket });
  session.subscribe(room.id);
  session.connect();
  // Asked at once: the page waits for the subscription, so nothing falls between them.
  const latest = session.loadLatest(room.id, { limit: 50 });
  await until(session, 'subscribed', () => session.rooms.get(room.id)?.subscribed);
  await bob.postMessage(room.id, 'live 121');
  await latest;
  await until(session, 'timeline', () => session.timeline(room.id).length === 51);
  assert.deepEqual(session.roomState(room.id), { seq: 121, rev: session.position(room.id).sinceRev, lowSeq: 71, hasMoreOlder: true, subscribed: true });
  assert.equal(await session.loadOlder(room.id, { limit: 50 }), 50);
  assert.equal(await session.loadOlder(room.id, { limit: 50 }), 20);
  assert.equal(session.roomState(room.id).hasMoreOlder, false);
  assert.equal(await session.loadOlder(room.id), 0);
  assertInOrder(session.timeline(room.id), 121);
  assert.equal(session.timeline(room.id).at(-1).content, 'live 121');
  session.close();
});

test('offline: a page sets the position, a REST post beyond a hole fills it, the subscription resumes from there', async () => {
  const alice = await user(server.url);
  const bob = await user(server.url);
  const room = await alice.createRoom('sdk offline history');
  await bob.join(room.id);
  const first = await bob.postMessage(room.id, 'one');
  await bob.postMessage(room.id, 'two');
  const session = new NebulaClient({ baseUrl: server.url, token: alice.token }).session({ WebSocket });
  session.subscribe(room.id);
  await session.loadLatest(room.id);
  assert.deepEqual(session.position(room.id).sinceSeq, 2);
  // Bob posts, Alice posts over REST (her socket is not open): the hole (3) is fetched.
  await bob.postMessage(room.id, 'three');
  const mine = await alice.postMessage(room.id, 'four');
  session.apply(mine);
  await until(session, 'timeline', () => session.timeline(room.id).length === 4);
  assertInOrder(session.timeline(room.id), 4);
  // Changed while away: the subscription's replay brings it, by rev.
  await bob.editMessage(room.id, first.id, 'one (edited)');
  session.connect();
  await until(session, 'update', () => session.timeline(room.id)[0].content === 'one (edited)');
  await bob.postMessage(room.id, 'five');
  await until(session, 'timeline', () => session.timeline(room.id).length === 5);
  assertInOrder(session.timeline(room.id), 5);
  session.close();
});
