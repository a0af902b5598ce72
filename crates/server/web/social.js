// social.js — plugs the people features into the app: direct messages (dms.js), the people
// search (people.js), profile cards (profile.js), contacts and blocks (contacts.js) and calls
// (calls.js). app.js calls the few functions here and knows nothing else about them.

import * as calls from './calls.js';
import * as contacts from './contacts.js';
import * as dms from './dms.js';
import * as people from './people.js';
import * as profile from './profile.js';
import { currentRoom } from './state.js';
import * as ui from './ui.js';

/** handlers: onOpen(roomId), onAdd(room) → RoomState (add a room I am in to my rooms) */
export function bindSocial({ onOpen, onAdd }) {
  const onMessage = (user) => dms.openDm(user);
  const onProfile = (user) => profile.openProfile(user);
  dms.bindDms({ onOpen, onAdd, onProfile });
  people.bindPeople({ onMessage, onProfile });
  profile.bindProfile({ onMessage });
  contacts.bindContacts({ onProfile });
  calls.bindCalls({
    currentPeer: () => {
      const room = currentRoom();
      return dms.isDirect(room) ? room.room.peer || null : null;
    },
  });
  // A block changes what the open direct room's header says.
  contacts.onContactsChanged(() => {
    const room = currentRoom();
    if (dms.isDirect(room)) dms.renderDirectHeader(room);
  });
}

/** Signed in: fetch direct rooms and contacts, and keep them fresh. */
export function startSocial() {
  dms.startDms();
  contacts.startContacts();
}

/** Logging out. */
export function stopSocial() {
  calls.endCalls();
  dms.stopDms();
  contacts.stopContacts();
  people.resetPeople();
  const dialog = document.getElementById('profile-dialog');
  if (dialog.open) dialog.close();
}

/** A server event; true when it was one of ours (and is fully handled). */
export function handleSocialEvent(ev) {
  if (ev.type.startsWith('call.')) {
    calls.handleCallEvent(ev);
    return true;
  }
  switch (ev.type) {
    case 'error':
      return calls.handleCallError(ev);
    case 'dm.opened':
      dms.onDmOpened(ev.room);
      return true;
    case 'contact.requested':
      if (ev.request?.from?.username) ui.toast(`${ev.request.from.username} asked to be your contact`);
      contacts.refresh();
      return true;
    case 'contact.accepted':
      if (ev.contact?.user?.username) ui.toast(`${ev.contact.user.username} is now one of your contacts`);
      contacts.refresh();
      return true;
    default:
      return false;
  }
}

export function socketClosed() {
  calls.socketClosed();
}

export function socketOpened() {
  dms.refreshDms();
  contacts.refresh();
}

/** A new message (feed.js): its direct room is now the most recent. */
export const noteMessage = dms.noteMessage;

/** Redraw the sidebar's direct messages (after my rooms or their unread counts changed). */
export const renderDms = dms.renderDms;

export const isDirect = dms.isDirect;

/**
 * The open room's header when it is a direct room (the other person, the call button, no
 * Leave): true when it was one.
 */
export function renderDirectHeader(room) {
  const direct = dms.isDirect(room);
  calls.renderCallButton(direct ? room.room.peer || null : null);
  document.getElementById('leave-room').hidden = direct;
  if (direct) dms.renderDirectHeader(room);
  return direct;
}
