// state.js — what the whole page shares: the signed-in user, my rooms and which one is open.
// The modules that render or act on a part of the page read it from here.

export const state = {
  me: null,
  /** @type {Map<string, import('./store.js').RoomState>} my rooms */
  rooms: new Map(),
  currentId: null,
  socket: null,
  publicQuery: '',
  publicPage: 1,
  publicRooms: [],
  publicTotal: 0,
  publicAbort: null,
  joining: new Set(),
  typingActive: false,
  typingSentAt: 0,
  typingTimer: null,
  typingTick: null,
  readTimer: null,
  receiptsTimer: null,
  authMode: 'login',
  loggingOut: false,
  authCheckAt: 0,
};

export const $ = (id) => document.getElementById(id);

/** The open room's state, or null. */
export function currentRoom() {
  return state.currentId ? state.rooms.get(state.currentId) || null : null;
}
