// roomlist.js — the sidebar: "My rooms" with their unread badges, and the public directory.
// Direct rooms are listed apart, under "Direct messages" (dms.js).

import { isDirect, renderDms } from './dms.js';
import { $, state } from './state.js';
import * as ui from './ui.js';

let actions = null;

/** handlers: onOpen(roomId), onJoin(room) */
export function bindRoomList(handlers) {
  actions = handlers;
}

function sortedRooms() {
  return [...state.rooms.values()].filter((room) => !isDirect(room)).sort((a, b) => a.room.name.localeCompare(b.room.name, undefined, { sensitivity: 'base' }));
}

/** My rooms (and direct messages), each with its unread count unless it is the open one; the total in the title. */
export function renderRoomList() {
  const rooms = sortedRooms();
  const unread = (room) => (room.id === state.currentId ? 0 : room.unread);
  $('my-rooms').replaceChildren(
    ...rooms.map((room) =>
      ui.roomItem(room.room, {
        active: room.id === state.currentId,
        unread: unread(room),
        onOpen: () => actions.onOpen(room.id),
      }),
    ),
  );
  $('my-rooms-empty').hidden = rooms.length > 0;
  renderDms();
  const total = [...state.rooms.values()].reduce((n, room) => n + unread(room), 0);
  document.title = total ? `(${total}) Nebula` : 'Nebula';
}

export function renderPublicRooms() {
  $('public-rooms').replaceChildren(
    ...state.publicRooms.map((r) =>
      ui.publicRoomItem(r, {
        joined: state.rooms.has(r.id),
        busy: state.joining.has(r.id),
        onJoin: () => actions.onJoin(r),
        onOpen: () => actions.onOpen(r.id),
      }),
    ),
  );
  $('public-empty').hidden = state.publicRooms.length > 0 || !!state.publicAbort;
  $('public-more').hidden = state.publicRooms.length >= state.publicTotal;
}
