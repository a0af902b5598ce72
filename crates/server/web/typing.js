// typing.js — "… is typing": mine (a `start` repeated while I type, a `stop` when I pause, send
// or leave the room) and others' (shown under the list until they stop, send, or go quiet).

import * as composer from './composer.js';
import { $, currentRoom, state } from './state.js';
import * as ui from './ui.js';

const TYPING_RESEND_MS = 3_000; // while typing, repeat `start` this often
const TYPING_IDLE_MS = 4_000; // send `stop` after this long without a keystroke
const TYPING_SHOW_MS = 8_000; // forget someone's `start` after this long without news

/** A keystroke in the message box. */
export function noteTyping() {
  const room = currentRoom();
  if (!room || !state.socket?.subscribed(room.id)) return;
  if (!composer.hasText()) {
    stopTyping(true);
    return;
  }
  const now = Date.now();
  if (!state.typingActive || now - state.typingSentAt > TYPING_RESEND_MS) {
    if (state.socket.send({ type: 'typing', room_id: room.id, state: 'start' })) {
      state.typingActive = true;
      state.typingSentAt = now;
      state.typingRoom = room.id;
    }
  }
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(() => stopTyping(true), TYPING_IDLE_MS);
}

/** I stopped typing (`send`: tell the others; false when the socket is gone anyway). */
export function stopTyping(send) {
  clearTimeout(state.typingTimer);
  if (state.typingActive && send && state.typingRoom) {
    state.socket?.send({ type: 'typing', room_id: state.typingRoom, state: 'stop' });
  }
  state.typingActive = false;
  state.typingRoom = null;
}

/** A `typing` event of someone else. */
export function onTyping(ev) {
  const room = state.rooms.get(ev.room_id);
  if (!room || ev.user_id === state.me.id) return;
  if (ev.state === 'start') room.typing.set(ev.user_id, { username: ev.username, until: Date.now() + TYPING_SHOW_MS });
  else room.typing.delete(ev.user_id);
  if (room.id === state.currentId) renderTyping();
}

export function renderTyping() {
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
