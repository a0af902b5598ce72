// The REST client's edges, as a web page uses them: uploads, per-call tokens, aborts, and
// the errors of a server that refuses or cannot be reached.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { NebulaClient, NebulaError } from '../src/index.js';
import { NebulaServer, freePort, uniqueName } from './helpers.mjs';

let server;
before(async () => {
  server = await NebulaServer.create({ MEDIA_MAX_BYTES: '1024' });
});
after(async () => {
  await server?.stop();
});

test('uploadMedia stores the bytes; one byte over MEDIA_MAX_BYTES is a 413 problem', async () => {
  const client = new NebulaClient({ baseUrl: server.url });
  await client.register(uniqueName('up'), 'correct horse battery');
  const media = await client.uploadMedia(new Blob(['hello, file'], { type: 'text/plain' }), { filename: 'note.txt' });
  assert.equal(media.filename, 'note.txt');
  assert.equal(media.size, 11);
  const bytes = await (await fetch(new URL(media.url, server.url))).text();
  assert.equal(bytes, 'hello, file');

  await assert.rejects(client.uploadMedia(new Blob([new Uint8Array(1025)]), { filename: 'big.bin' }), (e) => {
    assert.ok(e instanceof NebulaError);
    assert.equal(e.status, 413);
    assert.equal(typeof e.detail, 'string');
    return true;
  });
});

test('a call may carry its own token (or none); an abort rejects with the AbortError', async () => {
  const alice = new NebulaClient({ baseUrl: server.url });
  const auth = await alice.register(uniqueName('tok'), 'correct horse battery');
  const anonymous = new NebulaClient({ baseUrl: server.url });
  assert.equal((await anonymous.request('GET', '/me', undefined, { token: auth.token })).id, auth.user.id);
  await assert.rejects(alice.request('GET', '/me', undefined, { token: null }), (e) => e.status === 401);
  assert.equal(await alice.request('POST', '/auth/logout-all'), null, '204 answers null');
  await assert.rejects(alice.me(), (e) => e.status === 401 && e.code === 'token_revoked');

  const ctrl = new AbortController();
  ctrl.abort();
  await assert.rejects(anonymous.request('GET', '/rooms/public', undefined, { signal: ctrl.signal }), (e) => e.name === 'AbortError');
});

test('an unreachable server is a NebulaError with status 0 and code network_error', async () => {
  const nobody = new NebulaClient({ baseUrl: `http://127.0.0.1:${await freePort()}` });
  await assert.rejects(nobody.request('GET', '/health'), (e) => {
    assert.ok(e instanceof NebulaError);
    assert.equal(e.status, 0);
    assert.equal(e.code, 'network_error');
    return true;
  });
});

test('a session revoked by logout-all (4001) carries on with a new token after reconnect()', async () => {
  const { default: WebSocket } = await import('ws');
  const name = uniqueName('re');
  const client = new NebulaClient({ baseUrl: server.url });
  await client.register(name, 'correct horse battery');
  const session = client.session({ WebSocket, minBackoffMs: 5_000 });
  const events = [];
  for (const type of ['open', 'close']) session.addEventListener(type, (e) => events.push({ type, ...e.detail }));
  const opened = (n) =>
    new Promise((resolve) => {
      const check = () => session.connections >= n && (session.removeEventListener('open', check), resolve());
      session.addEventListener('open', check);
    });
  session.connect();
  await opened(1);
  assert.equal(session.isOpen, true);

  const closed = new Promise((resolve) => session.addEventListener('close', (e) => resolve(e.detail), { once: true }));
  await client.request('POST', '/auth/logout-all');
  const close = await closed;
  assert.equal(close.code, 4001);
  assert.ok(close.retryAt > Date.now(), 'a retry is scheduled (with backoff)');
  assert.equal(session.isOpen, false);

  // A new token and reconnect() skip the backoff wait.
  const auth = await client.login(name, 'correct horse battery');
  session.token = auth.token;
  const started = Date.now();
  session.reconnect();
  await opened(2);
  assert.ok(Date.now() - started < 2_500, 'no backoff wait');
  assert.equal(session.isOpen, true);
  session.close();
  assert.equal(events.at(-1).type, 'close');
  assert.equal(events.at(-1).retryAt, null, 'closed for good: no retry');
});

test('a message sent through the session carries its uploaded attachments', async () => {
  const { default: WebSocket } = await import('ws');
  const client = new NebulaClient({ baseUrl: server.url });
  await client.register(uniqueName('att'), 'correct horse battery');
  const room = await client.createRoom('files');
  const media = await client.uploadMedia(new Blob(['abc'], { type: 'text/plain' }), { filename: 'a.txt' });
  const session = client.session({ WebSocket });
  session.subscribe(room.id);
  session.connect();
  const stored = await session.send(room.id, 'see attached', { attachments: [media.id] });
  assert.deepEqual(stored.attachments.map((m) => m.id), [media.id]);
  session.close();
});
