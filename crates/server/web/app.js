// app.js — Nebula web client: the connection, server events, the open room.
//
// Modules: api.js (REST through the SDK, sdk/index.js, + the session), socket.js (the SDK's
// WebSocket session with the page's states), auth.js (login / sign-up), rooms.js (my rooms,
// joining, leaving, the public directory), members.js (members and presence), sending.js (my
// messages on their way), store.js (per-room state: messages by seq and rev, gaps, unread),
// state.js (what the page shares), timeline.js (the open room's messages), message-view.js
// (one message's DOM), reactions.js (emoji picker, who reacted), composer.js (the message box,
// replies), roomlist.js (the sidebar), ui.js (DOM building, textContent only), social.js
// (direct messages, people, contacts, blocks, calls), uploads.js (files waiting to be sent),
// attachments.js (a message's files), stories.js (the stories bar), pages.js (chat /
// settings / admin), settings.js (my account), admin.js (server administration), report.js
// (reporting messages and users).

import * as admin from './admin.js';
import { api, getSession, clearSession, onUnauthorized } from './api.js';
import { bindAuth, showAuth } from './auth.js';
import { bindViewer } from './attachments.js';
import * as composer from './composer.js';
import * as members from './members.js';
import { loadMembers, renderMembers, renderPresence } from './members.js';
import { showPage } from './pages.js';
import { closePicker, forgetReactions, setReaction, toggleReaction } from './reactions.js';
import { bindReports, reportMessage } from './report.js';
import { bindRoomList, renderRoomList } from './roomlist.js';
import * as rooms from './rooms.js';
import { addRoom, dropRoom, joinRoom, loadPublicRooms, refreshRooms, resetLeaveButton } from './rooms.js';
import * as sending from './sending.js';
import { failPending, renderPending, resolvePending, sendCurrent } from './sending.js';
import * as settings from './settings.js';
import * as social from './social.js';
import { ChatSocket } from './socket.js';
import { $, currentRoom, state } from './state.js';
import { charCount } from './store.js';
import * as timeline from './timeline.js';
import { isNearBottom, scheduleReceipts, scrollToBottom } from './timeline.js';
import * as stories from './stories.js';
import * as ui from './ui.js';
import * as uploads from './uploads.js';

const TYPING_RESEND_MS = 3_000; // while typing, repeat `start` this often
const TYPING_IDLE_MS = 4_000; // send `stop` after this long without a keystroke
const TYPING_SHOW_MS = 8_000; // forget someone's `start` after this long without news
const PAGE_SIZE = 50;

// ---------------------------------------------------------------------------------------------
// Start

function boot() {
  fillIcons();
  bindAuth({ onSignedIn: enterApp });
  rooms.bindRooms({ subscribe, openRoom, closeRoomView, renderRoomHeader });
  sending.bindSending({ stopTyping, handleMessage });
  members.bindMembers({ renderRoomHeader, dropRoom, refreshRooms, renderTyping });
  bindChat();
  bindRoomList({ onOpen: openRoom, onJoin: joinRoom });
  social.bindSocial({ onOpen: openRoom, onAdd: addRoom });
  timeline.bindTimeline({
    onReply: (room, msg) => composer.setReply(msg),
    onEdit: editMessage,
    onDelete: deleteMessage,
    onReact: (room, msg, emoji) => react(room, msg, () => setReaction(msg, emoji, true)),
    onToggleReaction: (room, msg, emoji) => react(room, msg, () => toggleReaction(msg, emoji)),
    onReport: (room, msg) => reportMessage(room.id, msg),
    loadOlder,
    loadLatest,
  });
  composer.bindComposer({
    onSend: sendCurrent,
    onInput: noteTyping,
    onBlur: () => stopTyping(true),
    onEditLast: editLastMessage,
  });
  uploads.bindUploads({ dropZone: $('room-pane') });
  bindViewer();
  stories.bindStories();
  bindReports();
  settings.bindSettings({ logout, sessionReplaced });
  admin.bindAdmin();
  onUnauthorized(() => {
    if (!state.reauthing) logout('Your session has ended. Please log in again.');
  });
  if (getSession()) enterApp();
  else showAuth();
}

function fillIcons() {
  $('new-room').append(ui.icon('plus', 18));
  $('room-back').append(ui.icon('back', 20));
  $('members-toggle').append(ui.icon('users', 18));
  $('members-close').append(ui.icon('close', 18));
  $('send-btn').append(ui.icon('send', 18));
  $('reply-cancel').append(ui.icon('close', 16));
  $('attach-btn').append(ui.icon('clip', 18));
  $('image-viewer-close').append(ui.icon('close', 18));
  $('story-close').append(ui.icon('close', 18));
  $('jump-latest').prepend(ui.icon('down', 14), ' ');
}

function logout(message = '') {
  if (state.loggingOut) return;
  state.loggingOut = true;
  try {
    social.stopSocial(); // first: a call going on is hung up while the socket is still open
    state.socket?.stop();
    state.socket = null;
    for (const room of state.rooms.values()) for (const p of room.pending.values()) clearTimeout(p.timer);
    state.rooms.clear();
    state.currentId = null;
    state.me = null;
    state.account = null;
    $('open-admin').hidden = true;
    for (const id of ['report-dialog', 'confirm-dialog']) if ($(id).open) $(id).close();
    forgetReactions();
    uploads.clearUploads();
    stories.stopStories();
    clearSession();
    if (location.hash) history.replaceState(null, '', location.pathname);
    $('my-rooms').replaceChildren();
    $('public-rooms').replaceChildren();
    closeRoomView();
    showAuth(message);
  } finally {
    state.loggingOut = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Entering the chat

function enterApp() {
  const s = getSession();
  if (!s) return showAuth();
  state.me = s.user;
  $('auth-screen').hidden = true;
  showPage('chat');
  $('user-box').hidden = false;
  $('conn-status').hidden = false;
  $('me-name').textContent = s.user.username;
  $('me-avatar').replaceChildren(ui.avatar(s.user.username, 'sm'));

  state.socket = new ChatSocket({
    getToken: () => getSession()?.token ?? null,
    onEvent: handleEvent,
    onState: renderConnState,
    onOpen: handleSocketOpen,
    onClose: handleSocketClose,
    onAuthLost: (code, token) => {
      if (code === 4001) {
        // Our own password change revoked the token: settings.js logs in again and calls
        // sessionReplaced(). A socket of the old token closing late is no loss either.
        if (state.reauthing) return undefined;
        const now = getSession();
        if (now && token && now.token !== token) return sessionReplaced();
        return logout('Your session has ended (logged out, password changed or account deactivated). Please log in again.');
      }
      // The upgrade failed: a bad token (401) or just no server. Ask over REST at most every
      // 5 s; a 401 there logs out through onUnauthorized.
      if (Date.now() - state.authCheckAt > 5000) {
        state.authCheckAt = Date.now();
        api.me().catch(() => {});
      }
    },
  });
  state.socket.start();

  refreshRooms().then(() => {
    const id = roomIdFromHash();
    if (id && state.rooms.has(id)) openRoom(id);
  });
  loadPublicRooms(true);
  stories.startStories();
  uploads.loadLimits();
  api
    .serviceInfo()
    .then((info) => composer.setMaxChars(info?.limits?.message_max_chars))
    .catch(() => {
      /* keep the default; the server still refuses what is too long */
    });
  social.startSocial();
  settings.refreshAccount().then(admin.renderAdminEntry);
}

/** This page holds a new token (after its password change): reconnect the socket with it. */
function sessionReplaced() {
  const s = getSession();
  if (!s || !state.socket) return;
  state.me = { ...state.me, ...s.user };
  if (state.socket.stopped) state.socket.start();
  else state.socket.reconnectNow();
}

function roomIdFromHash() {
  const m = /^#room=([0-9a-fA-F-]{36})$/.exec(location.hash);
  return m ? m[1].toLowerCase() : null;
}

// ---------------------------------------------------------------------------------------------
// Connection state

const CONN_ANNOUNCE = {
  online: 'Connected.',
  reconnecting: 'Connection lost. Reconnecting…',
};

function renderConnState(stateName, info = {}) {
  const box = $('conn-status');
  // Screen readers hear transitions only, not the countdown.
  if (box.dataset.state !== stateName && CONN_ANNOUNCE[stateName] && !(stateName === 'online' && box.dataset.state === 'connecting')) {
    announce(CONN_ANNOUNCE[stateName]);
  }
  box.dataset.state = stateName;
  const text = $('conn-text');
  const retry = $('conn-retry');
  clearInterval(state.connTick);
  retry.hidden = true;
  if (stateName === 'online') text.textContent = 'Online';
  else if (stateName === 'connecting') text.textContent = 'Connecting…';
  else if (stateName === 'offline') text.textContent = 'Offline';
  else if (stateName === 'reconnecting') {
    const paint = () => {
      const left = info.retryAt ? Math.ceil((info.retryAt - Date.now()) / 1000) : 0;
      text.textContent = left > 0 ? `Reconnecting in ${left} s…` : 'Reconnecting…';
    };
    paint();
    if (info.retryAt) {
      retry.hidden = false;
      state.connTick = setInterval(paint, 500);
    }
  }
  document.body.dataset.conn = stateName;
}

function handleSocketOpen() {
  for (const room of state.rooms.values()) {
    room.subscribed = false;
    room.subscribing = false;
    subscribe(room);
  }
  // Membership may have changed while we were away.
  refreshRooms();
  social.socketOpened();
}

function handleSocketClose() {
  for (const room of state.rooms.values()) {
    room.subscribed = false;
    room.subscribing = false;
    room.typing.clear();
    for (const p of room.pending.values()) {
      if (p.status === 'sending' && p.via === 'ws') failPending(room, p, 'connection lost');
    }
  }
  stopTyping(false);
  renderTyping();
  social.socketClosed();
}

function subscribe(room) {
  if (!state.socket?.isOpen || room.subscribed || room.subscribing) return;
  const ev = { type: 'subscribe', room_id: room.id };
  const since = room.sinceSeq;
  // Resume: the messages after the highest contiguous seq we hold, and the changes (edits,
  // deletes, reactions) after the highest rev up to which we know them all.
  if (since !== null) ev.since_seq = since;
  if (since !== null && room.sinceRev !== null) ev.since_rev = room.sinceRev;
  if (state.socket.send(ev)) {
    room.subscribing = true;
    room.subscribeSince = since;
    room.subscribeResumed = ev.since_rev !== undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Server events

function handleEvent(ev) {
  if (social.handleSocialEvent(ev)) return undefined;
  switch (ev.type) {
    case 'subscribed':
      return onSubscribed(ev);
    case 'unsubscribed': {
      const room = state.rooms.get(ev.room_id);
      if (room) room.subscribed = room.subscribing = false;
      return;
    }
    case 'message.new':
      state.rooms.get(ev.message?.room_id)?.noteStreamRev(ev.message.rev, false);
      return handleMessage(ev.message, true);
    case 'message.updated':
      state.rooms.get(ev.message?.room_id)?.noteStreamRev(ev.message.rev, true);
      return applyVersion(ev.message);
    case 'message.ack':
      return onAck(ev);
    case 'typing':
      return onTyping(ev);
    case 'read':
      return onRead(ev);
    case 'presence':
      return members.onPresence(ev);
    case 'member.joined':
      return members.onMemberJoined(ev);
    case 'member.left':
      return members.onMemberLeft(ev);
    case 'member.updated':
      return members.onMemberUpdated(ev);
    case 'error':
      return onServerError(ev);
    default:
      return undefined;
  }
}

function onSubscribed(ev) {
  const room = state.rooms.get(ev.room_id);
  if (!room) return;
  room.subscribed = true;
  room.subscribing = false;
  room.online = new Map((ev.online || []).map((u) => [u.id, u]));
  room.noteSubscribed(Number(ev.last_rev) || 0, room.subscribeResumed);
  const last = Number(ev.last_seq) || 0;
  if (room.lastSeq === null || last > room.lastSeq) room.lastSeq = last;
  // With since_seq the server replays what we miss; without it (subscribed before the history
  // page arrived) anything between that page and this subscription is fetched over REST.
  if (room.loaded && room.subscribeSince === null && last > room.contigTop) fillGapSoon(room);
  // With since_seq the replay should reach last_seq; if it has not after a while, fetch it.
  if (room.loaded && room.subscribeSince !== null && last > room.contigTop) {
    setTimeout(() => {
      if (state.rooms.get(room.id) === room && room.loaded && room.contigTop < last) fillGapSoon(room);
    }, 3000);
  }
  if (room.id === state.currentId) {
    renderPresence();
    scheduleRead();
  }
}

function onAck(ev) {
  const msg = ev.message;
  const room = msg && state.rooms.get(msg.room_id);
  if (!room) return;
  if (ev.client_msg_id) resolvePending(room, ev.client_msg_id);
  handleMessage(msg, false);
}

/** A message from the server (live, replayed, acked or fetched over REST). */
function handleMessage(msg, live) {
  if (!msg) return;
  const room = state.rooms.get(msg.room_id);
  if (!room) return;
  const mine = msg.sender_id === state.me.id;
  if (mine && msg.client_msg_id && room.pending.has(msg.client_msg_id)) resolvePending(room, msg.client_msg_id);
  if (!mine && room.typing.delete(msg.sender_id) && room.id === state.currentId) renderTyping();
  const current = room.id === state.currentId;
  if (live && !mine && !current && room.countUnread(msg)) renderRoomList();

  if (!room.loaded) {
    if (room.loading) room.early.push(msg);
    else if (room.lastSeq === null || msg.seq > room.lastSeq) room.lastSeq = msg.seq;
    return;
  }

  const wasNearBottom = current && isNearBottom();
  const idx = room.insert(msg);
  if (idx < 0) {
    // Already here (replays and acks come twice), perhaps in an older version.
    applyVersion(msg);
    return;
  }
  if (current) {
    timeline.insertMessageNode(room, msg, idx);
    if (mine || wasNearBottom) scrollToBottom();
    else if (live) $('jump-latest').hidden = false;
    if (live && !mine) announce(`${msg.sender_username}: ${msg.content}`);
    scheduleRead();
    scheduleReceipts();
  }
  if (room.hasGap) fillGapSoon(room);
}

/** Another version of a message (edited, deleted, reacted to): keep the one with the higher rev. */
function applyVersion(msg) {
  const room = msg && state.rooms.get(msg.room_id);
  if (!room) return;
  // The newest page being fetched may predate this change: apply it once the page is in.
  if (room.loading) room.earlyVersions.push(msg);
  else if (room.update(msg)) timeline.refreshMessage(room, msg);
}

function onTyping(ev) {
  const room = state.rooms.get(ev.room_id);
  if (!room || ev.user_id === state.me.id) return;
  if (ev.state === 'start') room.typing.set(ev.user_id, { username: ev.username, until: Date.now() + TYPING_SHOW_MS });
  else room.typing.delete(ev.user_id);
  if (room.id === state.currentId) renderTyping();
}

function onRead(ev) {
  const room = state.rooms.get(ev.room_id);
  if (!room) return;
  const seq = Number(ev.seq) || 0;
  if (ev.user_id === state.me.id) {
    room.lastReadSent = Math.max(room.lastReadSent, seq);
    return;
  }
  if (seq > (room.reads.get(ev.user_id) || 0)) room.reads.set(ev.user_id, seq);
  if (room.id === state.currentId) scheduleReceipts();
}

function onServerError(ev) {
  const ref = ev.ref;
  if (ref) {
    for (const room of state.rooms.values()) {
      const p = room.pending.get(ref);
      if (p) {
        const why = ev.code === 'rate_limited' ? 'you are sending too fast' : ev.message || ev.code;
        failPending(room, p, why);
        return;
      }
    }
    const room = state.rooms.get(ref);
    if (room) {
      room.subscribing = false;
      if (ev.code === 'room_not_found' || ev.code === 'not_a_member') {
        // We are not (or no longer) in it.
        dropRoom(room.id);
        return;
      }
    }
  }
  if (ev.code === 'rate_limited') ui.toast('Slow down a little — rate limit reached.', 'warn');
  else ui.toast(ev.message || ev.code || 'Server error', 'error');
}

// ---------------------------------------------------------------------------------------------
// The open room

function openRoom(id) {
  const room = state.rooms.get(id);
  if (!room) return;
  if (state.currentId !== id) {
    stopTyping(true);
    resetLeaveButton();
    composer.clearReply();
    uploads.clearUploads();
    closePicker();
    currentRoom()?.markSeen();
    timeline.markUnreadFrom(room, room.lastReadSent);
  }
  state.currentId = id;
  room.markSeen();
  if (location.hash !== `#room=${id}`) history.replaceState(null, '', `#room=${id}`);
  document.body.classList.add('in-room');
  $('room-empty').hidden = true;
  $('room-pane').hidden = false;
  renderRoomList();
  renderRoomHeader();
  renderPresence();
  timeline.renderTimeline(room);
  renderPending(room);
  renderTyping();
  renderMembers();
  subscribe(room);
  if (!room.loaded) loadLatest(room);
  else {
    timeline.scrollToUnreadOrBottom(room);
    if (room.hasGap) fillGapSoon(room);
  }
  loadMembers(room);
  if (window.matchMedia('(pointer: fine)').matches) $('composer-input').focus({ preventScroll: true });
}

function closeRoomView() {
  document.body.classList.remove('in-room');
  $('room-pane').hidden = true;
  $('room-empty').hidden = false;
  $('members-panel').hidden = true;
  $('members-toggle').setAttribute('aria-expanded', 'false');
}

function renderRoomHeader() {
  const room = currentRoom();
  if (!room || social.renderDirectHeader(room)) return;
  const r = room.room;
  const title = $('room-title');
  title.replaceChildren(ui.icon(r.is_private ? 'lock' : 'hash', 16), document.createTextNode(r.name));
  title.title = r.name;
  const count = `${r.member_count} member${r.member_count === 1 ? '' : 's'}`;
  $('room-meta').textContent = [r.is_private ? 'Private' : 'Public', count, r.description].filter(Boolean).join(' · ');
}

function renderTyping() {
  const room = currentRoom();
  const box = $('typing');
  clearTimeout(state.typingTick);
  if (!room) {
    box.textContent = '';
    return;
  }
  const names = room.typingNames();
  box.textContent = ui.typingText(names);
  box.classList.toggle('active', names.length > 0);
  if (names.length) state.typingTick = setTimeout(renderTyping, 1000);
}

async function loadLatest(room) {
  if (room.loading) return room.loading;
  room.loadError = false;
  room.early = [];
  room.earlyVersions = [];
  const run = (async () => {
    const data = await api.latestMessages(room.id, PAGE_SIZE);
    const msgs = data.messages || [];
    for (const m of msgs) room.insert(m, true);
    room.hasMoreOlder = msgs.length > 0 && msgs[0].seq > 1;
    room.loaded = true;
    // Never subscribed yet (socket down): the page is current up to its highest rev.
    if (room.sinceRev === null) room.sinceRev = msgs.reduce((max, m) => Math.max(max, m.rev || 0), 0);
    for (const m of room.early) if (room.insert(m) < 0) room.update(m);
    for (const m of room.earlyVersions) room.update(m);
    room.early = [];
    room.earlyVersions = [];
  })();
  room.loading = run;
  if (room.id === state.currentId) timeline.renderHistoryStatus(room);
  try {
    await run;
  } catch (e) {
    room.loadError = true;
    if (e.status !== 401) ui.toast(`Could not load messages: ${e.detail}`, 'error');
  } finally {
    room.loading = null;
  }
  // Re-subscribe is not needed: we were subscribed before fetching, so nothing fell between.
  if (room.id === state.currentId) {
    timeline.renderTimeline(room);
    timeline.scrollToUnreadOrBottom(room);
    fillViewport(room);
    scheduleRead();
  }
  if (room.loaded && room.hasGap) fillGapSoon(room);
  if (!room.subscribed) subscribe(room);
}

async function loadOlder(room) {
  if (!room.loaded || room.loadingOlder || !room.hasMoreOlder || room.lowSeq === null) return;
  room.loadingOlder = true;
  room.loadError = false;
  const current = () => room.id === state.currentId;
  if (current()) timeline.renderHistoryStatus(room);
  const scroller = $('scroller');
  try {
    const data = await api.messagesBefore(room.id, room.lowSeq, PAGE_SIZE);
    const msgs = data.messages || [];
    const prevHeight = scroller.scrollHeight;
    const prevTop = scroller.scrollTop;
    for (const m of msgs) {
      const idx = room.insert(m, true);
      if (idx >= 0 && current()) timeline.insertMessageNode(room, m, idx);
      else if (idx < 0 && room.update(m)) timeline.refreshMessage(room, m);
    }
    room.hasMoreOlder = msgs.length > 0 && !!data.has_more && msgs[0].seq > 1;
    room.loadingOlder = false;
    if (current()) {
      timeline.renderHistoryStatus(room);
      // Keep the message the reader was looking at in place.
      scroller.scrollTop = prevTop + (scroller.scrollHeight - prevHeight);
      scheduleReceipts();
    }
  } catch (e) {
    room.loadError = true;
    if (e.status !== 401) ui.toast(`Could not load older messages: ${e.detail}`, 'error');
  } finally {
    room.loadingOlder = false;
    if (current()) timeline.renderHistoryStatus(room);
  }
}

/** Load older pages until the timeline can scroll (so "scroll up for more" works). */
async function fillViewport(room) {
  const scroller = $('scroller');
  for (let i = 0; i < 10 && room.id === state.currentId && room.hasMoreOlder && !room.loadError; i++) {
    if (scroller.scrollHeight > scroller.clientHeight + 40) break;
    await loadOlder(room);
  }
}

/** Fetch the messages between contigTop and what we hold (`after_seq`), then retry if needed. */
function fillGapSoon(room) {
  if (room.filling || !room.loaded) return;
  room.filling = true;
  (async () => {
    try {
      for (let guard = 0; guard < 100 && state.rooms.get(room.id) === room; guard++) {
        const target = Math.max(room.maxSeq, room.lastSeq || 0);
        if (room.contigTop >= target) break;
        const from = room.contigTop;
        const data = await api.messagesAfter(room.id, from, 100);
        for (const m of data.messages || []) handleMessage(m, false);
        if (room.contigTop === from) break; // nothing new: the server has nothing there
        if (!data.has_more && room.contigTop >= room.maxSeq) break;
      }
      room.filling = false;
    } catch (e) {
      room.filling = false;
      if (e.status === 401) return;
      setTimeout(() => fillGapSoon(room), 3000);
    }
  })();
}

// Read markers

function scheduleRead() {
  clearTimeout(state.readTimer);
  state.readTimer = setTimeout(sendRead, 400);
}

function sendRead() {
  const room = currentRoom();
  if (!room || !room.loaded || document.visibilityState !== 'visible' || !isNearBottom()) return;
  const seq = room.contigTop;
  if (seq <= room.lastReadSent || !room.subscribed) return;
  if (state.socket?.send({ type: 'read', room_id: room.id, seq })) room.lastReadSent = seq;
}

// ---------------------------------------------------------------------------------------------
// Changing messages: edit, delete, react. The server answers every change with `message.updated`
// to the room's subscribers, this page included; a PATCH's answer is applied at once too.

const CHANGE_ERRORS = {
  edit_window_expired: 'This message can no longer be edited.',
  message_deleted: 'This message has been deleted.',
  not_message_author: 'Only its author can edit a message.',
  forbidden: 'You may not delete this message.',
  too_many_reactions: 'This message has as many different reactions as it can take.',
};

function changeError(e) {
  return CHANGE_ERRORS[e.code] || e.detail || 'Something went wrong.';
}

/** Save an edit; a failure is thrown (with a readable message) for the editor to show. */
async function editMessage(room, msg, content) {
  if (!content.trim()) throw new Error('A message cannot be empty. To remove it, delete it.');
  if (charCount(content) > composer.MAX_CHARS) throw new Error(`Messages are at most ${composer.MAX_CHARS} characters.`);
  if (content === msg.content) return;
  try {
    applyVersion(await api.editMessage(room.id, msg.id, content));
  } catch (e) {
    throw new Error(changeError(e));
  }
}

/** ↑ in an empty message box: edit my newest message shown. */
function editLastMessage() {
  const room = currentRoom();
  if (!room) return;
  for (let i = room.order.length - 1; i >= 0; i--) {
    const m = room.messages.get(room.order[i]);
    if (m.sender_id === state.me.id && !m.deleted_at) {
      timeline.messageEl(m.seq)?.querySelector('[data-action="edit"]')?.click();
      return;
    }
  }
}

async function deleteMessage(room, msg) {
  const theirs = msg.sender_id !== state.me.id;
  const ok = await ui.confirm({
    title: 'Delete this message?',
    text: theirs ? `It will show as deleted for everyone. It was written by ${msg.sender_username}.` : 'It will show as deleted for everyone.',
    confirmLabel: 'Delete',
  });
  if (!ok) return;
  try {
    await api.deleteMessage(room.id, msg.id);
    // Offline, `message.updated` comes with the resume; the tombstone can be shown now.
    if (!room.subscribed) applyVersion(await api.message(room.id, msg.id));
  } catch (e) {
    if (e.status !== 401) ui.toast(`Could not delete: ${changeError(e)}`, 'error');
  }
}

/** Run a reaction change (`change()`), then redraw the message for my highlight. */
async function react(room, msg, change) {
  try {
    await change();
    timeline.refreshMessage(room, room.messages.get(msg.seq) || msg);
    if (!room.subscribed) applyVersion(await api.message(room.id, msg.id));
  } catch (e) {
    if (e.status !== 401) ui.toast(`Could not react: ${changeError(e)}`, 'error');
  }
}

// Typing (mine)

function noteTyping() {
  const room = currentRoom();
  if (!room || !room.subscribed) return;
  if (!composer.hasText()) {
    stopTyping(true);
    return;
  }
  const now = Date.now();
  if (!state.typingActive || now - state.typingSentAt > TYPING_RESEND_MS) {
    if (state.socket?.send({ type: 'typing', room_id: room.id, state: 'start' })) {
      state.typingActive = true;
      state.typingSentAt = now;
      state.typingRoom = room.id;
    }
  }
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(() => stopTyping(true), TYPING_IDLE_MS);
}

function stopTyping(send) {
  clearTimeout(state.typingTimer);
  if (state.typingActive && send && state.typingRoom) {
    state.socket?.send({ type: 'typing', room_id: state.typingRoom, state: 'stop' });
  }
  state.typingActive = false;
  state.typingRoom = null;
}

let announceTimer = null;
function announce(text) {
  const a = $('announcer');
  a.textContent = text.length > 300 ? `${text.slice(0, 300)}…` : text;
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => (a.textContent = ''), 4000);
}

// ---------------------------------------------------------------------------------------------
// Static bindings

function bindChat() {
  $('logout').addEventListener('click', () => logout());
  $('open-settings').addEventListener('click', () => showPage('settings'));
  $('open-admin').addEventListener('click', () => showPage('admin'));
  $('settings-back').addEventListener('click', () => showPage('chat'));
  $('admin-back').addEventListener('click', () => showPage('chat'));
  $('conn-retry').addEventListener('click', () => state.socket?.reconnectNow());

  // Create a room
  const dialog = $('create-room-dialog');
  $('new-room').addEventListener('click', () => {
    $('create-room-form').reset();
    $('create-room-error').textContent = '';
    dialog.showModal();
    $('new-room-name').focus();
  });
  $('create-room-cancel').addEventListener('click', () => dialog.close());
  $('create-room-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('new-room-name').value.trim();
    const err = $('create-room-error');
    err.textContent = '';
    if (!name || charCount(name) > 100) {
      err.textContent = 'Room names are 1–100 characters.';
      return;
    }
    const btn = $('create-room-submit');
    btn.disabled = true;
    try {
      const r = await api.createRoom({
        name,
        description: $('new-room-description').value.trim(),
        isPrivate: $('new-room-private').checked,
      });
      dialog.close();
      addRoom(r);
      openRoom(r.id);
      if (!r.is_private) loadPublicRooms(true);
    } catch (ex) {
      err.textContent = ex.detail || 'Could not create the room.';
    } finally {
      btn.disabled = false;
    }
  });

  // Room header
  $('room-back').addEventListener('click', () => {
    stopTyping(true);
    composer.clearReply();
    currentRoom()?.markSeen();
    state.currentId = null;
    history.replaceState(null, '', location.pathname);
    closeRoomView();
    renderRoomList();
  });
  const toggleMembers = (open) => {
    $('members-panel').hidden = !open;
    $('members-toggle').setAttribute('aria-expanded', String(open));
    if (open) {
      const room = currentRoom();
      if (room) loadMembers(room);
    }
  };
  $('members-toggle').addEventListener('click', () => toggleMembers($('members-panel').hidden));
  $('members-close').addEventListener('click', () => toggleMembers(false));

  // Timeline
  const scroller = $('scroller');
  scroller.addEventListener(
    'scroll',
    () => {
      const room = currentRoom();
      if (!room) return;
      if (scroller.scrollTop < 150) loadOlder(room);
      if (isNearBottom()) {
        $('jump-latest').hidden = true;
        scheduleRead();
      }
    },
    { passive: true },
  );
  $('jump-latest').addEventListener('click', scrollToBottom);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') scheduleRead();
  });
  window.addEventListener('focus', () => {
    if (state.me && getSession()) refreshRooms();
  });

  window.addEventListener('hashchange', () => {
    const id = roomIdFromHash();
    if (!id || id === state.currentId || !state.me) return;
    if (state.rooms.has(id)) openRoom(id);
    else {
      // A link to a room we were just added to: look again before giving up.
      refreshRooms().then(() => {
        if (state.rooms.has(id) && roomIdFromHash() === id) openRoom(id);
      });
    }
  });
}

boot();
