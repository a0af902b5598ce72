// feed.js — the SDK session's room timelines on the page. What a room holds (new messages,
// replays after a reconnect, newer versions by `rev`, older pages) is decided by the session
// (sdk/index.js); its events land here: `message` (a new one, once, in seq order), `update` (a
// newer version), `timeline` (the room's list changed), `subscribed`. Each is applied to the
// room's state (store.js) and, for the open room, to the list (timeline.js).

import { announce } from './announce.js';
import { renderPresence } from './members.js';
import { scheduleRead } from './reads.js';
import { renderRoomList } from './roomlist.js';
import { resolvePending } from './sending.js';
import * as social from './social.js';
import { $, state } from './state.js';
import * as timeline from './timeline.js';
import { renderTyping } from './typing.js';

/** roomId → what arrived since the last `timeline` event: {mine, others} (for scrolling). */
const arrivals = new Map();

/** Listen to a (new) session's timelines. */
export function bindFeed(session) {
  session.addEventListener('message', ({ detail }) => onMessage(detail.roomId, detail.message));
  session.addEventListener('update', ({ detail }) => onUpdate(detail.roomId, detail.message));
  session.addEventListener('timeline', ({ detail }) => onTimeline(session, detail.roomId, detail.messages));
  session.addEventListener('subscribed', ({ detail }) => onSubscribed(session, detail.roomId, detail.event));
}

/** The room's state as the session holds it now (after a history page, a REST answer…). */
export function syncRoom(room) {
  const session = state.socket?.session;
  if (!session) return [];
  return room.sync(session.timeline(room.id), session.roomState(room.id));
}

/**
 * A message obtained over REST (my post while the socket was down, an edit's answer, one
 * fetched after a delete): into the session's timeline, which orders and versions it like any
 * other; a reply target outside the window is updated here.
 */
export function applyFromRest(room, msg) {
  if (!msg) return;
  state.socket?.session.apply(msg);
  if (room.applyVersion(msg)) timeline.refreshMessage(room, msg);
}

function onMessage(roomId, msg) {
  const room = state.rooms.get(roomId);
  if (!room) return;
  social.noteMessage(msg);
  const mine = msg.sender_id === state.me.id;
  if (mine && msg.client_msg_id && room.pending.has(msg.client_msg_id)) resolvePending(room, msg.client_msg_id);
  if (!mine && room.typing.delete(msg.sender_id) && room.id === state.currentId) renderTyping();
  const current = room.id === state.currentId;
  if (!mine && !current && room.countUnread(msg)) renderRoomList();
  if (!current) return;
  const seen = arrivals.get(roomId) ?? { mine: false, others: false };
  if (mine) seen.mine = true;
  else {
    seen.others = true;
    announce(`${msg.sender_username}: ${msg.content}`);
  }
  arrivals.set(roomId, seen);
}

function onUpdate(roomId, msg) {
  const room = state.rooms.get(roomId);
  if (room?.applyVersion(msg)) timeline.refreshMessage(room, msg);
}

function onTimeline(session, roomId, messages) {
  const room = state.rooms.get(roomId);
  const seen = arrivals.get(roomId);
  arrivals.delete(roomId);
  if (!room) return;
  const current = room.id === state.currentId;
  // Until the newest page is in (history.js draws the whole list then), only the state.
  if (!current || !room.loaded) {
    room.sync(messages, session.roomState(roomId));
    return;
  }
  const wasNearBottom = timeline.isNearBottom();
  room.sync(messages, session.roomState(roomId));
  timeline.syncList(room);
  if (seen?.mine || (seen && wasNearBottom)) timeline.scrollToBottom();
  else if (seen?.others) $('jump-latest').hidden = false;
  scheduleRead();
  timeline.scheduleReceipts();
}

function onSubscribed(session, roomId, ev) {
  const room = state.rooms.get(roomId);
  if (!room) return;
  room.online = new Map((ev.online || []).map((u) => [u.id, u]));
  room.sync(session.timeline(roomId), session.roomState(roomId));
  if (room.id === state.currentId) {
    renderPresence();
    scheduleRead();
  }
}
