// announce.js — what screen readers hear (the #announcer live region): new messages in the open
// room, connection changes. Cleared after a while so the same text can be said again.

import { $ } from './state.js';

let announceTimer = null;

export function announce(text) {
  const a = $('announcer');
  a.textContent = text.length > 300 ? `${text.slice(0, 300)}…` : text;
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => (a.textContent = ''), 4000);
}
