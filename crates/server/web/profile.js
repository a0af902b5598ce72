// profile.js — a user's profile card (a modal dialog): who they are, how I stand with them,
// and what I can do: message them, ask them to be a contact (or accept their request, or
// remove them), block or unblock them, report them to the admins. Opened from a sender's name, a search result, a
// contact list entry or the header of a direct room.

import { api } from './api.js';
import * as contacts from './contacts.js';
import { reportUser } from './report.js';
import { $, state } from './state.js';
import * as ui from './ui.js';

const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

/** The user whose card is open. */
let shown = null;
let actions = null;
let busy = false;

/** handlers: onMessage(user) */
export function bindProfile(handlers) {
  actions = handlers;
  const dialog = $('profile-dialog');
  $('profile-close').addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => (shown = null));
  $('profile-message').addEventListener('click', () => {
    const user = shown;
    dialog.close();
    if (user) actions.onMessage(user);
  });
  $('profile-contact').addEventListener('click', () =>
    run((user) => {
      const rel = contacts.relationOf(user.id);
      if (rel === 'contact') return contacts.removeContact(user);
      if (rel === 'incoming') return contacts.acceptFrom(user);
      return contacts.requestContact(user);
    }),
  );
  $('profile-block').addEventListener('click', () =>
    run((user) => (contacts.isBlocked(user.id) ? contacts.unblock(user) : contacts.block(user))),
  );
  $('profile-report').addEventListener('click', () => {
    const user = shown;
    dialog.close();
    if (user) reportUser(user);
  });
  contacts.onContactsChanged(() => {
    if (shown) render();
  });
  // A sender's name in the timeline opens their card.
  $('message-list').addEventListener('click', (e) => {
    const name = e.target.closest('.msg-author');
    const li = name?.closest('li.msg');
    if (li?.dataset.sender) openProfile({ id: li.dataset.sender, username: name.textContent });
  });
}

/** Show `user`'s card (`{id, username}` is enough; the rest is fetched). */
export async function openProfile(user) {
  shown = user;
  $('profile-error').textContent = '';
  render();
  const dialog = $('profile-dialog');
  if (!dialog.open) dialog.showModal();
  try {
    const fresh = await api.user(user.id);
    if (shown?.id === user.id) {
      shown = fresh;
      render();
    }
  } catch (e) {
    if (shown?.id === user.id && e.code === 'user_not_found') $('profile-error').textContent = 'This account no longer exists.';
  }
}

async function run(action) {
  const user = shown;
  if (!user || busy) return;
  busy = true;
  $('profile-error').textContent = '';
  render();
  try {
    await action(user);
  } catch (e) {
    if (shown?.id === user.id) {
      $('profile-error').textContent =
        e.code === 'cannot_message_user' ? 'One of you has blocked the other.' : e.detail || 'Something went wrong.';
    }
  } finally {
    busy = false;
    if (shown) render();
  }
}

function render() {
  const user = shown;
  const me = user.id === state.me?.id;
  const rel = contacts.relationOf(user.id);
  $('profile-avatar').replaceChildren(ui.avatar(user.username));
  $('profile-name').textContent = me ? `${user.username} (you)` : user.username;
  $('profile-meta').textContent = user.created_at ? `Joined ${dateFmt.format(ui.parseDate(user.created_at))}` : '';
  const since = contacts.contactSince(user.id);
  const status = {
    blocked: 'You blocked them: neither of you can message or call the other.',
    contact: since ? `Contact since ${dateFmt.format(ui.parseDate(since))}` : 'Contact',
    incoming: 'They asked to be your contact.',
    outgoing: 'Contact request sent.',
    none: '',
  };
  $('profile-status').textContent = me ? '' : status[rel];
  const dialog = $('profile-dialog');
  dialog.dataset.relation = me ? 'self' : rel;

  const message = $('profile-message');
  message.hidden = me || rel === 'blocked';
  const contact = $('profile-contact');
  contact.hidden = me || rel === 'blocked';
  contact.textContent = { contact: 'Remove contact', incoming: 'Accept request', outgoing: 'Request sent', none: 'Add contact' }[rel] || '';
  contact.disabled = busy || rel === 'outgoing';
  const blockBtn = $('profile-block');
  blockBtn.hidden = me;
  blockBtn.textContent = rel === 'blocked' ? 'Unblock' : 'Block';
  blockBtn.classList.toggle('danger', rel !== 'blocked');
  blockBtn.disabled = busy;
  $('profile-report').hidden = me;
}
