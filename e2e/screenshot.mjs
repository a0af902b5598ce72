// Takes a PNG of a room with a few messages: ../docs/screenshot.png.
// Run: cd e2e && npm ci && node screenshot.mjs [out.png] [--phone]
// Starts the real server like the tests do (NEBULA_BIN, default ../target/debug/nebula).

import fs from 'node:fs';
import path from 'node:path';

import { launchBrowser, logIn, newPage } from './lib/browser.mjs';
import { NebulaServer, REPO_DIR, rest } from './lib/server.mjs';

const args = process.argv.slice(2);
const phone = args.includes('--phone');
const out = path.resolve(args.find((a) => !a.startsWith('--')) || path.join(REPO_DIR, 'docs', 'screenshot.png'));
const password = 'correct-horse-battery';

const server = await NebulaServer.create({ RATE_LIMIT_MESSAGES_PER_SECOND: '0' });
let browser;
try {
  const register = (username) => rest(server.url, 'POST', '/auth/register', { body: { username, password } });
  const ada = await register('ada');
  const grace = await register('grace');
  const linus = await register('linus');

  const post = (who, roomId, content) =>
    rest(server.url, 'POST', `/rooms/${roomId}/messages`, { token: who.token, body: { content } });
  const createRoom = (who, name, description, isPrivate = false) =>
    rest(server.url, 'POST', '/rooms', { token: who.token, body: { name, description, is_private: isPrivate } });

  const room = await createRoom(ada, 'launch-planning', 'Shipping Nebula 1.0');
  await createRoom(grace, 'random', 'Anything goes');
  await createRoom(ada, 'design', 'UI and UX');
  await createRoom(ada, 'ops-oncall', 'Pager rotation', true);
  await createRoom(linus, 'kernel-hackers', 'Low-level talk');
  for (const who of [grace, linus]) {
    await rest(server.url, 'POST', `/rooms/${room.id}/members`, { token: who.token, body: {} });
  }
  await post(ada, room.id, 'Morning! Where are we with the release checklist?');
  await post(grace, room.id, 'Load test is green: 10k connections, p99 fan-out under 40 ms.');
  await post(grace, room.id, 'The reconnect logic survived a server restart mid-test too.');
  await post(linus, room.id, 'Nice. I reviewed the WebSocket backpressure patch, looks good to me.');
  await post(ada, room.id, 'Great — then let’s tag the release candidate this afternoon 🚀');
  await post(linus, room.id, 'Tagging is scripted, I can run it after lunch.\nI’ll post the changelog here.');
  await post(grace, room.id, '<b>Reminder:</b> HTML in messages shows as text, as it should.');

  browser = await launchBrowser();
  const viewport = phone ? { width: 390, height: 780 } : { width: 1280, height: 760 };
  // Grace is in the room and typing, so the screenshot shows presence and the typing indicator.
  const g = await newPage(browser);
  await logIn(g.page, server.url, 'grace', password);
  await g.page.click('#my-rooms .room-item:has-text("launch-planning")');
  await g.page.locator('#message-list .msg').first().waitFor();

  const a = await newPage(browser, { viewport });
  await a.page.emulateMedia({ colorScheme: 'light', reducedMotion: 'reduce' });
  await logIn(a.page, server.url, 'ada', password);
  await a.page.click('#my-rooms .room-item:has-text("launch-planning")');
  await a.page.locator('#message-list .msg').nth(6).waitFor();
  await a.page.locator('#online-list li', { hasText: 'grace' }).waitFor({ state: 'attached' });

  await post(linus, room.id, 'Also: the phone layout works nicely now.');
  await a.page.locator('#message-list .msg-body', { hasText: 'phone layout' }).waitFor();
  // Grace has read it: her read marker shows under it on Ada's screen.
  await a.page.locator('#message-list .receipts', { hasText: 'grace' }).waitFor({ timeout: 10_000 }).catch(() => {});
  await g.page.locator('#composer-input').pressSequentially('On my way', { delay: 20 });
  await a.page.locator('#typing', { hasText: 'grace is typing' }).waitFor();
  await a.page.fill('#composer-input', 'Sounds good!');
  await a.page.locator('#composer-input').blur();
  await a.page.waitForTimeout(300);

  fs.mkdirSync(path.dirname(out), { recursive: true });
  await a.page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser?.close().catch(() => {});
  await server.stop();
}
