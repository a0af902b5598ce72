// changes.js — changing messages: edit (and ↑ to edit my last one), delete, react. The server
// answers every change with `message.updated` to the room's subscribers, this page included (the
// session applies it by `rev`); an answer over REST goes into the session too, so the change
// shows at once, and while the socket is down.

import { api } from './api.js';
import * as composer from './composer.js';
import { applyFromRest } from './feed.js';
import { setReaction, toggleReaction } from './reactions.js';
import { currentRoom, state } from './state.js';
import { charCount } from './store.js';
import * as timeline from './timeline.js';
import * as ui from './ui.js';

const CHANGE_ERRORS = {
  edit_window_expired: 'This message can no longer be edited.',
  message_deleted: 'This message has been deleted.',
  not_message_author: 'Only its author can edit a message.',
  forbidden: 'You may not delete this message.',
  too_many_reactions: 'This message has as many different reactions as it can take.',
};

function changeError(e) {
  return CHANGE_ERRORS[e.code] || e.detail || 'Something went wrong.';
}

/** Offline, `message.updated` comes with the resume; the new version can be shown now. */
async function showNowIfOffline(room, msg) {
  if (!state.socket?.subscribed(room.id)) applyFromRest(room, await api.message(room.id, msg.id));
}

/** Save an edit; a failure is thrown (with a readable message) for the editor to show. */
export async function editMessage(room, msg, content) {
  if (!content.trim()) throw new Error('A message cannot be empty. To remove it, delete it.');
  if (charCount(content) > composer.MAX_CHARS) throw new Error(`Messages are at most ${composer.MAX_CHARS} characters.`);
  if (content === msg.content) return;
  try {
    applyFromRest(room, await api.editMessage(room.id, msg.id, content));
  } catch (e) {
    throw new Error(changeError(e));
  }
}

/** ↑ in an empty message box: edit my newest message shown. */
export function editLastMessage() {
  const room = currentRoom();
  if (!room) return;
  for (let i = room.order.length - 1; i >= 0; i--) {
    const m = room.messages.get(room.order[i]);
    if (m.sender_id === state.me.id && !m.deleted_at) {
      timeline.messageEl(m.seq)?.querySelector('[data-action="edit"]')?.click();
      return;
    }
  }
}

export async function deleteMessage(room, msg) {
  const theirs = msg.sender_id !== state.me.id;
  const ok = await ui.confirm({
    title: 'Delete this message?',
    text: theirs ? `It will show as deleted for everyone. It was written by ${msg.sender_username}.` : 'It will show as deleted for everyone.',
    confirmLabel: 'Delete',
  });
  if (!ok) return;
  try {
    await api.deleteMessage(room.id, msg.id);
    await showNowIfOffline(room, msg);
  } catch (e) {
    if (e.status !== 401) ui.toast(`Could not delete: ${changeError(e)}`, 'error');
  }
}

/** Run a reaction change (`change()`), then redraw the message for my highlight. */
async function react(room, msg, change) {
  try {
    await change();
    timeline.refreshMessage(room, room.messages.get(msg.seq) || msg);
    await showNowIfOffline(room, msg);
  } catch (e) {
    if (e.status !== 401) ui.toast(`Could not react: ${changeError(e)}`, 'error');
  }
}

export const addReaction = (room, msg, emoji) => react(room, msg, () => setReaction(msg, emoji, true));
export const flipReaction = (room, msg, emoji) => react(room, msg, () => toggleReaction(msg, emoji));
