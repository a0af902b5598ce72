// ui.js — DOM building blocks. Every piece of data (message text, user and room names) goes
// into the page as a text node or an attribute value, never through innerHTML, so a message
// like `<img src=x onerror=alert(1)>` shows as exactly those characters.

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * Build an element. `props`: { class, text, attrs: {name: value}, dataset, on: {event: fn} }.
 * Children: nodes or strings (strings become text nodes); null/false are skipped.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  if (props.class) node.className = props.class;
  if (props.text !== undefined && props.text !== null) node.textContent = String(props.text);
  if (props.attrs) {
    for (const [k, v] of Object.entries(props.attrs)) {
      if (v === false || v === null || v === undefined) continue;
      node.setAttribute(k, v === true ? '' : String(v));
    }
  }
  if (props.dataset) Object.assign(node.dataset, props.dataset);
  if (props.on) for (const [ev, fn] of Object.entries(props.on)) node.addEventListener(ev, fn);
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return node;
}

/** A small stroke icon from a fixed set (no user data in here). */
export function icon(name, size = 16) {
  const paths = {
    lock: ['M7 11V8a5 5 0 0 1 10 0v3', 'M5 11h14v10H5z'],
    hash: ['M5 9h14', 'M4 15h14', 'M10 3 8 21', 'M16 3l-2 18'],
    users: ['M16 21v-2a4 4 0 0 0-4-4H6a4 4 0 0 0-4 4v2', 'M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8z', 'M22 21v-2a4 4 0 0 0-3-3.87', 'M16 3.13a4 4 0 0 1 0 7.75'],
    plus: ['M12 5v14', 'M5 12h14'],
    back: ['M15 18l-6-6 6-6'],
    send: ['M22 2 11 13', 'M22 2 15 22l-4-9-9-4z'],
    leave: ['M9 21H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2h4', 'M16 17l5-5-5-5', 'M21 12H9'],
    search: ['M11 19a8 8 0 1 0 0-16 8 8 0 0 0 0 16z', 'M21 21l-4.35-4.35'],
    retry: ['M1 4v6h6', 'M3.51 15a9 9 0 1 0 2.13-9.36L1 10'],
    close: ['M18 6 6 18', 'M6 6l12 12'],
    down: ['M12 5v14', 'M19 12l-7 7-7-7'],
    reply: ['M9 14 4 9l5-5', 'M20 20v-7a4 4 0 0 0-4-4H4'],
    edit: ['M12 20h9', 'M16.5 3.5a2.12 2.12 0 0 1 3 3L7 19l-4 1 1-4z'],
    trash: ['M3 6h18', 'M19 6l-1 14a2 2 0 0 1-2 2H8a2 2 0 0 1-2-2L5 6', 'M10 11v6', 'M14 11v6', 'M9 6V4a1 1 0 0 1 1-1h4a1 1 0 0 1 1 1v2'],
    clip: ['M21.44 11.05l-9.19 9.19a6 6 0 0 1-8.49-8.49l9.19-9.19a4 4 0 0 1 5.66 5.66l-9.2 9.19a2 2 0 0 1-2.83-2.83l8.49-8.48'],
    phone: ['M22 16.92v3a2 2 0 0 1-2.18 2 19.79 19.79 0 0 1-8.63-3.07 19.5 19.5 0 0 1-6-6A19.79 19.79 0 0 1 2.12 4.18 2 2 0 0 1 4.11 2h3a2 2 0 0 1 2 1.72c.13.96.36 1.9.7 2.81a2 2 0 0 1-.45 2.11L8.09 9.91a16 16 0 0 0 6 6l1.27-1.27a2 2 0 0 1 2.11-.45c.91.34 1.85.57 2.81.7A2 2 0 0 1 22 16.92z'],
    flag: ['M4 15s1-1 4-1 5 2 8 2 4-1 4-1V3s-1 1-4 1-5-2-8-2-4 1-4 1z', 'M4 22v-7'],
    smile: ['M12 22a10 10 0 1 0 0-20 10 10 0 0 0 0 20z', 'M8 14s1.5 2 4 2 4-2 4-2', 'M9 9h.01', 'M15 9h.01'],
  };
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', String(size));
  svg.setAttribute('height', String(size));
  svg.setAttribute('fill', 'none');
  svg.setAttribute('stroke', 'currentColor');
  svg.setAttribute('stroke-width', '2');
  svg.setAttribute('stroke-linecap', 'round');
  svg.setAttribute('stroke-linejoin', 'round');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.classList.add('icon');
  for (const d of paths[name] || []) {
    const p = document.createElementNS(SVG_NS, 'path');
    p.setAttribute('d', d);
    svg.append(p);
  }
  return svg;
}

function hashString(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}

/** Round avatar with the name's first letter, its colour derived from the name. */
export function avatar(username, size = 'md') {
  const name = String(username || '?');
  const first = [...name][0] || '?';
  const hue = hashString(name.toLowerCase()) % 360;
  const a = el('span', { class: `avatar avatar-${size}`, text: first.toUpperCase(), attrs: { 'aria-hidden': 'true' } });
  a.style.setProperty('--avatar-hue', String(hue));
  return a;
}

export const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
export const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });

export function parseDate(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? new Date() : d;
}

export function dayKey(d) {
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

export function dayLabel(d) {
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (dayKey(d) === dayKey(today)) return 'Today';
  if (dayKey(d) === dayKey(yesterday)) return 'Yesterday';
  return dayFmt.format(d);
}

export function timeEl(d) {
  return el('time', {
    class: 'msg-time',
    text: timeFmt.format(d),
    attrs: { datetime: d.toISOString(), title: fullFmt.format(d) },
  });
}

/** Decide day separators and "continued" grouping for `li` given the message before it. */
export function updateGrouping(li, prev) {
  if (!li) return;
  const day = li.dataset.day;
  const newDay = !prev || prev.dataset.day !== day;
  let sep = li.querySelector(':scope > .day-sep');
  if (newDay && !sep) {
    sep = el('div', { class: 'day-sep', attrs: { role: 'separator' } }, el('span', { text: dayLabel(new Date(Number(li.dataset.ts))) }));
    li.prepend(sep);
  } else if (!newDay && sep) {
    sep.remove();
  }
  const cont =
    !newDay &&
    prev &&
    prev.dataset.sender === li.dataset.sender &&
    Number(li.dataset.ts) - Number(prev.dataset.ts) < 5 * 60 * 1000;
  li.classList.toggle('cont', !!cont);
}

/** A message of mine that the server has not acknowledged (yet). */
export function pendingNode(p, me, { onRetry, onDiscard }) {
  const li = el(
    'li',
    { class: 'msg mine pending', dataset: { clientMsgId: p.clientMsgId } },
    el(
      'div',
      { class: 'msg-row' },
      avatar(me.username),
      el(
        'div',
        { class: 'bubble' },
        el('div', { class: 'msg-meta' }, el('span', { class: 'msg-author', text: me.username })),
        el('div', { class: 'msg-body', text: p.content }),
        p.attachments?.length ? el('div', { class: 'pending-files', text: p.attachments.map((m) => m.filename).join(', ') }) : null,
      ),
    ),
    el(
      'div',
      { class: 'pending-status', attrs: { role: 'status' } },
      el('span', { class: 'pending-text' }),
      el('button', { class: 'link-btn retry-btn', attrs: { type: 'button' }, on: { click: onRetry } }, icon('retry', 14), ' Retry'),
      el('button', { class: 'link-btn discard-btn', attrs: { type: 'button' }, text: 'Discard', on: { click: onDiscard } }),
    ),
  );
  updatePendingNode(li, p);
  return li;
}

export function updatePendingNode(li, p) {
  li.classList.toggle('failed', p.status === 'failed');
  li.dataset.status = p.status;
  li.querySelector('.pending-text').textContent =
    p.status === 'failed' ? `Not sent${p.error ? ` — ${p.error}` : ''}` : 'Sending…';
  li.querySelector('.retry-btn').hidden = p.status !== 'failed';
  li.querySelector('.discard-btn').hidden = p.status !== 'failed';
}

/** Entry of "My rooms". */
export function roomItem(room, { active, unread, onOpen }) {
  const btn = el(
    'button',
    {
      class: `room-item${active ? ' active' : ''}${unread ? ' has-unread' : ''}`,
      attrs: { type: 'button', 'aria-current': active ? 'page' : false },
      dataset: { roomId: room.id },
      on: { click: onOpen },
    },
    el('span', { class: 'room-glyph' }, icon(room.is_private ? 'lock' : 'hash', 15)),
    el('span', { class: 'room-name', text: room.name }),
    unread
      ? el('span', { class: 'badge', text: unread > 99 ? '99+' : String(unread), attrs: { 'aria-label': `${unread} unread` } })
      : null,
  );
  return el('li', {}, btn);
}

/** Entry of the public room directory. */
export function publicRoomItem(room, { joined, busy, onJoin, onOpen }) {
  const count = `${room.member_count} member${room.member_count === 1 ? '' : 's'}`;
  return el(
    'li',
    { class: 'public-room', dataset: { roomId: room.id } },
    el(
      'div',
      { class: 'public-room-text' },
      el('span', { class: 'public-room-name', text: room.name }),
      el('span', { class: 'public-room-meta', text: room.description ? `${count} · ${room.description}` : count }),
    ),
    joined
      ? el('button', { class: 'btn btn-small btn-ghost open-btn', attrs: { type: 'button' }, text: 'Open', on: { click: onOpen } })
      : el('button', {
          class: 'btn btn-small join-btn',
          attrs: { type: 'button', disabled: !!busy, 'aria-label': `Join ${room.name}` },
          text: busy ? 'Joining…' : 'Join',
          on: { click: onJoin },
        }),
  );
}

/** "alice is typing…" text. */
export function typingText(names) {
  if (!names.length) return '';
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return `${names.length} people are typing…`;
}

let toastHost = null;
/** Short notice in the corner. */
export function toast(text, kind = 'info', ms = 5000) {
  toastHost ||= document.getElementById('toasts');
  if (!toastHost) return;
  const t = el('div', { class: `toast toast-${kind}`, text });
  toastHost.append(t);
  setTimeout(() => {
    t.classList.add('leaving');
    setTimeout(() => t.remove(), 300);
  }, ms);
}

/**
 * Ask before doing something that cannot be undone. Resolves true when confirmed. Built on the
 * page's `#confirm-dialog` (a modal `<dialog>`: Escape or Cancel says no).
 */
export function confirm({ title, text, confirmLabel }) {
  const dialog = document.getElementById('confirm-dialog');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  const ok = document.getElementById('confirm-ok');
  ok.textContent = confirmLabel;
  ok.onclick = () => dialog.close('ok');
  document.getElementById('confirm-cancel').onclick = () => dialog.close('cancel');
  dialog.returnValue = '';
  dialog.showModal();
  document.getElementById('confirm-cancel').focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}
