// people.js — the sidebar's "People" search: usernames starting with what is typed
// (`GET /users?q=`), each with a Message button; clicking a name opens the profile card.

import { api } from './api.js';
import { $, state } from './state.js';
import * as ui from './ui.js';

const DEBOUNCE_MS = 250;

let actions = null;
let timer = null;
let abort = null;

/** handlers: onMessage(user), onProfile(user) */
export function bindPeople(handlers) {
  actions = handlers;
  $('people-search').addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(search, DEBOUNCE_MS);
  });
}

export function resetPeople() {
  clearTimeout(timer);
  abort?.abort();
  abort = null;
  $('people-search').value = '';
  $('people-results').replaceChildren();
  $('people-empty').hidden = true;
}

async function search() {
  const q = $('people-search').value.trim();
  abort?.abort();
  abort = null;
  if (!q) {
    $('people-results').replaceChildren();
    $('people-empty').hidden = true;
    return;
  }
  const ctrl = new AbortController();
  abort = ctrl;
  try {
    const data = await api.searchUsers(q, ctrl.signal);
    if (ctrl.signal.aborted) return;
    const users = (data.users || []).filter((u) => u.id !== state.me?.id);
    render(users);
  } catch (e) {
    if (e.name === 'AbortError') return;
    if (e.status !== 401) ui.toast(`Could not search: ${e.detail}`, 'error');
  } finally {
    if (abort === ctrl) abort = null;
  }
}

function render(users) {
  $('people-results').replaceChildren(
    ...users.map((u) =>
      ui.el(
        'li',
        { class: 'person', dataset: { userId: u.id } },
        ui.avatar(u.username, 'sm'),
        ui.el('button', {
          class: 'person-name',
          text: u.username,
          attrs: { type: 'button', title: `${u.username}'s profile` },
          on: { click: () => actions.onProfile(u) },
        }),
        ui.el('button', {
          class: 'btn btn-small btn-ghost message-btn',
          text: 'Message',
          attrs: { type: 'button', 'aria-label': `Message ${u.username}` },
          on: { click: () => actions.onMessage(u) },
        }),
      ),
    ),
  );
  $('people-empty').hidden = users.length > 0;
}
