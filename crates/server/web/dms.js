// dms.js — direct messages: the sidebar's "Direct messages" section (named after the other
// person, most recent message first), opening the conversation with someone, and the header
// of an open direct room.
//
// Direct rooms are rooms (`kind: "direct"`, `peer`) held in `state.rooms` like any other, so
// the timeline, sending, unread counts and read markers work unchanged. `GET /dms` is read
// when the socket (re)opens; in between, the server's `dm.opened` event brings a conversation
// someone else (or I, on another device) just started. The list's order (latest message
// first) is kept, and a live message moves its room to the top.

import { api } from './api.js';
import { isBlocked } from './contacts.js';
import { $, state } from './state.js';
import * as ui from './ui.js';

/** Room ids, most recent message first. Rooms not in it (yet) sort first. */
let order = [];
let actions = null;
let generation = 0;

/** handlers: onOpen(roomId), onAdd(room) → RoomState, onProfile(user) */
export function bindDms(handlers) {
  actions = handlers;
}

export function isDirect(room) {
  return room?.room?.kind === 'direct';
}

export function startDms() {
  stopDms();
  refreshDms();
}

export function stopDms() {
  generation += 1;
  order = [];
  $('dm-list').replaceChildren();
}

/** Fetch my direct rooms: their order, and any that another user opened with me. */
export async function refreshDms() {
  const gen = ++generation;
  let data;
  try {
    data = await api.directRooms();
  } catch {
    return;
  }
  if (gen !== generation || !state.me) return;
  const rooms = data.rooms || [];
  order = rooms.map((r) => r.id);
  for (const r of rooms) if (!state.rooms.has(r.id)) actions.onAdd(r);
  renderDms();
}

/** `dm.opened`: a direct room was just created with me; it comes first. */
export function onDmOpened(room) {
  if (!room?.id || !state.me) return;
  if (!order.includes(room.id)) order = [room.id, ...order];
  if (!state.rooms.has(room.id)) actions.onAdd(room);
  renderDms();
}

/** A live message: its direct room is now the most recent. */
export function noteMessage(msg) {
  const room = msg && state.rooms.get(msg.room_id);
  if (!isDirect(room) || order[0] === room.id) return;
  order = [room.id, ...order.filter((id) => id !== room.id)];
  renderDms();
}

/** Open (creating it on first use) the conversation with `user`. */
export async function openDm(user) {
  if (!user || user.id === state.me?.id) return;
  try {
    const r = await api.openDirect(user.id);
    if (!order.includes(r.id)) order = [r.id, ...order];
    actions.onAdd(r);
    actions.onOpen(r.id);
  } catch (e) {
    if (e.code === 'cannot_message_user') ui.toast(`You cannot message ${user.username}.`, 'error');
    else if (e.status !== 401) ui.toast(`Could not open the conversation: ${e.detail}`, 'error');
  }
}

/** The name a direct room goes by: the other person's. */
export function peerName(room) {
  return room.room.peer?.username || room.room.name;
}

export function renderDms() {
  const rank = (id) => {
    const i = order.indexOf(id);
    return i < 0 ? -1 : i;
  };
  const rooms = [...state.rooms.values()].filter(isDirect).sort((a, b) => rank(a.id) - rank(b.id));
  $('dm-list').replaceChildren(
    ...rooms.map((room) => {
      const active = room.id === state.currentId;
      const unread = active ? 0 : room.unread;
      const name = peerName(room);
      return ui.el(
        'li',
        {},
        ui.el(
          'button',
          {
            class: `room-item dm-item${active ? ' active' : ''}${unread ? ' has-unread' : ''}`,
            attrs: { type: 'button', 'aria-current': active ? 'page' : false },
            dataset: { roomId: room.id, peerId: room.room.peer?.id || '' },
            on: { click: () => actions.onOpen(room.id) },
          },
          ui.avatar(name, 'sm'),
          ui.el('span', { class: 'room-name', text: name }),
          unread
            ? ui.el('span', { class: 'badge', text: unread > 99 ? '99+' : String(unread), attrs: { 'aria-label': `${unread} unread` } })
            : null,
        ),
      );
    }),
  );
  $('dm-empty').hidden = rooms.length > 0;
}

/** The open direct room's header: the other person (their profile on click), no Leave. */
export function renderDirectHeader(room) {
  const peer = room.room.peer;
  const name = peerName(room);
  const title = $('room-title');
  title.replaceChildren(
    ui.avatar(name, 'sm'),
    peer
      ? ui.el('button', {
          class: 'peer-name',
          text: name,
          attrs: { type: 'button', title: `${name}'s profile` },
          on: { click: () => actions.onProfile(peer) },
        })
      : document.createTextNode(name),
  );
  title.title = name;
  $('room-meta').textContent = peer && isBlocked(peer.id) ? 'Direct message · you blocked them' : 'Direct message';
}
