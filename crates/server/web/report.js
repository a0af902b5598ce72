// report.js — reporting a message (from its actions) or a user (from their profile card) to
// the server's admins, with a reason, in the `#report-dialog`.

import { api } from './api.js';
import { snippet } from './message-view.js';
import { $ } from './state.js';
import * as ui from './ui.js';

/** What is being reported: `{send(reason) → promise, title, subject}`. */
let pending = null;

export function bindReports() {
  const dialog = $('report-dialog');
  $('report-cancel').addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => (pending = null));
  $('report-form').addEventListener('submit', submit);
}

/** Report `msg` (a message of someone else) in room `roomId`. */
export function reportMessage(roomId, msg) {
  open({
    title: 'Report this message',
    subject: `${msg.sender_username}: “${snippet(msg.content)}”`,
    send: (reason) => api.reportMessage(roomId, msg.id, reason),
  });
}

/** Report `user` (`{id, username}`). */
export function reportUser(user) {
  open({
    title: `Report ${user.username}`,
    subject: 'Tell the admins what this person did.',
    send: (reason) => api.reportUser(user.id, reason),
  });
}

function open(what) {
  pending = what;
  $('report-title').textContent = what.title;
  $('report-subject').textContent = what.subject;
  $('report-reason').value = '';
  $('report-error').textContent = '';
  $('report-submit').disabled = false;
  const dialog = $('report-dialog');
  if (!dialog.open) dialog.showModal();
  $('report-reason').focus();
}

async function submit(e) {
  e.preventDefault();
  const what = pending;
  if (!what) return;
  const reason = $('report-reason').value.trim();
  const error = $('report-error');
  error.textContent = '';
  if (!reason) {
    error.textContent = 'Say what is wrong (up to 1000 characters).';
    return;
  }
  const button = $('report-submit');
  button.disabled = true;
  try {
    await what.send(reason);
    $('report-dialog').close();
    ui.toast('Reported. The admins will look at it.', 'info', 4000);
  } catch (ex) {
    error.textContent =
      {
        validation_failed: 'Reasons are 1–1000 characters.',
        message_not_found: 'This message no longer exists.',
        user_not_found: 'This account no longer exists.',
        not_a_member: 'You are no longer in this room.',
      }[ex.code] || ex.message || 'Could not send the report.';
  } finally {
    button.disabled = false;
  }
}
