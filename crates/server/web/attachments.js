// attachments.js — how a message's files look: images as thumbnails that open full size in a
// viewer, other files as download links with their name and size. Every address is the
// server's short-lived signed URL from the media object (`url`, `thumbnail_url`), so no token
// goes into a URL; when one has expired (a page left open for hours) the image asks
// `GET /media/{id}/info` for fresh ones, once.

import { api } from './api.js';
import { $ } from './state.js';
import * as ui from './ui.js';

const UNITS = ['B', 'KB', 'MB', 'GB'];

/** "1.5 MB": bytes in the largest unit that keeps the number at least 1. */
export function formatSize(bytes) {
  let n = Number(bytes) || 0;
  let u = 0;
  while (n >= 1024 && u < UNITS.length - 1) {
    n /= 1024;
    u += 1;
  }
  return `${u === 0 || n >= 10 ? Math.round(n) : n.toFixed(1)} ${UNITS[u]}`;
}

/** Images the browser shows inline (the server serves exactly these inline, too). */
export function isInlineImage(media) {
  return ['image/png', 'image/jpeg', 'image/gif', 'image/webp'].includes(media.content_type);
}

/** The nodes for a message's `attachments` (empty when there are none). */
export function attachmentNodes(list) {
  return (list || []).map((m) => (isInlineImage(m) && m.url ? imageNode(m) : fileNode(m)));
}

function imageNode(media) {
  const src = media.thumbnail_url || media.url;
  const img = ui.el('img', {
    class: 'att-thumb',
    attrs: {
      src,
      alt: media.filename,
      loading: 'lazy',
      width: media.width && media.height ? String(thumbSize(media).w) : false,
      height: media.width && media.height ? String(thumbSize(media).h) : false,
    },
  });
  refreshOnError(img, media, (fresh) => fresh.thumbnail_url || fresh.url);
  return ui.el(
    'button',
    {
      class: 'att att-image',
      attrs: { type: 'button', title: `${media.filename} (${formatSize(media.size)})`, 'aria-label': `Open image ${media.filename}` },
      dataset: { mediaId: media.id },
      on: { click: () => openViewer(media) },
    },
    img,
  );
}

/** The thumbnail's box: at most 320 px on its longer side, as the server makes it. */
function thumbSize(media) {
  const scale = Math.min(1, 320 / Math.max(media.width, media.height));
  return { w: Math.max(1, Math.round(media.width * scale)), h: Math.max(1, Math.round(media.height * scale)) };
}

function fileNode(media) {
  // The server sends anything but PNG/JPEG/GIF/WebP as an attachment, so this downloads.
  return ui.el(
    'a',
    {
      class: 'att att-file',
      attrs: { href: media.url || '#', download: media.filename, rel: 'noopener' },
      dataset: { mediaId: media.id },
      on: {
        click: async (e) => {
          // An expired signature: fetch a fresh one and go there.
          if (media.url && !expired(media.url)) return;
          e.preventDefault();
          const link = e.currentTarget;
          try {
            const fresh = await api.mediaInfo(media.id);
            Object.assign(media, fresh);
            link.setAttribute('href', fresh.url);
            location.assign(fresh.url);
          } catch {
            ui.toast('This file is no longer available.', 'warn');
          }
        },
      },
    },
    ui.el('span', { class: 'att-name', text: media.filename }),
    ui.el('span', { class: 'att-size', text: formatSize(media.size) }),
  );
}

function expired(url) {
  const exp = Number(new URL(url, location.href).searchParams.get('exp'));
  return exp > 0 && exp * 1000 < Date.now();
}

/** When `img` fails to load, fetch the media object again and retry once with `pick(fresh)`. */
function refreshOnError(img, media, pick) {
  let retried = false;
  img.addEventListener('error', async () => {
    if (retried) return;
    retried = true;
    try {
      const fresh = await api.mediaInfo(media.id);
      Object.assign(media, fresh);
      const src = pick(fresh);
      if (src) img.src = src;
    } catch {
      img.alt = `${media.filename} (unavailable)`;
    }
  });
}

/** Show an image full size in the viewer dialog. */
export function openViewer(media) {
  const dialog = $('image-viewer');
  const img = ui.el('img', { class: 'viewer-img', attrs: { src: media.url, alt: media.filename } });
  refreshOnError(img, media, (fresh) => fresh.url);
  $('image-viewer-body').replaceChildren(img);
  $('image-viewer-name').textContent = `${media.filename} · ${formatSize(media.size)}${media.width ? ` · ${media.width} × ${media.height}` : ''}`;
  $('image-viewer-download').setAttribute('href', media.url);
  $('image-viewer-download').setAttribute('download', media.filename);
  if (!dialog.open) dialog.showModal();
}

/** Wire the viewer's close button (and a click outside the image). */
export function bindViewer() {
  const dialog = $('image-viewer');
  $('image-viewer-close').addEventListener('click', () => dialog.close());
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog) dialog.close();
  });
  dialog.addEventListener('close', () => $('image-viewer-body').replaceChildren());
}
