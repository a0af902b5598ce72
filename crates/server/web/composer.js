// composer.js — the message box: its size and character count, Enter to send, and the message
// being replied to ("Replying to …", with a cancel button). Sending and typing notices are the
// caller's (app.js), through the hooks given to `bindComposer`.

import { snippet } from './message-view.js';
import { $ } from './state.js';
import { charCount } from './store.js';
import * as ui from './ui.js';

/** The longest message in characters: the server's `limits.message_max_chars` from `GET /`
 * once known (a live binding: importers see the update). */
export let MAX_CHARS = 4000;

/** Take the server's limit; the box's `maxlength` (UTF-16 units) leaves room for astral characters. */
export function setMaxChars(n) {
  if (!(n > 0)) return;
  MAX_CHARS = n;
  $('composer-input').maxLength = 2 * n;
  updateCharCount();
}

/** The message being replied to, or null. */
let replyTo = null;

/**
 * hooks: onSend() when Enter or the button asks to send; onInput() after every change;
 * onBlur(); onEditLast() for ↑ in an empty box (edit my last message).
 */
export function bindComposer({ onSend, onInput, onBlur, onEditLast }) {
  const input = $('composer-input');
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    onSend();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      onSend();
    } else if (e.key === 'Escape' && replyTo) {
      e.preventDefault();
      clearReply();
    } else if (e.key === 'ArrowUp' && input.value === '') {
      e.preventDefault();
      onEditLast();
    }
  });
  input.addEventListener('input', () => {
    autosize();
    updateCharCount();
    onInput();
  });
  input.addEventListener('blur', onBlur);
  $('reply-cancel').addEventListener('click', () => {
    clearReply();
    input.focus();
  });
}

/** Answer `msg` with the next message sent. */
export function setReply(msg) {
  replyTo = msg;
  $('reply-bar-text').replaceChildren(
    'Replying to ',
    ui.el('strong', { class: 'reply-bar-name', text: msg.sender_username }),
    ': ',
    ui.el('span', { class: 'reply-bar-snippet', text: snippet(msg.content) }),
  );
  $('reply-bar').hidden = false;
  $('composer-input').focus();
}

export function clearReply() {
  replyTo = null;
  $('reply-bar').hidden = true;
  $('reply-bar-text').replaceChildren();
}

/** The message being replied to, or null. */
export function replyingTo() {
  return replyTo;
}

/**
 * What to send: `{content, replyTo}` with the box emptied and the reply cleared, or null when
 * there is nothing (or too much) to send. `allowEmpty`: files go with it, so no text is fine.
 */
export function takeDraft({ allowEmpty = false } = {}) {
  const input = $('composer-input');
  const content = input.value.trim() ? input.value : '';
  if (!content && !allowEmpty) return null;
  if (charCount(content) > MAX_CHARS) {
    ui.toast(`Messages are at most ${MAX_CHARS} characters.`, 'warn');
    return null;
  }
  const draft = { content, replyTo };
  input.value = '';
  autosize();
  updateCharCount();
  clearReply();
  return draft;
}

/** Is there text in the box (for typing notices)? */
export function hasText() {
  return $('composer-input').value.trim().length > 0;
}

function autosize() {
  const t = $('composer-input');
  t.style.height = 'auto';
  t.style.height = `${Math.min(t.scrollHeight, 160)}px`;
}

function updateCharCount() {
  const n = charCount($('composer-input').value);
  const c = $('char-count');
  c.hidden = n < MAX_CHARS * 0.875; // shown near the limit (the last 500 of 4000)
  c.textContent = `${n} / ${MAX_CHARS}`;
  c.classList.toggle('over', n > MAX_CHARS);
}
