// events.js — the server's events other than messages (those are the SDK session's, feed.js):
// typing, read markers, presence, members, calls and other social events, and errors — a
// refused send fails that message, a refused subscription drops the room.

import * as members from './members.js';
import { onRead } from './reads.js';
import { addRoom, dropRoom } from './rooms.js';
import { failPending } from './sending.js';
import * as social from './social.js';
import { state } from './state.js';
import { onTyping } from './typing.js';
import * as ui from './ui.js';

export function handleEvent(ev) {
  if (social.handleSocialEvent(ev)) return undefined;
  switch (ev.type) {
    case 'typing':
      return onTyping(ev);
    case 'read':
      return onRead(ev);
    case 'presence':
      return members.onPresence(ev);
    case 'member.joined':
      return members.onMemberJoined(ev);
    case 'member.left':
      return members.onMemberLeft(ev);
    case 'member.updated':
      return members.onMemberUpdated(ev);
    case 'room.added':
      return onRoomAdded(ev);
    case 'error':
      return onServerError(ev);
    default:
      return undefined;
  }
}

/** Someone added me to a room (perhaps a private one I could not see): it joins my rooms. */
function onRoomAdded(ev) {
  const room = ev.room;
  if (!room?.id || state.rooms.has(room.id)) return;
  addRoom(room);
  ui.toast(`You were added to #${room.name}`);
}

function onServerError(ev) {
  const ref = ev.ref;
  if (ref) {
    for (const room of state.rooms.values()) {
      const p = room.pending.get(ref);
      if (p) {
        const why = ev.code === 'rate_limited' ? 'you are sending too fast' : ev.message || ev.code;
        failPending(room, p, why);
        return;
      }
    }
    if (state.rooms.has(ref) && (ev.code === 'room_not_found' || ev.code === 'not_a_member')) {
      // We are not (or no longer) in it.
      dropRoom(ref);
      return;
    }
  }
  if (ev.code === 'rate_limited') ui.toast('Slow down a little — rate limit reached.', 'warn');
  else ui.toast(ev.message || ev.code || 'Server error', 'error');
}
