// session.js — a sign-in's lifetime: entering the chat (the socket, the SDK session behind it,
// my rooms, the side panels), a new token after my password change, and logging out.

import * as admin from './admin.js';
import { api, clearSession, getSession } from './api.js';
import { showAuth } from './auth.js';
import * as composer from './composer.js';
import { renderConnState } from './connection.js';
import { handleEvent } from './events.js';
import { bindFeed } from './feed.js';
import { showPage } from './pages.js';
import { forgetReactions } from './reactions.js';
import { closeRoomView, openRoom, roomIdFromHash } from './room-view.js';
import { loadPublicRooms, refreshRooms } from './rooms.js';
import { failPending } from './sending.js';
import * as settings from './settings.js';
import * as social from './social.js';
import { ChatSocket } from './socket.js';
import { $, state } from './state.js';
import * as stories from './stories.js';
import { renderTyping, stopTyping } from './typing.js';
import * as ui from './ui.js';
import * as uploads from './uploads.js';

export function enterApp() {
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
      return undefined;
    },
  });
  bindFeed(state.socket.session);
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
  return undefined;
}

/** This page holds a new token (after its password change): reconnect the socket with it. */
export function sessionReplaced() {
  const s = getSession();
  if (!s || !state.socket) return;
  state.me = { ...state.me, ...s.user };
  if (state.socket.stopped) state.socket.start();
  else state.socket.reconnectNow();
}

export function logout(message = '') {
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

/** The socket (re)opened; the session resubscribes the rooms itself (with their positions). */
function handleSocketOpen() {
  // Membership may have changed while we were away.
  refreshRooms();
  social.socketOpened();
}

function handleSocketClose() {
  for (const room of state.rooms.values()) {
    room.typing.clear();
    for (const p of room.pending.values()) {
      if (p.status === 'sending' && p.via === 'ws') failPending(room, p, 'connection lost');
    }
  }
  stopTyping(false);
  renderTyping();
  social.socketClosed();
}
