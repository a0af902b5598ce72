// The README's example bot, run as its own process against the real server.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';

import { NebulaClient } from '../src/index.js';
import { NebulaServer, uniqueName, until } from './helpers.mjs';

let server;
let bot;
before(async () => {
  server = await NebulaServer.create();
});
after(async () => {
  bot?.kill();
  await server?.stop();
});

test('examples/node-bot answers !ping', async () => {
  const alice = new NebulaClient({ baseUrl: server.url });
  await alice.register(uniqueName('alice'), 'correct horse battery');
  const room = await alice.createRoom('bots');
  const session = alice.session({ WebSocket });
  session.subscribe(room.id);
  session.connect();
  await until(session, 'subscribed', () => session.rooms.get(room.id)?.subscribed);

  const botUser = uniqueName('pingbot');
  bot = spawn(process.execPath, ['examples/node-bot/bot.mjs'], {
    cwd: new URL('..', import.meta.url),
    env: { ...process.env, NEBULA_URL: server.url, BOT_USER: botUser, ROOM_ID: room.id },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise((resolve, reject) => {
    bot.stdout.on('data', (data) => String(data).includes('answering') && resolve());
    bot.once('exit', (code) => reject(new Error(`the bot exited with ${code}`)));
  });
  // The bot is subscribed: a ping is answered with a reply.
  const ping = await session.send(room.id, '!ping');
  const answered = () =>
    session.timeline(room.id).some((m) => m.sender_username === botUser && m.content === 'pong');
  await until(session, 'timeline', answered);
  const pong = session.timeline(room.id).find((m) => m.sender_username === botUser);
  assert.equal(pong.reply_to?.id, ping.id, `a reply to the ping: ${JSON.stringify(pong)}`);
  session.close();
});

test('the README shows the example bot verbatim', async () => {
  const { readFile } = await import('node:fs/promises');
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8');
  const bot = await readFile(new URL('../examples/node-bot/bot.mjs', import.meta.url), 'utf8');
  assert.ok(readme.includes('```js\n' + bot + '```'), 'README.md: the bot section is out of date');
});
