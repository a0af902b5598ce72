// rooms.js — my rooms and the public directory: the list of rooms I am in (kept in step with
// the server: joined elsewhere, removed, deleted), joining, leaving (with a second click to
// confirm), and searching and paging public rooms.

import { api } from './api.js';
import { renderPublicRooms, renderRoomList } from './roomlist.js';
import { $, currentRoom, state } from './state.js';
import { RoomState } from './store.js';
import * as ui from './ui.js';

/** What the rest of the app does for us: follow(room) (subscribe through the SDK session),
 * openRoom(id), closeRoomView(), renderRoomHeader(). */
let hooks = null;
let publicSearchTimer = null;

export function bindRooms(h) {
  hooks = h;
  $('public-search').addEventListener('input', (e) => {
    clearTimeout(publicSearchTimer);
    publicSearchTimer = setTimeout(() => {
      state.publicQuery = e.target.value.trim();
      loadPublicRooms(true);
    }, 250);
  });
  $('public-more').addEventListener('click', () => {
    state.publicPage += 1;
    loadPublicRooms(false);
  });
  $('leave-room').addEventListener('click', leaveCurrentRoom);
}

export async function refreshRooms() {
  let data;
  try {
    data = await api.myRooms();
  } catch (e) {
    if (e.status !== 401) ui.toast(`Could not load your rooms: ${e.detail}`, 'error');
    return;
  }
  if (!state.me) return;
  const seen = new Set();
  for (const r of data.rooms || []) {
    seen.add(r.id);
    const existing = state.rooms.get(r.id);
    if (existing) existing.applyListing(r);
    else {
      const room = new RoomState(r);
      state.rooms.set(r.id, room);
      hooks.follow(room);
    }
  }
  for (const id of [...state.rooms.keys()]) if (!seen.has(id)) dropRoom(id, false);
  renderRoomList();
  renderPublicRooms();
  if (state.currentId && state.rooms.has(state.currentId)) hooks.renderRoomHeader();
}

export function addRoom(r) {
  let room = state.rooms.get(r.id);
  if (!room) {
    room = new RoomState(r);
    state.rooms.set(r.id, room);
  } else room.applyListing(r);
  hooks.follow(room);
  renderRoomList();
  renderPublicRooms();
  return room;
}

export function dropRoom(id, rerender = true) {
  const room = state.rooms.get(id);
  if (!room) return;
  for (const p of room.pending.values()) clearTimeout(p.timer);
  state.socket?.unfollow(id);
  state.rooms.delete(id);
  if (state.currentId === id) {
    state.currentId = null;
    hooks.closeRoomView();
    if (location.hash) history.replaceState(null, '', location.pathname);
  }
  if (rerender) {
    renderRoomList();
    renderPublicRooms();
  }
}

// Public rooms directory


export async function loadPublicRooms(reset) {
  if (reset) {
    state.publicPage = 1;
    state.publicRooms = [];
  }
  state.publicAbort?.abort();
  const ctrl = new AbortController();
  state.publicAbort = ctrl;
  $('public-rooms').setAttribute('aria-busy', 'true');
  try {
    const data = await api.publicRooms(state.publicQuery, state.publicPage, 30, ctrl.signal);
    if (ctrl.signal.aborted) return;
    const have = new Set(state.publicRooms.map((r) => r.id));
    state.publicRooms.push(...(data.rooms || []).filter((r) => !have.has(r.id)));
    state.publicTotal = Number(data.total) || state.publicRooms.length;
    renderPublicRooms();
  } catch (e) {
    if (e.name === 'AbortError') return;
    if (e.status !== 401) ui.toast(`Could not load public rooms: ${e.detail}`, 'error');
  } finally {
    if (state.publicAbort === ctrl) {
      state.publicAbort = null;
      $('public-rooms').setAttribute('aria-busy', 'false');
    }
  }
}

export async function joinRoom(r) {
  if (state.joining.has(r.id)) return;
  state.joining.add(r.id);
  renderPublicRooms();
  try {
    await api.join(r.id);
    let fresh = r;
    try {
      fresh = await api.room(r.id);
    } catch {
      /* the listing's copy will do */
    }
    addRoom(fresh);
    hooks.openRoom(fresh.id);
  } catch (e) {
    if (e.status !== 401) ui.toast(`Could not join: ${e.detail}`, 'error');
  } finally {
    state.joining.delete(r.id);
    renderPublicRooms();
  }
}

export async function leaveCurrentRoom() {
  const room = currentRoom();
  if (!room) return;
  const btn = $('leave-room');
  if (btn.dataset.confirm !== 'yes') {
    btn.dataset.confirm = 'yes';
    btn.textContent = 'Leave?';
    btn.classList.add('danger');
    clearTimeout(state.leaveTimer);
    state.leaveTimer = setTimeout(resetLeaveButton, 4000);
    return;
  }
  resetLeaveButton();
  try {
    await api.leave(room.id);
    ui.toast(`You left ${room.room.name}`, 'info', 3000);
    dropRoom(room.id);
    loadPublicRooms(true);
  } catch (e) {
    if (e.status !== 401) ui.toast(`Could not leave: ${e.detail}`, 'error');
  }
}

export function resetLeaveButton() {
  clearTimeout(state.leaveTimer);
  const btn = $('leave-room');
  btn.dataset.confirm = '';
  btn.textContent = 'Leave';
  btn.classList.remove('danger');
}
