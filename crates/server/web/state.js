// state.js — what the whole page shares: the signed-in user, my rooms and which one is open.
// The modules that render or act on a part of the page read it from here.

export const state = {
  me: null,
  /** My account from `/me` (`email`, `email_verified`, `is_admin`, `totp_enabled`), once known. */
  account: null,
  /** Set while this page itself revokes its token (password change, logout everywhere, delete
   * account): the 401s and the socket's 4001 that follow are expected, not a lost session. */
  reauthing: false,
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
