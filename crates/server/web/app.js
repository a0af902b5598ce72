// app.js — Nebula web client: the entry point. It wires the modules together and starts; each
// module has one job:
//
// session.js (a sign-in: the socket, my rooms, logging out), socket.js (the SDK's WebSocket
// session with the page's connection states), feed.js (the SDK session's room timelines →
// the rooms' state and the open list), history.js (newest and older pages, through the SDK),
// room-view.js (opening and closing a room, its header), events.js (typing, reads, presence,
// members, errors), reads.js (read markers), typing.js (who is typing), changes.js (edit,
// delete, react), connection.js (the connection badge), bindings.js (the screen's fixed
// controls), announce.js (screen reader announcements), api.js (REST through the SDK,
// sdk/index.js), auth.js (login / sign-up), rooms.js (my rooms, joining, leaving, the public
// directory), members.js (members and presence), sending.js (my messages on their way),
// store.js (what the page keeps per room besides the timeline), state.js (what the page
// shares), timeline.js (the open room's list), message-view.js (one message's DOM),
// reactions.js (emoji picker, who reacted), composer.js (the message box, replies),
// roomlist.js (the sidebar), ui.js (DOM building, textContent only), social.js (direct
// messages, people, contacts, blocks, calls), uploads.js (files waiting to be sent),
// attachments.js (a message's files), stories.js (the stories bar), pages.js (chat /
// settings / admin), settings.js (my account), admin.js (server administration), report.js
// (reporting messages and users).

import * as admin from './admin.js';
import { getSession, onUnauthorized } from './api.js';
import { bindViewer } from './attachments.js';
import { bindAuth, showAuth } from './auth.js';
import { bindChat } from './bindings.js';
import * as changes from './changes.js';
import * as composer from './composer.js';
import { loadLatest, loadOlder } from './history.js';
import * as members from './members.js';
import { bindReports, reportMessage } from './report.js';
import { renderRoomHeader, closeRoomView, openRoom } from './room-view.js';
import { bindRoomList } from './roomlist.js';
import * as rooms from './rooms.js';
import { addRoom, dropRoom, joinRoom, refreshRooms } from './rooms.js';
import * as sending from './sending.js';
import { sendCurrent } from './sending.js';
import { enterApp, logout, sessionReplaced } from './session.js';
import * as settings from './settings.js';
import * as social from './social.js';
import { $, state } from './state.js';
import * as stories from './stories.js';
import * as timeline from './timeline.js';
import { noteTyping, renderTyping, stopTyping } from './typing.js';
import * as ui from './ui.js';
import * as uploads from './uploads.js';

function boot() {
  fillIcons();
  bindAuth({ onSignedIn: enterApp });
  rooms.bindRooms({ follow: (room) => state.socket?.follow(room.id), openRoom, closeRoomView, renderRoomHeader });
  sending.bindSending({ stopTyping });
  members.bindMembers({ renderRoomHeader, dropRoom, refreshRooms, renderTyping });
  bindChat();
  bindRoomList({ onOpen: openRoom, onJoin: joinRoom });
  social.bindSocial({ onOpen: openRoom, onAdd: addRoom });
  timeline.bindTimeline({
    onReply: (room, msg) => composer.setReply(msg),
    onEdit: changes.editMessage,
    onDelete: changes.deleteMessage,
    onReact: changes.addReaction,
    onToggleReaction: changes.flipReaction,
    onReport: (room, msg) => reportMessage(room.id, msg),
    loadOlder,
    loadLatest,
  });
  composer.bindComposer({
    onSend: sendCurrent,
    onInput: noteTyping,
    onBlur: () => stopTyping(true),
    onEditLast: changes.editLastMessage,
  });
  uploads.bindUploads({ dropZone: $('room-pane') });
  bindViewer();
  stories.bindStories();
  bindReports();
  settings.bindSettings({ logout, sessionReplaced });
  admin.bindAdmin();
  onUnauthorized(() => {
    if (!state.reauthing) logout('Your session has ended. Please log in again.');
  });
  if (getSession()) enterApp();
  else showAuth();
}

function fillIcons() {
  $('new-room').append(ui.icon('plus', 18));
  $('room-back').append(ui.icon('back', 20));
  $('members-toggle').append(ui.icon('users', 18));
  $('members-close').append(ui.icon('close', 18));
  $('send-btn').append(ui.icon('send', 18));
  $('reply-cancel').append(ui.icon('close', 16));
  $('attach-btn').append(ui.icon('clip', 18));
  $('image-viewer-close').append(ui.icon('close', 18));
  $('story-close').append(ui.icon('close', 18));
  $('jump-latest').prepend(ui.icon('down', 14), ' ');
}

boot();
