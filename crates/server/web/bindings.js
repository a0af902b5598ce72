// bindings.js — the chat screen's fixed controls: log out, settings and admin pages, the
// connection's "retry now", creating a room, the room header (back, members panel), scrolling
// the list (older pages, read markers), and `#room=<id>` links.

import { api, getSession } from './api.js';
import { loadOlder } from './history.js';
import { loadMembers } from './members.js';
import { showPage } from './pages.js';
import { scheduleRead } from './reads.js';
import { leaveRoomView, openRoom, roomIdFromHash } from './room-view.js';
import { addRoom, loadPublicRooms, refreshRooms } from './rooms.js';
import { logout } from './session.js';
import { $, currentRoom, state } from './state.js';
import { charCount } from './store.js';
import { isNearBottom, scrollToBottom } from './timeline.js';

export function bindChat() {
  $('logout').addEventListener('click', () => logout());
  $('open-settings').addEventListener('click', () => showPage('settings'));
  $('open-admin').addEventListener('click', () => showPage('admin'));
  $('settings-back').addEventListener('click', () => showPage('chat'));
  $('admin-back').addEventListener('click', () => showPage('chat'));
  $('conn-retry').addEventListener('click', () => state.socket?.reconnectNow());
  bindCreateRoom();

  // Room header
  $('room-back').addEventListener('click', leaveRoomView);
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

function bindCreateRoom() {
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
}
