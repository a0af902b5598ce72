// contacts.js — who I am connected to: contacts, pending contact requests (both ways) and the
// users I blocked; the sidebar's "Contact requests" and "Contacts" lists; the actions that
// change them. The lists are fetched when the socket (re)opens, after my own changes, and when
// the server's `contact.requested` / `contact.accepted` events say someone else changed them.

import { api } from './api.js';
import { $, state } from './state.js';
import * as ui from './ui.js';

const rel = {
  /** @type {Map<string, {user: object, since: string}>} by user id */
  contacts: new Map(),
  incoming: [],
  outgoing: [],
  /** @type {Set<string>} user ids I blocked */
  blocked: new Set(),
};

const listeners = new Set();
let openProfile = () => {};
let generation = 0;

/** handlers: onProfile(user) — show someone's profile card. */
export function bindContacts({ onProfile }) {
  openProfile = onProfile;
}

/** Call `fn` after every change of the lists (the open profile card redraws itself). */
export function onContactsChanged(fn) {
  listeners.add(fn);
}

export function startContacts() {
  stopContacts();
  refresh();
}

export function stopContacts() {
  generation += 1;
  rel.contacts.clear();
  rel.incoming = [];
  rel.outgoing = [];
  rel.blocked.clear();
  render();
}

/** Fetch the three lists again. Answers that arrive after a logout are dropped. */
export async function refresh() {
  const gen = ++generation;
  try {
    const [reqs, contacts, blocks] = await Promise.all([api.contactRequests(), api.contacts(), api.blocks()]);
    if (gen !== generation || !state.me) return;
    rel.incoming = reqs.incoming || [];
    rel.outgoing = reqs.outgoing || [];
    rel.contacts = new Map((contacts.contacts || []).map((c) => [c.user.id, c]));
    rel.blocked = new Set((blocks.users || []).map((u) => u.id));
    render();
  } catch {
    /* the next event or reconnect tries again; a 401 logs out through api.js */
  }
}

/** How I stand with `userId`: 'blocked' | 'contact' | 'incoming' | 'outgoing' | 'none'. */
export function relationOf(userId) {
  if (rel.blocked.has(userId)) return 'blocked';
  if (rel.contacts.has(userId)) return 'contact';
  if (rel.incoming.some((r) => r.from.id === userId)) return 'incoming';
  if (rel.outgoing.some((r) => r.to.id === userId)) return 'outgoing';
  return 'none';
}

export function contactSince(userId) {
  return rel.contacts.get(userId)?.since ?? null;
}

export function isBlocked(userId) {
  return rel.blocked.has(userId);
}

/** Ask `user` to be my contact (becomes a contact at once if they had asked me). */
export async function requestContact(user) {
  const r = await api.requestContact(user.id);
  ui.toast(r?.status === 'accepted' ? `${user.username} is now a contact` : `Contact request sent to ${user.username}`, 'info', 3000);
  await refresh();
}

/** Accept the pending request `user` sent me. */
export async function acceptFrom(user) {
  const req = rel.incoming.find((r) => r.from.id === user.id);
  if (!req) return;
  await api.acceptContact(req.id);
  ui.toast(`${user.username} is now a contact`, 'info', 3000);
  await refresh();
}

export async function declineFrom(user) {
  const req = rel.incoming.find((r) => r.from.id === user.id);
  if (!req) return;
  await api.declineContact(req.id);
  await refresh();
}

export async function removeContact(user) {
  await api.removeContact(user.id);
  ui.toast(`${user.username} is no longer a contact`, 'info', 3000);
  await refresh();
}

export async function block(user) {
  await api.block(user.id);
  ui.toast(`You blocked ${user.username}`, 'info', 3000);
  await refresh();
}

export async function unblock(user) {
  await api.unblock(user.id);
  ui.toast(`You unblocked ${user.username}`, 'info', 3000);
  await refresh();
}

function failed(e) {
  if (e.status !== 401) ui.toast(e.detail || 'Something went wrong.', 'error');
}

/** A person in one of the sidebar lists: their name opens the profile card, then buttons. */
function personItem(user, ...buttons) {
  return ui.el(
    'li',
    { class: 'person', dataset: { userId: user.id } },
    ui.avatar(user.username, 'sm'),
    ui.el('button', {
      class: 'person-name',
      text: user.username,
      attrs: { type: 'button', title: `${user.username}'s profile` },
      on: { click: () => openProfile(user) },
    }),
    ...buttons,
  );
}

function render() {
  $('requests-in').replaceChildren(
    ...rel.incoming.map((r) =>
      personItem(
        r.from,
        ui.el('button', {
          class: 'btn btn-small accept-request',
          text: 'Accept',
          attrs: { type: 'button', 'aria-label': `Accept ${r.from.username}'s request` },
          on: { click: () => acceptFrom(r.from).catch(failed) },
        }),
        ui.el('button', {
          class: 'btn btn-small btn-ghost decline-request',
          text: 'Decline',
          attrs: { type: 'button', 'aria-label': `Decline ${r.from.username}'s request` },
          on: { click: () => declineFrom(r.from).catch(failed) },
        }),
      ),
    ),
  );
  $('requests-out').replaceChildren(
    ...rel.outgoing.map((r) => personItem(r.to, ui.el('span', { class: 'person-note', text: 'Request sent' }))),
  );
  $('requests-section').hidden = rel.incoming.length + rel.outgoing.length === 0;
  const contacts = [...rel.contacts.values()].sort((a, b) => a.user.username.localeCompare(b.user.username));
  $('contact-list').replaceChildren(...contacts.map((c) => personItem(c.user)));
  $('contacts-section').hidden = contacts.length === 0;
  for (const fn of listeners) fn();
}
