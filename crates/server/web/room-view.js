// room-view.js — switching rooms: opening one (its header, presence, typing, members, pending
// sends and list; the newest page loaded the first time), closing the view, the header.

import * as composer from './composer.js';
import { loadLatest } from './history.js';
import { loadMembers, renderMembers, renderPresence } from './members.js';
import { closePicker } from './reactions.js';
import { renderRoomList } from './roomlist.js';
import { resetLeaveButton } from './rooms.js';
import { renderPending } from './sending.js';
import * as social from './social.js';
import { $, currentRoom, state } from './state.js';
import * as timeline from './timeline.js';
import { renderTyping, stopTyping } from './typing.js';
import * as ui from './ui.js';
import * as uploads from './uploads.js';

export function openRoom(id) {
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
  state.socket?.follow(room.id);
  if (!room.loaded) loadLatest(room);
  else timeline.scrollToUnreadOrBottom(room);
  loadMembers(room);
  if (window.matchMedia('(pointer: fine)').matches) $('composer-input').focus({ preventScroll: true });
}

/** Back to the room list (phone layout) or no room open. */
export function leaveRoomView() {
  stopTyping(true);
  composer.clearReply();
  currentRoom()?.markSeen();
  state.currentId = null;
  history.replaceState(null, '', location.pathname);
  closeRoomView();
  renderRoomList();
}

export function closeRoomView() {
  document.body.classList.remove('in-room');
  $('room-pane').hidden = true;
  $('room-empty').hidden = false;
  $('members-panel').hidden = true;
  $('members-toggle').setAttribute('aria-expanded', 'false');
}

export function renderRoomHeader() {
  const room = currentRoom();
  if (!room || social.renderDirectHeader(room)) return;
  const r = room.room;
  const title = $('room-title');
  title.replaceChildren(ui.icon(r.is_private ? 'lock' : 'hash', 16), document.createTextNode(r.name));
  title.title = r.name;
  const count = `${r.member_count} member${r.member_count === 1 ? '' : 's'}`;
  $('room-meta').textContent = [r.is_private ? 'Private' : 'Public', count, r.description].filter(Boolean).join(' · ');
}

export function roomIdFromHash() {
  const m = /^#room=([0-9a-fA-F-]{36})$/.exec(location.hash);
  return m ? m[1].toLowerCase() : null;
}
