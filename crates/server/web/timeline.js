// timeline.js — the open room's message list. #message-list holds exactly `room.order` (the SDK
// session's timeline of the room, synced by feed.js), one `<li>` per message in seq order (day
// separators, the "New messages" divider and read receipts live inside those `<li>`s);
// #pending-list holds my unacknowledged sends (sending.js).
//
// Clicks on the messages' buttons are handled here for the whole list and handed to the
// `actions` given to `bindTimeline` (reply, edit, delete, react), which talk to the server.

import { api } from './api.js';
import { closeEditor, messageNode, openEditor, updateMessageNode } from './message-view.js';
import { loadReactors, myReactions, reactors, showPicker } from './reactions.js';
import { $, currentRoom, state } from './state.js';
import { upperBound } from './store.js';
import * as ui from './ui.js';

const NEAR_BOTTOM_PX = 80;
const MAX_PAGES_TO_JUMP = 100;

/** Reply targets that could not be fetched (message id), so they are not asked for again. */
const unavailable = new Set();
/** Reply targets being fetched (message id). */
const fetchingTargets = new Set();

let actions = null;

/**
 * Wire the list's buttons. `handlers`: onReply(room, msg), onEdit(room, msg, content) → promise,
 * onDelete(room, msg), onReact(room, msg, emoji), onToggleReaction(room, msg, emoji), onReport(room, msg),
 * loadOlder(room) → promise, loadLatest(room).
 */
export function bindTimeline(handlers) {
  actions = handlers;
  const list = $('message-list');
  list.addEventListener('click', (e) => {
    const button = e.target.closest('[data-action]');
    const li = button?.closest('li.msg');
    const room = currentRoom();
    const msg = li && room?.messages.get(Number(li.dataset.seq));
    if (!msg) return;
    switch (button.dataset.action) {
      case 'jump':
        return jumpTo(room, Number(button.dataset.targetSeq));
      case 'reply':
        return actions.onReply(room, msg);
      case 'edit':
        return startEdit(room, msg, li);
      case 'delete':
        return actions.onDelete(room, msg);
      case 'react':
        return showPicker(button, (emoji) => actions.onReact(room, msg, emoji));
      case 'toggle-reaction':
        return actions.onToggleReaction(room, msg, button.dataset.emoji);
      case 'report':
        return actions.onReport(room, msg);
      default:
        return undefined;
    }
  });
  // Who reacted (chip tooltips): refreshed when someone is about to look.
  const wantReactors = (e) => {
    const li = e.target.closest?.('.reaction')?.closest('li.msg');
    const room = currentRoom();
    const msg = li && room?.messages.get(Number(li.dataset.seq));
    if (msg) loadReactors(msg, (m) => refreshMessage(room, m));
  };
  list.addEventListener('pointerover', wantReactors);
  list.addEventListener('focusin', wantReactors);
}

// Scrolling

export function isNearBottom() {
  const s = $('scroller');
  return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
}

export function scrollToBottom() {
  const s = $('scroller');
  s.scrollTop = s.scrollHeight;
  $('jump-latest').hidden = true;
}

/**
 * Open the room at its "New messages" divider when there is one (the divider at the top of
 * the view, or the bottom if everything fits), else at the newest message.
 */
export function scrollToUnreadOrBottom(room) {
  const li = room.dividerSeq ? messageEl(room.dividerSeq) : null;
  if (li) {
    const s = $('scroller');
    s.scrollTop += li.getBoundingClientRect().top - s.getBoundingClientRect().top - 8;
    $('jump-latest').hidden = isNearBottom();
  } else scrollToBottom();
}

// Rendering

/** How this user sees `msg`: what they may do with it, its reply target, their reactions. */
function viewOf(room, msg) {
  const mine = msg.sender_id === state.me.id;
  return {
    mine,
    canEdit: mine,
    canDelete: mine || canModerate(room),
    canReport: !mine,
    target: msg.reply_to ? replyTarget(room, msg.reply_to) : null,
    myReactions: myReactions(msg),
    reactors: reactors(msg),
  };
}

/** Owners and admins of a room may delete anyone's message in it. */
export function canModerate(room) {
  const role = room.members?.get(state.me.id)?.role;
  return role === 'owner' || role === 'admin' || room.room.owner_id === state.me.id;
}

/** The message a reply points at: held, or fetched now (null meanwhile, false if it cannot be). */
function replyTarget(room, replyTo) {
  const held = room.get(replyTo.id, replyTo.seq);
  if (held) return held;
  if (unavailable.has(replyTo.id)) return false;
  if (!fetchingTargets.has(replyTo.id)) {
    fetchingTargets.add(replyTo.id);
    api
      .message(room.id, replyTo.id)
      .then((m) => room.addRef(m))
      .catch(() => unavailable.add(replyTo.id))
      .finally(() => {
        fetchingTargets.delete(replyTo.id);
        if (room.id === state.currentId) refreshReplies(room, replyTo.id);
      });
  }
  return null;
}

/** The version of the message each `<li>` shows, so a sync redraws only what changed. */
const shown = new WeakMap();

function buildNode(room, msg) {
  const li = messageNode(msg, viewOf(room, msg));
  shown.set(li, msg);
  loadReactors(msg, (m) => refreshMessage(room, m), { onlyIfUnknown: true });
  return li;
}

function redraw(room, li, msg) {
  shown.set(li, msg);
  updateMessageNode(li, msg, viewOf(room, msg));
}

export function messageEl(seq) {
  return $('message-list').querySelector(`li[data-seq="${seq}"]`);
}

/** Draw the open room's whole list. */
export function renderTimeline(room) {
  const nodes = [];
  let prev = null;
  for (const seq of room.order) {
    const li = buildNode(room, room.messages.get(seq));
    ui.updateGrouping(li, prev);
    nodes.push(li);
    prev = li;
  }
  $('message-list').replaceChildren(...nodes);
  $('jump-latest').hidden = true;
  placeDivider(room);
  renderHistoryStatus(room);
  renderReceipts();
}

/**
 * Bring the list in line with `room.order` after the session's timeline changed: nodes for the
 * messages not shown yet (new ones below, an older page above), redraws for the ones in a newer
 * version. What the reader is looking at stays in place when a page is added above it.
 */
export function syncList(room) {
  const list = $('message-list');
  const scroller = $('scroller');
  const anchor = list.firstElementChild;
  const anchorTop = anchor?.offsetTop ?? 0;
  const bySeq = new Map();
  for (const li of [...list.children]) {
    const seq = Number(li.dataset.seq);
    if (room.messages.has(seq)) bySeq.set(seq, li);
    else li.remove();
  }
  let prev = null;
  for (const seq of room.order) {
    const msg = room.messages.get(seq);
    let li = bySeq.get(seq);
    if (!li) {
      li = buildNode(room, msg);
      list.insertBefore(li, prev ? prev.nextElementSibling : list.firstElementChild);
      ui.updateGrouping(li, prev);
      ui.updateGrouping(li.nextElementSibling, li);
      // An older page can hold an earlier unread message than the one the divider precedes.
      const unreadEarlier =
        room.dividerSeq && msg.seq < room.dividerSeq && msg.seq > room.unreadFrom && !viewOf(room, msg).mine && !msg.deleted_at;
      if (unreadEarlier) room.dividerSeq = msg.seq;
      if (unreadEarlier || msg.seq === room.dividerSeq) placeDivider(room);
    } else if (shown.get(li) !== msg) redraw(room, li, msg);
    prev = li;
  }
  if (anchor?.isConnected) scroller.scrollTop += anchor.offsetTop - anchorTop;
}

/** `msg` changed (a newer version, or what is known about it): redraw it and the replies quoting it. */
export function refreshMessage(room, msg) {
  if (room.id !== state.currentId) return;
  const held = room.messages.get(msg.seq);
  const li = held?.id === msg.id ? messageEl(msg.seq) : null;
  if (li) redraw(room, li, held);
  refreshReplies(room, msg.id);
}

/** Redraw every shown message (e.g. my role changed, so what I may delete did). */
export function refreshAll(room) {
  for (const li of $('message-list').children) {
    const msg = room.messages.get(Number(li.dataset.seq));
    if (msg) redraw(room, li, msg);
  }
}

function refreshReplies(room, targetId) {
  for (const quote of $('message-list').querySelectorAll(`.reply-quote[data-target-id="${CSS.escape(targetId)}"]`)) {
    const li = quote.closest('li.msg');
    const msg = room.messages.get(Number(li.dataset.seq));
    if (msg) redraw(room, li, msg);
  }
}

function startEdit(room, msg, li) {
  const done = () => {
    closeEditor(li);
    const latest = room.messages.get(msg.seq);
    if (latest) redraw(room, li, latest);
  };
  openEditor(li, msg.content, {
    onSave: async (content) => {
      await actions.onEdit(room, room.messages.get(msg.seq) || msg, content);
      done();
    },
    onCancel: done,
  });
}

/**
 * The room is being opened and I had read it up to `readSeq`: the "New messages" divider goes
 * before the first message of others after it, among those there when the room was opened
 * (found once the messages are loaded), and stays there while the room is open.
 */
export function markUnreadFrom(room, readSeq) {
  room.unreadFrom = readSeq;
  room.dividerSeq = undefined;
}

function placeDivider(room) {
  for (const sep of $('message-list').querySelectorAll('.unread-sep')) sep.remove();
  if (room.unreadFrom === null || !room.loaded) return;
  if (room.dividerSeq === undefined) room.dividerSeq = room.firstUnreadSeq(state.me.id, room.unreadFrom);
  const li = room.dividerSeq ? messageEl(room.dividerSeq) : null;
  li?.querySelector(':scope > .msg-row').before(
    ui.el('div', { class: 'unread-sep', attrs: { role: 'separator' } }, ui.el('span', { text: 'New messages' })),
  );
}

/** Scroll to message `seq` (loading older pages until it is there) and flash it. */
export async function jumpTo(room, seq) {
  for (let i = 0; i < MAX_PAGES_TO_JUMP && room.lowSeq !== null && seq < room.lowSeq && room.hasMoreOlder; i++) {
    await actions.loadOlder(room);
    if (room.id !== state.currentId || room.loadError) return;
  }
  const li = messageEl(seq);
  if (!li) {
    ui.toast('That message is not available.', 'warn', 3000);
    return;
  }
  li.scrollIntoView({ block: 'center' });
  li.classList.remove('highlight');
  // Restart the animation if it is still running from an earlier jump.
  void li.offsetWidth;
  li.classList.add('highlight');
  li.addEventListener('animationend', () => li.classList.remove('highlight'), { once: true });
}

export function renderHistoryStatus(room) {
  const box = $('history-status');
  if (room.loadError) {
    box.replaceChildren(
      ui.el('span', { text: 'Could not load messages. ' }),
      ui.el('button', {
        class: 'link-btn',
        attrs: { type: 'button' },
        text: 'Try again',
        on: { click: () => (room.loaded ? actions.loadOlder(room) : actions.loadLatest(room)) },
      }),
    );
  } else if (!room.loaded || room.loadingOlder) {
    box.replaceChildren(ui.el('span', { class: 'spinner', attrs: { 'aria-hidden': 'true' } }), ui.el('span', { text: 'Loading messages…' }));
  } else if (!room.hasMoreOlder) {
    box.replaceChildren(
      ui.el(
        'div',
        { class: 'room-start' },
        ui.el('strong', { text: room.room.peer ? `You and ${room.room.peer.username}` : `Welcome to ${room.room.name}` }),
        ui.el('span', {
          text: room.order.length ? `This is the beginning of the ${room.room.peer ? 'conversation' : 'room'}.` : 'No messages yet — say hello!',
        }),
      ),
    );
  } else box.replaceChildren();
}

// Read receipts

export function scheduleReceipts() {
  clearTimeout(state.receiptsTimer);
  state.receiptsTimer = setTimeout(renderReceipts, 150);
}

function nameOf(room, userId) {
  return room.members?.get(userId)?.username || room.online.get(userId)?.username || null;
}

/** "Seen by …" under the newest loaded message each other member has read. */
function renderReceipts() {
  const room = currentRoom();
  const list = $('message-list');
  const stick = isNearBottom();
  for (const r of list.querySelectorAll('.receipts')) r.remove();
  if (room?.order.length) {
    const bySeq = new Map();
    for (const [uid, seq] of room.reads) {
      const name = uid === state.me.id ? null : nameOf(room, uid);
      // The newest loaded message at or below the marker.
      const at = upperBound(room.order, seq) - 1;
      if (!name || at < 0) continue;
      const s = room.order[at];
      if (!bySeq.has(s)) bySeq.set(s, []);
      bySeq.get(s).push(name);
    }
    for (const [seq, names] of bySeq) {
      const li = messageEl(seq);
      if (!li) continue;
      names.sort((a, b) => a.localeCompare(b));
      const text =
        names.length > 3 ? `Seen by ${names.slice(0, 3).join(', ')} and ${names.length - 3} more` : `Seen by ${names.join(', ')}`;
      li.append(ui.el('div', { class: 'receipts', text }));
    }
  }
  if (stick) scrollToBottom();
}
