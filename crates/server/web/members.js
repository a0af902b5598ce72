// members.js — who is in the open room and who of them is online: the members panel (roles,
// presence dots, adding someone by username), the "online now" strip of the header, and the
// server events that change them (member.joined / left / updated, presence).

import { api } from './api.js';
import * as social from './social.js';
import { $, currentRoom, state } from './state.js';
import * as timeline from './timeline.js';
import { scheduleReceipts } from './timeline.js';
import * as ui from './ui.js';

/** What the rest of the app does for us: renderRoomHeader(), dropRoom(id), refreshRooms(),
 * renderTyping(). */
let hooks = null;

export function bindMembers(h) {
  hooks = h;
  $('add-member-form').addEventListener('submit', addMember);
}

export function onPresence(ev) {
  const room = state.rooms.get(ev.room_id);
  if (!room || !ev.user) return;
  if (ev.status === 'online') room.online.set(ev.user.id, ev.user);
  else {
    room.online.delete(ev.user.id);
    room.typing.delete(ev.user.id);
  }
  if (room.id === state.currentId) {
    renderPresence();
    hooks.renderTyping();
    renderMembers();
  }
}

export function onMemberJoined(ev) {
  const room = state.rooms.get(ev.room_id);
  if (!room) {
    if (ev.user?.id === state.me.id) hooks.refreshRooms();
    return;
  }
  if (room.members && ev.user && !room.members.has(ev.user.id)) {
    room.members.set(ev.user.id, { user_id: ev.user.id, username: ev.user.username, role: 'member' });
    room.room.member_count = room.members.size;
  } else if (!room.members) {
    room.room.member_count += 1;
  }
  if (room.id === state.currentId) {
    hooks.renderRoomHeader();
    renderMembers();
    ui.toast(`${ev.user.username} joined`, 'info', 3000);
  }
}

export function onMemberLeft(ev) {
  const room = state.rooms.get(ev.room_id);
  if (!room || !ev.user) return;
  if (ev.user.id === state.me.id) {
    hooks.dropRoom(room.id);
    return;
  }
  if (room.members?.delete(ev.user.id)) room.room.member_count = room.members.size;
  else if (!room.members) room.room.member_count = Math.max(0, room.room.member_count - 1);
  room.online.delete(ev.user.id);
  room.typing.delete(ev.user.id);
  room.reads.delete(ev.user.id);
  if (room.id === state.currentId) {
    hooks.renderRoomHeader();
    renderPresence();
    renderMembers();
    hooks.renderTyping();
    scheduleReceipts();
  }
}

export function onMemberUpdated(ev) {
  const room = state.rooms.get(ev.room_id);
  const m = ev.member;
  if (!room?.members || !m) return;
  room.members.set(m.user_id, m);
  if (room.id !== state.currentId) return;
  renderMembers();
  // My role decides whose messages I may delete.
  if (m.user_id === state.me.id) timeline.refreshAll(room);
}

export async function loadMembers(room) {
  try {
    const data = await api.members(room.id);
    room.members = new Map((data.members || []).map((m) => [m.user_id, m]));
    room.room.member_count = room.members.size;
    if (room.id === state.currentId) {
      renderMembers();
      hooks.renderRoomHeader();
      scheduleReceipts();
      // Owners and admins may delete anyone's messages: now we know who is one.
      timeline.refreshAll(room);
    }
  } catch {
    /* the panel shows what it has */
  }
}

export function renderMembers() {
  const room = currentRoom();
  if (!room) return;
  const list = $('member-list');
  const members = room.members ? [...room.members.values()] : [];
  const rank = { owner: 0, admin: 1, member: 2 };
  members.sort((a, b) => (rank[a.role] ?? 3) - (rank[b.role] ?? 3) || a.username.localeCompare(b.username));
  list.replaceChildren(
    ...members.map((m) => {
      const online = m.user_id === state.me.id ? !!state.socket?.isOpen : room.online.has(m.user_id);
      return ui.el(
        'li',
        { class: `member${online ? ' is-online' : ''}` },
        ui.avatar(m.username, 'sm'),
        ui.el('span', { class: 'member-name', text: m.user_id === state.me.id ? `${m.username} (you)` : m.username }),
        m.role !== 'member' ? ui.el('span', { class: 'role', text: m.role }) : null,
        ui.el('span', { class: 'presence-dot', attrs: { title: online ? 'online' : 'offline', 'aria-label': online ? 'online' : 'offline' } }),
      );
    }),
  );
  const mine = room.members?.get(state.me.id);
  $('add-member-form').hidden = social.isDirect(room) || !(mine && (mine.role === 'owner' || mine.role === 'admin'));
}

export async function addMember(e) {
  e.preventDefault();
  const room = currentRoom();
  if (!room) return;
  const input = $('add-member-username');
  const err = $('add-member-error');
  const username = input.value.trim();
  err.textContent = '';
  if (!username) {
    err.textContent = 'Enter a username.';
    return;
  }
  try {
    const m = await api.addMember(room.id, username);
    input.value = '';
    ui.toast(`${m?.username || username} is now a member`, 'info', 3000);
    loadMembers(room);
  } catch (ex) {
    if (ex.status === 404 && ex.code !== 'room_not_found') err.textContent = `No user called “${username}”.`;
    else err.textContent = ex.detail || 'Could not add them.';
  }
}

export function renderPresence() {
  const room = currentRoom();
  if (!room) return;
  const others = [...room.online.values()]
    .filter((u) => u.id !== state.me.id)
    .sort((a, b) => a.username.localeCompare(b.username));
  $('online-count').textContent = others.length ? `${others.length} online` : 'Only you here';
  $('online-list').replaceChildren(
    ...others.slice(0, 5).map((u) =>
      ui.el('li', { class: 'online-user', dataset: { userId: u.id }, attrs: { title: `${u.username} is online` } }, ui.avatar(u.username, 'sm'), ui.el('span', { class: 'online-name', text: u.username })),
    ),
  );
}
