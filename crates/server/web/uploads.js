// uploads.js — the files waiting to go with the next message: chosen with the attach button,
// dropped on the room, or pasted into the message box. Each uploads at once (POST /media, with
// its progress shown) and waits in the tray above the composer with a remove button; sending
// takes the finished ones (`takeReady`) and the message names their ids in `attachments`.

import { api, uploadMedia } from './api.js';
import { formatSize } from './attachments.js';
import { $ } from './state.js';
import * as ui from './ui.js';

/** The server's largest upload (`GET /media/limits`); its default until that answers. */
let maxBytes = 25 * 1024 * 1024;
/** The server accepts at most this many attachments on one message. */
export const MAX_ATTACHMENTS = 10;

/** @type {{key: number, file: File, status: 'uploading'|'done'|'failed', sent: number, media: object|null, error: string|null, abort: AbortController, node: HTMLElement}[]} */
let items = [];
let nextKey = 1;

/** Wire the attach button, the file input, drag-and-drop on `dropZone` and paste. */
export function bindUploads({ dropZone }) {
  const input = $('file-input');
  $('attach-btn').addEventListener('click', () => input.click());
  input.addEventListener('change', () => {
    addFiles([...input.files]);
    input.value = '';
  });
  $('composer-input').addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files || [])];
    if (files.length === 0) return; // plain text: the textarea pastes it
    e.preventDefault();
    addFiles(files);
  });
  let depth = 0;
  const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes('Files');
  dropZone.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth += 1;
    dropZone.classList.add('drop-target');
  });
  dropZone.addEventListener('dragover', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = 'copy';
  });
  dropZone.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) dropZone.classList.remove('drop-target');
  });
  // A file dropped anywhere else must not make the browser leave the chat to open it.
  for (const type of ['dragover', 'drop']) {
    window.addEventListener(type, (e) => {
      if (hasFiles(e)) e.preventDefault();
    });
  }
  dropZone.addEventListener('drop', (e) => {
    depth = 0;
    dropZone.classList.remove('drop-target');
    const files = [...(e.dataTransfer?.files || [])];
    if (files.length === 0) return;
    e.preventDefault();
    addFiles(files);
  });
}

/** Ask the server for its upload limit (after logging in). */
export function loadLimits() {
  api
    .mediaLimits()
    .then((l) => {
      if (l?.max_bytes > 0) maxBytes = l.max_bytes;
    })
    .catch(() => {
      /* keep the default; the server still answers 413 */
    });
}

/** The largest file the server takes, in bytes. */
export function maxUploadBytes() {
  return maxBytes;
}

/** Start uploading `files` (over-limit ones are refused with a toast). */
export function addFiles(files) {
  for (const file of files) {
    if (items.length >= MAX_ATTACHMENTS) {
      ui.toast(`At most ${MAX_ATTACHMENTS} files per message.`, 'warn');
      break;
    }
    if (file.size > maxBytes) {
      ui.toast(`“${file.name}” is too large (at most ${formatSize(maxBytes)}).`, 'warn');
      continue;
    }
    if (file.size === 0) {
      ui.toast(`“${file.name}” is empty.`, 'warn');
      continue;
    }
    start(file);
  }
  render();
}

function start(file) {
  const item = { key: nextKey++, file, status: 'uploading', sent: 0, media: null, error: null, abort: new AbortController(), node: null };
  items.push(item);
  uploadMedia(file, {
    signal: item.abort.signal,
    onProgress: (sent) => {
      item.sent = sent;
      updateNode(item);
    },
  })
    .then((media) => {
      item.status = 'done';
      item.media = media;
      updateNode(item);
    })
    .catch((e) => {
      if (e?.name === 'AbortError') return;
      item.status = 'failed';
      item.error =
        e.code === 'payload_too_large'
          ? 'too large'
          : e.code === 'quota_exceeded'
            ? 'your storage is full'
            : e.detail || 'upload failed';
      updateNode(item);
    });
}

function remove(item) {
  item.abort.abort();
  items = items.filter((i) => i !== item);
  render();
}

/** Are files still uploading (sending now would leave them behind)? */
export function busy() {
  return items.some((i) => i.status === 'uploading');
}

/** How many finished uploads would go with the next message. */
export function readyCount() {
  return items.filter((i) => i.status === 'done').length;
}

/** The finished uploads' media objects, removed from the tray (failed ones stay to be seen). */
export function takeReady() {
  const ready = items.filter((i) => i.status === 'done').map((i) => i.media);
  items = items.filter((i) => i.status !== 'done');
  render();
  return ready;
}

/** Forget everything (another room opened, logging out). */
export function clearUploads() {
  for (const i of items) i.abort.abort();
  items = [];
  render();
}

function render() {
  const tray = $('attach-tray');
  tray.replaceChildren(...items.map((i) => (i.node ||= itemNode(i))));
  tray.hidden = items.length === 0;
}

function itemNode(item) {
  const node = ui.el(
    'li',
    { class: 'upload', dataset: { key: String(item.key) } },
    ui.el('span', { class: 'upload-thumb' }),
    ui.el(
      'span',
      { class: 'upload-text' },
      ui.el('span', { class: 'upload-name', text: item.file.name || 'file' }),
      ui.el('span', { class: 'upload-status' }),
    ),
    ui.el('progress', { class: 'upload-progress', attrs: { max: '100', value: '0' } }),
    ui.el(
      'button',
      {
        class: 'icon-btn upload-remove',
        attrs: { type: 'button', 'aria-label': `Remove ${item.file.name || 'file'}`, title: 'Remove' },
        on: { click: () => remove(item) },
      },
      ui.icon('close', 14),
    ),
  );
  item.node = node;
  updateNode(item);
  return node;
}

function updateNode(item) {
  const node = item.node;
  if (!node) return;
  node.dataset.status = item.status;
  const total = item.file.size || 1;
  const pct = item.status === 'done' ? 100 : Math.min(100, Math.round((item.sent / total) * 100));
  const bar = node.querySelector('.upload-progress');
  bar.value = pct;
  bar.hidden = item.status !== 'uploading';
  const status = node.querySelector('.upload-status');
  if (item.status === 'uploading') status.textContent = `${pct}% of ${formatSize(item.file.size)}`;
  else if (item.status === 'done') status.textContent = formatSize(item.media.size);
  else status.textContent = `Not uploaded: ${item.error}`;
  node.classList.toggle('failed', item.status === 'failed');
  const thumb = node.querySelector('.upload-thumb');
  if (item.status === 'done' && !thumb.firstChild) {
    thumb.append(
      item.media.thumbnail_url
        ? ui.el('img', { attrs: { src: item.media.thumbnail_url, alt: '', width: '32', height: '32' } })
        : ui.icon('clip', 16),
    );
  }
}
