// reactions.js — emoji reactions: the picker, and what the counts on a message do not say.
//
// A message carries `reactions: [{emoji, count}]` and `message.updated` keeps those counts
// live, but not who reacted, so not which chips are mine. That comes from
// `GET …/reactions`: fetched once for each shown message that has reactions, again when the
// pointer or focus reaches a chip whose names are older than the message (for the tooltip), and
// kept up to date by my own toggles here. (A reaction I make from another tab shows as mine
// here after that refetch or a reload.)

import { api } from './api.js';
import { el } from './ui.js';
import { state } from './state.js';

/** The picker's choice: a handful of the most used ones. */
export const QUICK_EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '👀'];

const MAX_PARALLEL_FETCHES = 3;

/**
 * message id → {rev, mine: Set<emoji>, names: Map<emoji, usernames> | null, toggles}: what
 * `GET …/reactions` said when the message was at `rev`, amended by my `toggles` since.
 */
const known = new Map();
const queue = [];
let fetching = 0;

/** The emoji I reacted with on `msg`, as far as known (only those it still carries). */
export function myReactions(msg) {
  const k = known.get(msg.id);
  if (!k) return new Set();
  const present = new Set((msg.reactions || []).map((r) => r.emoji));
  return new Set([...k.mine].filter((e) => present.has(e)));
}

/** Who reacted with each emoji, when fetched. */
export function reactors(msg) {
  return known.get(msg.id)?.names || null;
}

/**
 * Make sure who reacted to `msg` is known: fetch it when never fetched (`onlyIfUnknown`) or
 * older than `msg`. `onLoaded(msg)` is called when it arrives.
 */
export function loadReactors(msg, onLoaded, { onlyIfUnknown = false } = {}) {
  if (!msg.reactions?.length || msg.deleted_at) return;
  const k = known.get(msg.id);
  if (k && (onlyIfUnknown || k.rev >= msg.rev)) return;
  if (queue.some((q) => q.msg.id === msg.id)) return;
  queue.push({ msg, onLoaded });
  pump();
}

function pump() {
  while (fetching < MAX_PARALLEL_FETCHES && queue.length) {
    const { msg, onLoaded } = queue.shift();
    const togglesBefore = known.get(msg.id)?.toggles ?? 0;
    fetching += 1;
    api
      .reactions(msg.room_id, msg.id)
      .then((data) => {
        const mine = new Set();
        const names = new Map();
        for (const r of data.reactions || []) {
          const users = r.users || [];
          names.set(r.emoji, users.map((u) => u.username));
          if (users.some((u) => u.id === state.me?.id)) mine.add(r.emoji);
        }
        // A toggle of mine made while this was in flight wins over what the answer says.
        if ((known.get(msg.id)?.toggles ?? 0) !== togglesBefore) return;
        known.set(msg.id, { rev: msg.rev, mine, names, toggles: togglesBefore });
        onLoaded(msg);
      })
      .catch(() => {
        /* tooltips and highlights stay as they were */
      })
      .finally(() => {
        fetching -= 1;
        pump();
      });
  }
}

/** Add or remove my `emoji` on `msg`; resolves when the server has it. */
export async function toggleReaction(msg, emoji) {
  const mine = myReactions(msg).has(emoji);
  await setReaction(msg, emoji, !mine);
}

/** React with `emoji` on `msg` (or remove it, `on` false). Counts arrive as `message.updated`. */
export async function setReaction(msg, emoji, on) {
  if (on) await api.react(msg.room_id, msg.id, emoji);
  else await api.unreact(msg.room_id, msg.id, emoji);
  // The names are older than the version this change makes, so the next hover refetches them.
  const k = known.get(msg.id) || { rev: 0, mine: new Set(), names: null, toggles: 0 };
  if (on) k.mine.add(emoji);
  else k.mine.delete(emoji);
  k.toggles += 1;
  known.set(msg.id, k);
}

/** Forget everything (logout). */
export function forgetReactions() {
  known.clear();
  queue.length = 0;
}

let openPicker = null;

/** Show the emoji picker next to `anchor`; `onPick(emoji)` on a choice. */
export function showPicker(anchor, onPick) {
  closePicker();
  const picker = el(
    'div',
    { class: 'emoji-picker', attrs: { role: 'menu', 'aria-label': 'Add a reaction' } },
    ...QUICK_EMOJI.map((emoji) =>
      el('button', {
        class: 'emoji-choice',
        text: emoji,
        attrs: { type: 'button', role: 'menuitem', 'aria-label': `React with ${emoji}` },
        on: {
          click: () => {
            closePicker();
            onPick(emoji);
          },
        },
      }),
    ),
  );
  document.body.append(picker);
  const a = anchor.getBoundingClientRect();
  const p = picker.getBoundingClientRect();
  const left = Math.max(8, Math.min(a.right - p.width, window.innerWidth - p.width - 8));
  const top = a.top - p.height - 6 > 8 ? a.top - p.height - 6 : a.bottom + 6;
  picker.style.left = `${left}px`;
  picker.style.top = `${top}px`;
  const onKey = (e) => {
    if (e.key === 'Escape') {
      closePicker();
      anchor.focus();
    }
  };
  const onOutside = (e) => {
    if (!picker.contains(e.target)) closePicker();
  };
  document.addEventListener('keydown', onKey);
  document.addEventListener('pointerdown', onOutside);
  openPicker = {
    picker,
    close: () => {
      document.removeEventListener('keydown', onKey);
      document.removeEventListener('pointerdown', onOutside);
      picker.remove();
    },
  };
  picker.querySelector('button').focus();
}

export function closePicker() {
  openPicker?.close();
  openPicker = null;
}
