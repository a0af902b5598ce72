// Browser tests of files and stories in the web client: attaching by button, paste and drop,
// images as thumbnails that open full size (through signed URLs, no token in them), other
// files as download links, and stories between two contacts.
// Run: cd e2e && npm ci && node --test

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';

import { launchBrowser, newPage, pageSession, send, signUp, waitOnline } from '../lib/browser.mjs';
import { NebulaServer, rest, uniqueName } from '../lib/server.mjs';

/** A real `width` × `height` RGB PNG (a gradient), built here so the test needs no fixtures. */
function png(width, height) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    for (let x = 0; x < width; x++) {
      raw[row + 1 + x * 3] = (x * 255) / width;
      raw[row + 2 + x * 3] = (y * 255) / height;
      raw[row + 3 + x * 3] = 128;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** The server's upload limit in this test (the client reads it from `GET /media/limits`). */
const MAX_BYTES = 1024 * 1024;

/** The `<li>` of the message whose attachments include a file named `filename`. */
function messageWithFile(page, filename) {
  return page.locator('#message-list > li.msg').filter({ has: page.locator(`.attachments [title^="${filename} "], .attachments .att-name:text-is("${filename}")`) });
}

/**
 * Put files on the page as a user would without the file picker: `how` is 'paste' (a
 * ClipboardEvent on the message box) or 'drop' (a DragEvent on the room).
 */
async function giveFiles(page, how, files) {
  await page.evaluate(
    ([how, files]) => {
      const dt = new DataTransfer();
      for (const f of files) dt.items.add(new File([new Uint8Array(f.bytes)], f.name, { type: f.type }));
      const target = document.getElementById('composer-input');
      const event =
        how === 'paste'
          ? new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true })
          : new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true });
      target.dispatchEvent(event);
    },
    [how, files.map((f) => ({ name: f.name, type: f.type, bytes: [...f.bytes] }))],
  );
}

/** Wait until an `<img>` has loaded and return its natural size. */
async function loadedSize(locator) {
  const handle = await locator.elementHandle();
  await locator.page().waitForFunction((img) => img.complete && img.naturalWidth > 0, handle);
  return locator.evaluate((img) => ({ w: img.naturalWidth, h: img.naturalHeight, src: img.getAttribute('src') }));
}

async function openRoomByUrl(page, base, roomId, name) {
  await page.goto(`${base}/#room=${roomId}`);
  await page.reload();
  await waitOnline(page);
  await page.locator('#room-title', { hasText: name }).waitFor();
}

describe('files and stories in the web client', () => {
  let server;
  let browser;
  let alice;
  let bob;
  let aliceToken;
  let bobToken;
  const aliceName = uniqueName('alice');
  const bobName = uniqueName('bob');
  const roomName = `Files ${randomUUID().slice(0, 6)}`;
  let roomId;

  before(async () => {
    server = await NebulaServer.create({ MEDIA_MAX_BYTES: String(MAX_BYTES) });
    browser = await launchBrowser();
    alice = await newPage(browser);
    bob = await newPage(browser);
    for (const p of [alice.page, bob.page]) p.setDefaultTimeout(15_000);
    await signUp(alice.page, server.url, aliceName);
    await signUp(bob.page, server.url, bobName);
    aliceToken = (await pageSession(alice.page)).token;
    bobToken = (await pageSession(bob.page)).token;
    roomId = (await rest(server.url, 'POST', '/rooms', { token: aliceToken, body: { name: roomName } })).id;
    await rest(server.url, 'POST', `/rooms/${roomId}/members`, { token: bobToken, body: {} });
    await openRoomByUrl(alice.page, server.url, roomId, roomName);
    await openRoomByUrl(bob.page, server.url, roomId, roomName);
  });

  after(async () => {
    await browser?.close().catch(() => {});
    if (server) {
      if (process.exitCode) console.error(`--- server log tail ---\n${server.logTail(60)}`);
      await server.stop();
    }
  });

  test('an image attached with the button shows as a thumbnail on both sides and opens full size', async () => {
    await alice.page.setInputFiles('#file-input', { name: 'sunset.png', mimeType: 'image/png', buffer: png(640, 480) });
    await alice.page.locator('#attach-tray .upload[data-status="done"]', { hasText: 'sunset.png' }).waitFor();
    await send(alice.page, 'Look at this');
    await alice.page.locator('#attach-tray').waitFor({ state: 'hidden' });

    for (const p of [alice.page, bob.page]) {
      const li = messageWithFile(p, 'sunset.png');
      await li.waitFor();
      assert.equal(await li.locator('.msg-body').textContent(), 'Look at this');
      const thumb = await loadedSize(li.locator('img.att-thumb'));
      assert.ok(thumb.w <= 320 && thumb.h <= 320, `a thumbnail, not the full image: ${thumb.w}×${thumb.h}`);
      assert.match(thumb.src, /^\/media\/[0-9a-f-]{36}\/thumbnail\?exp=\d+&sig=/, 'a signed URL');
      assert.doesNotMatch(thumb.src, /token/i);
    }

    // Bob opens it: the viewer shows the full image.
    await messageWithFile(bob.page, 'sunset.png').locator('button.att-image').click();
    await bob.page.locator('#image-viewer[open]').waitFor();
    const full = await loadedSize(bob.page.locator('#image-viewer img.viewer-img'));
    assert.deepEqual([full.w, full.h], [640, 480]);
    assert.match(full.src, /^\/media\/[0-9a-f-]{36}\?exp=\d+&sig=/);
    await bob.page.click('#image-viewer-close');
    await bob.page.locator('#image-viewer').waitFor({ state: 'hidden' });
    assert.deepEqual([...alice.page.errors, ...bob.page.errors], []);
  });

  test('a pasted file that is not an image is a download link with its name and size', async () => {
    const text = 'meeting notes\n'.repeat(150); // 2100 bytes
    await giveFiles(bob.page, 'paste', [{ name: 'notes.txt', type: 'text/plain', bytes: Buffer.from(text) }]);
    await bob.page.locator('#attach-tray .upload[data-status="done"]', { hasText: 'notes.txt' }).waitFor();
    // No text: the file alone is the message.
    await bob.page.press('#composer-input', 'Enter');

    const link = messageWithFile(alice.page, 'notes.txt').locator('a.att-file');
    await link.waitFor();
    assert.equal(await link.locator('.att-name').textContent(), 'notes.txt');
    assert.equal(await link.locator('.att-size').textContent(), '2.1 KB');
    assert.equal(await link.getAttribute('download'), 'notes.txt');
    const href = await link.getAttribute('href');
    assert.match(href, /^\/media\/[0-9a-f-]{36}\?exp=\d+&sig=/);
    // The signed link works without a token, and the server says to download it.
    const got = await alice.page.evaluate(async (href) => {
      const res = await fetch(href, { cache: 'no-store' });
      return { status: res.status, disposition: res.headers.get('content-disposition'), body: await res.text() };
    }, href);
    assert.equal(got.status, 200);
    assert.match(got.disposition, /^attachment/);
    assert.equal(got.body, text);
  });

  test("a file over the server's limit is refused before it is sent", async () => {
    let uploads = 0;
    const count = (req) => {
      if (req.method() === 'POST' && new URL(req.url()).pathname === '/media') uploads += 1;
    };
    bob.page.on('request', count);
    await giveFiles(bob.page, 'paste', [{ name: 'huge.bin', type: 'application/octet-stream', bytes: Buffer.alloc(MAX_BYTES + 1) }]);
    await bob.page.locator('.toast', { hasText: '“huge.bin” is too large (at most 1.0 MB).' }).waitFor();
    assert.equal(await bob.page.locator('#attach-tray .upload').count(), 0);
    bob.page.off('request', count);
    assert.equal(uploads, 0, 'nothing was uploaded');
  });

  test('files dropped on the room upload with progress; one removed from the tray is not sent', async () => {
    // Hold the uploads' answers back to see them in progress.
    let release;
    const gate = new Promise((r) => {
      release = r;
    });
    await alice.page.route(/\/media\?filename=/, async (route) => {
      await gate;
      await route.continue();
    });
    await giveFiles(alice.page, 'drop', [
      { name: 'small.png', type: 'image/png', bytes: png(40, 30) },
      { name: 'oops.bin', type: 'application/octet-stream', bytes: Buffer.from('not this one') },
    ]);
    const tray = alice.page.locator('#attach-tray');
    await tray.locator('.upload[data-status="uploading"]', { hasText: 'small.png' }).locator('progress.upload-progress').waitFor();
    // Sending while a file is still uploading waits: nothing is sent, the text stays.
    await send(alice.page, 'Dropped');
    await alice.page.locator('.toast', { hasText: 'Wait for the files' }).waitFor();
    assert.equal(await alice.page.inputValue('#composer-input'), 'Dropped');
    assert.equal(await alice.page.locator('#pending-list > li').count(), 0);
    release();
    await tray.locator('.upload[data-status="done"]', { hasText: 'small.png' }).waitFor();
    await alice.page.unroute(/\/media\?filename=/);
    await tray.locator('.upload', { hasText: 'oops.bin' }).locator('.upload-remove').click();
    assert.equal(await tray.locator('.upload').count(), 1);
    await send(alice.page, 'Dropped');

    const li = messageWithFile(bob.page, 'small.png');
    await li.waitFor();
    const thumb = await loadedSize(li.locator('img.att-thumb'));
    assert.deepEqual([thumb.w, thumb.h], [40, 30]);
    assert.equal(await li.locator('.attachments > *').count(), 1, 'the removed file was not attached');
  });

  test('a story posted by a contact shows in the bar, and its view is listed for the author', async () => {
    // Asking each other makes them contacts.
    await rest(server.url, 'POST', '/contacts/requests', { token: aliceToken, body: { username: bobName } });
    await rest(server.url, 'POST', '/contacts/requests', { token: bobToken, body: { username: aliceName } });

    await alice.page.click('#stories-bar .story-add button');
    await alice.page.locator('#story-post-dialog[open]').waitFor();
    await alice.page.fill('#story-text', 'Off to the mountains');
    await alice.page.setInputFiles('#story-image', { name: 'peak.png', mimeType: 'image/png', buffer: png(200, 100) });
    await alice.page.click('#story-post-submit');
    await alice.page.locator('#story-post-dialog').waitFor({ state: 'hidden' });
    await alice.page.locator(`#stories-bar .story-item[data-user="${aliceName}"]`).waitFor();

    // Bob's bar shows it once his page fetches the list again (here: a reload).
    await bob.page.reload();
    await waitOnline(bob.page);
    const item = bob.page.locator(`#stories-bar .story-item[data-user="${aliceName}"]`);
    await item.waitFor();
    assert.match(await item.getAttribute('class'), /unseen/);
    const viewed = bob.page.waitForResponse((r) => r.request().method() === 'POST' && /\/stories\/[0-9a-f-]{36}\/views$/.test(r.url()));
    await item.locator('button').click();
    await bob.page.locator('#story-viewer[open]').waitFor();
    assert.equal((await viewed).status(), 204, 'showing the story records a view');
    assert.equal(await bob.page.locator('#story-body').textContent(), 'Off to the mountains');
    const img = await loadedSize(bob.page.locator('#story-media img'));
    assert.deepEqual([img.w, img.h], [200, 100]);
    assert.equal(await bob.page.locator('#story-delete').isVisible(), false, 'only the author may delete');
    assert.equal(await bob.page.locator('#story-views-box').isVisible(), false, 'only the author sees views');
    await bob.page.click('#story-close');
    await bob.page.locator(`#stories-bar .story-item[data-user="${aliceName}"]:not(.unseen)`).waitFor();

    // Alice opens her own story: Bob is among its viewers; she deletes it.
    await alice.page.locator(`#stories-bar .story-item[data-user="${aliceName}"] button`).click();
    await alice.page.locator('#story-viewer[open]').waitFor();
    await alice.page.locator(`#story-views .story-view[data-user="${bobName}"]`).waitFor();
    assert.equal(await alice.page.locator('#story-views-title').textContent(), 'Seen by 1');
    await alice.page.click('#story-delete');
    await alice.page.click('#confirm-ok');
    await alice.page.locator('#story-viewer').waitFor({ state: 'hidden' });
    await alice.page.locator(`#stories-bar .story-item[data-user="${aliceName}"]`).waitFor({ state: 'detached' });
    const { stories } = await rest(server.url, 'GET', '/stories', { token: bobToken });
    assert.deepEqual(stories, [], 'deleted for everyone');
    assert.deepEqual([...alice.page.errors, ...bob.page.errors], []);
  });
});
