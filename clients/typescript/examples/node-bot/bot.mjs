// A bot that answers `!ping` with `pong` in one room. Run against a server:
//   NEBULA_URL=http://127.0.0.1:3838 BOT_USER=pingbot BOT_PASSWORD='correct horse battery' \
//   ROOM_ID=<uuid> node examples/node-bot/bot.mjs
import WebSocket from 'ws'; // Node 20 has no global WebSocket; browsers and Node 22 do.
import { NebulaClient, NebulaError } from 'nebula-client';

const { NEBULA_URL = 'http://127.0.0.1:3838', BOT_USER = 'pingbot', ROOM_ID } = process.env;
const BOT_PASSWORD = process.env.BOT_PASSWORD ?? 'correct horse battery';

const client = new NebulaClient({ baseUrl: NEBULA_URL });
try {
  await client.login(BOT_USER, BOT_PASSWORD);
} catch (err) {
  if (!(err instanceof NebulaError && err.status === 401)) throw err;
  await client.register(BOT_USER, BOT_PASSWORD);
}
const roomId = ROOM_ID ?? (await client.createRoom('ping')).id;
await client.join(roomId);

const session = client.session({ WebSocket });
session.addEventListener('message', async ({ detail: { message } }) => {
  if (message.content.trim() !== '!ping' || message.sender_username === BOT_USER) return;
  await session.send(roomId, 'pong', { replyTo: message.id });
});
session.addEventListener('subscribed', () => console.log(`answering !ping in room ${roomId}`));
session.subscribe(roomId);
session.connect();
