// sending.js — my messages on their way (optimistic): shown as "Sending…" at once, gone when
// the server's ack (or the stored message) comes, "Not sent" with Retry (the same
// client_msg_id, so a retry cannot duplicate it) when the server refuses it or does not answer
// within ACK_TIMEOUT_MS. Sent through the socket (the SDK's session) when the room is
// subscribed, else over REST.

import { api } from './api.js';
import * as composer from './composer.js';
import { applyFromRest } from './feed.js';
import { $, currentRoom, state } from './state.js';
import { scrollToBottom } from './timeline.js';
import * as ui from './ui.js';
import * as uploads from './uploads.js';

const ACK_TIMEOUT_MS = 10_000;

/** What the rest of the app does for us: stopTyping(send). */
let hooks = null;

export function bindSending(h) {
  hooks = h;
}

function newClientMsgId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  // Not a secure context (plain http on a LAN address): build a v4 UUID by hand.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function sendCurrent() {
  const room = currentRoom();
  if (!room) return;
  if (uploads.busy()) {
    ui.toast('Wait for the files to finish uploading.', 'warn', 3000);
    return;
  }
  const draft = composer.takeDraft({ allowEmpty: uploads.readyCount() > 0 });
  if (!draft) return;
  hooks.stopTyping(true);
  const p = {
    clientMsgId: newClientMsgId(),
    content: draft.content,
    attachments: uploads.takeReady(),
    replyTo: draft.replyTo?.id ?? null,
    status: 'sending',
    error: null,
    timer: null,
    via: null,
  };
  room.pending.set(p.clientMsgId, p);
  $('pending-list').append(pendingNodeFor(room, p));
  scrollToBottom();
  dispatch(room, p);
}

export function renderPending(room) {
  $('pending-list').replaceChildren(...[...room.pending.values()].map((p) => pendingNodeFor(room, p)));
}

function pendingNodeFor(room, p) {
  return ui.pendingNode(p, state.me, {
    onRetry: () => dispatch(room, p),
    onDiscard: () => {
      clearTimeout(p.timer);
      room.pending.delete(p.clientMsgId);
      pendingEl(p.clientMsgId)?.remove();
    },
  });
}

function pendingEl(clientMsgId) {
  for (const li of $('pending-list').children) if (li.dataset.clientMsgId === clientMsgId) return li;
  return null;
}

function updatePending(room, p) {
  if (room.id !== state.currentId) return;
  const li = pendingEl(p.clientMsgId);
  if (li) ui.updatePendingNode(li, p);
}

function dispatch(room, p) {
  if (!state.rooms.has(room.id) || !room.pending.has(p.clientMsgId)) return;
  clearTimeout(p.timer);
  p.status = 'sending';
  p.error = null;
  updatePending(room, p);
  // Through the SDK's session, which re-sends it with the same client_msg_id after a
  // reconnect until acknowledged; the ack (an event like any other) resolves it here.
  const sent = state.socket?.subscribed(room.id)
    ? state.socket?.sendMessage(room.id, p.content, {
        clientMsgId: p.clientMsgId,
        replyTo: p.replyTo || undefined,
        attachments: p.attachments.map((m) => m.id),
      })
    : null;
  if (sent) {
    p.via = 'ws';
    p.timer = setTimeout(() => failPending(room, p, 'no answer from the server'), ACK_TIMEOUT_MS);
    // A refusal arrives as an `error` event too (events.js fails the message with it).
    sent.catch(() => {});
    return;
  }
  // Socket down: REST, with the same client_msg_id so a later retry cannot duplicate it.
  p.via = 'rest';
  p.timer = setTimeout(() => failPending(room, p, 'no answer from the server'), ACK_TIMEOUT_MS);
  api
    .postMessage(room.id, p.content, p.clientMsgId, p.replyTo, p.attachments.map((m) => m.id))
    .then((msg) => {
      resolvePending(room, p.clientMsgId);
      applyFromRest(room, msg);
      if (room.id === state.currentId) scrollToBottom();
    })
    .catch((e) => {
      if (room.pending.get(p.clientMsgId) !== p) return;
      failPending(room, p, e.status === 0 ? 'offline' : e.detail);
    });
}

export function failPending(room, p, why) {
  if (room.pending.get(p.clientMsgId) !== p) return;
  clearTimeout(p.timer);
  p.status = 'failed';
  p.error = why || null;
  updatePending(room, p);
}

export function resolvePending(room, clientMsgId) {
  const p = room.pending.get(clientMsgId);
  if (!p) return;
  clearTimeout(p.timer);
  room.pending.delete(clientMsgId);
  if (room.id === state.currentId) pendingEl(clientMsgId)?.remove();
}
