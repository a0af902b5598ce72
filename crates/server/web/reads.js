// reads.js — read markers: mine (sent as `read` with the newest seq the session holds in order,
// once the open room is scrolled to the bottom of a visible page) and others' (`read` events:
// "Seen by …" receipts, timeline.js).

import { currentRoom, state } from './state.js';
import { isNearBottom, scheduleReceipts } from './timeline.js';

export function scheduleRead() {
  clearTimeout(state.readTimer);
  state.readTimer = setTimeout(sendRead, 400);
}

function sendRead() {
  const room = currentRoom();
  if (!room || !room.loaded || document.visibilityState !== 'visible' || !isNearBottom()) return;
  const seq = room.seq ?? 0;
  if (seq <= room.lastReadSent || !state.socket?.subscribed(room.id)) return;
  if (state.socket.send({ type: 'read', room_id: room.id, seq })) room.lastReadSent = seq;
}

/** A `read` event: mine (another tab) moves my position, others' move their receipts. */
export function onRead(ev) {
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
