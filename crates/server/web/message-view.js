// message-view.js — the DOM of one stored message: author and time, the quoted message it
// replies to, its text (or the "message deleted" tombstone), its files (attachments.js), the
// "(edited)" marker, its reaction chips, its action buttons and the inline editor. No state
// and no listeners (but the files' own): buttons carry `data-action` and the timeline handles
// clicks for the whole list. Every piece of data goes in as text (see ui.js).

import { attachmentNodes } from './attachments.js';
import { avatar, el, icon, parseDate, dayKey, timeEl, timeFmt, fullFmt } from './ui.js';

const SNIPPET_CHARS = 80;

/** One line of at most SNIPPET_CHARS characters of a message's text. */
export function snippet(content) {
  const line = String(content).replace(/\s+/g, ' ').trim();
  const chars = [...line];
  return chars.length > SNIPPET_CHARS ? `${chars.slice(0, SNIPPET_CHARS).join('')}…` : line;
}

/**
 * A message's `<li>`. `view`: how this user sees it —
 *   mine, canEdit, canDelete, canReport: booleans;
 *   target: the message it replies to, `null` while it is being fetched, `false` if it cannot be;
 *   myReactions: Set of the emoji I reacted with;
 *   reactors: Map emoji → usernames, once known (chip tooltips).
 */
export function messageNode(msg, view) {
  const d = parseDate(msg.created_at);
  const li = el('li', {
    class: `msg${view.mine ? ' mine' : ''}`,
    dataset: { seq: String(msg.seq), id: msg.id, sender: msg.sender_id, day: dayKey(d), ts: String(d.getTime()) },
    attrs: { 'aria-label': `${msg.sender_username}, ${timeFmt.format(d)}` },
  });
  li.append(
    el(
      'div',
      { class: 'msg-row' },
      avatar(msg.sender_username),
      el(
        'div',
        { class: 'msg-main' },
        el(
          'div',
          { class: 'bubble' },
          el('div', { class: 'msg-meta' }, el('button', { class: 'msg-author', text: msg.sender_username, attrs: { type: 'button', title: `${msg.sender_username}'s profile` } }), timeEl(d)),
          el('div', { class: 'reply-slot' }),
          el('div', { class: 'msg-body' }),
          el('div', { class: 'attachments' }),
          el('div', { class: 'edited-slot' }),
        ),
        el('div', { class: 'reactions' }),
      ),
      el('div', { class: 'msg-actions', attrs: { role: 'toolbar', 'aria-label': 'Message actions' } }),
    ),
  );
  updateMessageNode(li, msg, view);
  return li;
}

/** Bring a message's `<li>` up to date with `msg` (a newer version), keeping an open editor. */
export function updateMessageNode(li, msg, view) {
  const deleted = !!msg.deleted_at;
  li.classList.toggle('deleted', deleted);
  if (deleted) closeEditor(li);
  li.querySelector('.reply-slot').replaceChildren(msg.reply_to && !deleted ? replyQuote(msg.reply_to, view.target) : '');
  if (!li.classList.contains('editing')) {
    const body = li.querySelector('.msg-body');
    body.classList.toggle('tombstone', deleted);
    body.textContent = deleted ? 'message deleted' : msg.content;
  }
  const attachments = li.querySelector('.attachments');
  const mediaKey = deleted ? '' : (msg.attachments || []).map((m) => m.id).join(',');
  // Rebuilt only when the set changes (an edit or a reaction keeps the loaded images).
  if (attachments.dataset.media !== mediaKey) {
    attachments.dataset.media = mediaKey;
    attachments.replaceChildren(...(deleted ? [] : attachmentNodes(msg.attachments)));
  }
  li.querySelector('.edited-slot').replaceChildren(msg.edited_at && !deleted ? editedMarker(msg.edited_at) : '');
  li.querySelector('.reactions').replaceChildren(...(deleted ? [] : msg.reactions || []).map((r) => reactionChip(r, view)));
  li.querySelector('.msg-actions').replaceChildren(...(deleted ? [] : actionButtons(view)));
}

/** The quoted message a reply answers; clicking it jumps there. */
function replyQuote(replyTo, target) {
  let author = '';
  let text = target === false ? 'Original message unavailable' : 'Loading…';
  if (target?.deleted_at) text = 'message deleted';
  else if (target) {
    author = target.sender_username;
    text = snippet(target.content);
  }
  return el(
    'button',
    {
      class: `reply-quote${target?.deleted_at ? ' gone' : ''}`,
      attrs: { type: 'button', title: 'Show the message this replies to' },
      dataset: { action: 'jump', targetSeq: String(replyTo.seq), targetId: replyTo.id },
    },
    author ? el('span', { class: 'reply-author', text: author }) : null,
    el('span', { class: 'reply-text', text }),
  );
}

function editedMarker(editedAt) {
  return el('span', { class: 'msg-edited', text: '(edited)', attrs: { title: `Edited ${fullFmt.format(parseDate(editedAt))}` } });
}

function reactionChip(r, view) {
  const mine = view.myReactions.has(r.emoji);
  const who = view.reactors?.get(r.emoji);
  return el(
    'button',
    {
      class: `reaction${mine ? ' mine' : ''}`,
      attrs: {
        type: 'button',
        'aria-pressed': String(mine),
        'aria-label': `${r.emoji} ${r.count}${mine ? ', including you' : ''}`,
        title: who ? `${who.join(', ')}` : false,
      },
      dataset: { action: 'toggle-reaction', emoji: r.emoji },
    },
    el('span', { class: 'reaction-emoji', text: r.emoji }),
    el('span', { class: 'reaction-count', text: String(r.count) }),
  );
}

function actionButtons(view) {
  const button = (action, label, iconName) =>
    el('button', { class: `icon-btn msg-act act-${action}`, attrs: { type: 'button', 'aria-label': label, title: label }, dataset: { action } }, icon(iconName, 15));
  return [
    button('react', 'Add reaction', 'smile'),
    button('reply', 'Reply', 'reply'),
    view.canEdit ? button('edit', 'Edit', 'edit') : null,
    view.canDelete ? button('delete', 'Delete', 'trash') : null,
    view.canReport ? button('report', 'Report', 'flag') : null,
  ].filter(Boolean);
}

/**
 * Replace the message's text by an editor holding `content`. Enter saves (`onSave(text)`,
 * which returns a promise; a rejection's message is shown and the editor stays), Escape
 * cancels (`onCancel`).
 */
export function openEditor(li, content, { onSave, onCancel }) {
  if (li.classList.contains('editing')) return;
  li.classList.add('editing');
  const input = el('textarea', { class: 'edit-input', attrs: { rows: '1', 'aria-label': 'Edit message' } });
  input.value = content;
  const error = el('p', { class: 'form-error edit-error', attrs: { role: 'alert' } });
  const hint = el('p', { class: 'edit-hint', text: 'Enter to save · Esc to cancel' });
  const save = async () => {
    if (input.disabled) return;
    input.disabled = true;
    error.textContent = '';
    try {
      await onSave(input.value);
    } catch (e) {
      error.textContent = e.message;
      input.disabled = false;
      input.focus();
    }
  };
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      save();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      onCancel();
    }
  });
  const editor = el('div', { class: 'msg-editor' }, input, error, hint);
  li.querySelector('.msg-body').replaceChildren(editor);
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

/** Put the text back where the editor was (the caller refreshes the node right after). */
export function closeEditor(li) {
  if (!li.classList.contains('editing')) return;
  li.classList.remove('editing');
  li.querySelector('.msg-body').replaceChildren();
}
