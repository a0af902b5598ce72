// admin.js — the administration page, for server admins only (`/me` says `is_admin`; the
// server answers 403 `admin_required` to anyone else anyway): the reports queue, users
// (search, pages, deactivate / reactivate), rooms (search, pages, delete) and the audit log
// (newest first, older pages by `before`).

import { api } from './api.js';
import { onPageShown } from './pages.js';
import { $, state } from './state.js';
import * as ui from './ui.js';

const PAGE_SIZE = 20;
const AUDIT_PAGE = 50;
const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

const ACTIONS = {
  none: 'No action',
  delete_message: 'Delete the message',
  deactivate_user: 'Deactivate the user',
};

const view = {
  tab: 'reports',
  users: { q: '', page: 1, total: 0 },
  rooms: { q: '', page: 1, total: 0 },
  auditOldest: null,
};

export function bindAdmin() {
  onPageShown('admin', () => showTab(view.tab));
  for (const tab of document.querySelectorAll('.admin-tabs [data-panel]')) {
    tab.addEventListener('click', () => showTab(tab.dataset.panel));
  }
  $('admin-report-status').addEventListener('change', loadReports);
  $('admin-reports-refresh').addEventListener('click', loadReports);
  searchBox('admin-user-search', view.users, loadUsers);
  searchBox('admin-room-search', view.rooms, loadRooms);
  pager('admin-users', view.users, loadUsers);
  pager('admin-rooms', view.rooms, loadRooms);
  $('admin-audit-refresh').addEventListener('click', () => loadAudit(false));
  $('admin-audit-older').addEventListener('click', () => loadAudit(true));
}

/** Show the Admin button to admins only. */
export function renderAdminEntry() {
  $('open-admin').hidden = !state.account?.is_admin;
}

function showTab(name) {
  view.tab = name;
  $('admin-error').textContent = '';
  for (const tab of document.querySelectorAll('.admin-tabs [data-panel]')) {
    const on = tab.dataset.panel === name;
    tab.setAttribute('aria-selected', String(on));
    $(`admin-${tab.dataset.panel}-panel`).hidden = !on;
  }
  ({ reports: loadReports, users: loadUsers, rooms: loadRooms, audit: () => loadAudit(false) })[name]();
}

function searchBox(id, list, load) {
  let timer = null;
  $(id).addEventListener('input', (e) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      list.q = e.target.value.trim();
      list.page = 1;
      load();
    }, 250);
  });
}

function pager(prefix, list, load) {
  $(`${prefix}-prev`).addEventListener('click', () => {
    if (list.page > 1) {
      list.page -= 1;
      load();
    }
  });
  $(`${prefix}-next`).addEventListener('click', () => {
    if (list.page < pages(list)) {
      list.page += 1;
      load();
    }
  });
}

function pages(list) {
  return Math.max(1, Math.ceil(list.total / PAGE_SIZE));
}

function renderPager(prefix, list) {
  $(`${prefix}-page`).textContent = `Page ${list.page} of ${pages(list)} · ${list.total} in all`;
  $(`${prefix}-prev`).disabled = list.page <= 1;
  $(`${prefix}-next`).disabled = list.page >= pages(list);
}

function fail(e) {
  if (e.status === 401) return; // logged out already
  $('admin-error').textContent =
    e.code === 'admin_required' ? 'You are not a server admin (any more).' : e.message || 'Something went wrong.';
}

const when = (iso) => (iso ? dateFmt.format(ui.parseDate(iso)) : '');

// Reports

async function loadReports() {
  const status = $('admin-report-status').value;
  try {
    const { reports } = await api.admin.reports(status);
    if ($('admin-report-status').value !== status) return;
    $('admin-reports').replaceChildren(...reports.map(reportItem));
    $('admin-reports-empty').hidden = reports.length > 0;
  } catch (e) {
    fail(e);
  }
}

function reportItem(r) {
  const isMessage = r.kind === 'message';
  const what = isMessage
    ? `Message by ${r.target_user.username}, reported by ${r.reporter.username}`
    : `User ${r.target_user.username}, reported by ${r.reporter.username}`;
  const li = ui.el(
    'li',
    { class: 'admin-item report', dataset: { reportId: r.id, kind: r.kind, status: r.status } },
    ui.el(
      'div',
      { class: 'admin-item-main' },
      ui.el('strong', { text: what }),
      ui.el('span', { class: 'report-reason', text: r.reason }),
      ui.el('span', {
        class: 'admin-item-meta',
        text: [when(r.created_at), isMessage ? `message ${r.message_id} in room ${r.room_id}` : null].filter(Boolean).join(' · '),
      }),
      r.status === 'resolved'
        ? ui.el('span', {
            class: 'admin-item-meta report-outcome',
            text: `Resolved ${when(r.resolved_at)}: ${ACTIONS[r.action] || r.action}${r.note ? ` — ${r.note}` : ''}`,
          })
        : null,
    ),
  );
  if (r.status === 'open') li.append(resolveControls(r));
  return li;
}

function resolveControls(r) {
  const choices = Object.entries(ACTIONS).filter(([action]) => action !== 'delete_message' || r.kind === 'message');
  const select = ui.el(
    'select',
    { class: 'report-action', attrs: { 'aria-label': 'Action' } },
    ...choices.map(([value, label]) => ui.el('option', { text: label, attrs: { value } })),
  );
  const note = ui.el('input', { class: 'report-note', attrs: { maxlength: '1000', placeholder: 'Note (optional)', 'aria-label': 'Note' } });
  const button = ui.el('button', { class: 'btn btn-small report-resolve-btn', text: 'Resolve', attrs: { type: 'button' } });
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await api.admin.resolve(r.id, select.value, note.value.trim());
      ui.toast('Report resolved.', 'info', 3000);
      await loadReports();
    } catch (e) {
      button.disabled = false;
      if (e.code === 'report_resolved') loadReports();
      fail(e);
    }
  });
  return ui.el('div', { class: 'report-resolve' }, select, note, button);
}

// Users

async function loadUsers() {
  const list = view.users;
  const asked = `${list.q}|${list.page}`;
  try {
    const data = await api.admin.users(list.q, list.page, PAGE_SIZE);
    if (`${list.q}|${list.page}` !== asked) return;
    list.total = Number(data.total) || 0;
    $('admin-users').replaceChildren(...data.users.map(userItem));
    renderPager('admin-users', list);
  } catch (e) {
    fail(e);
  }
}

function userItem(u) {
  const off = !!u.deactivated_at;
  const me = u.id === state.me?.id;
  const button = ui.el('button', {
    class: `btn btn-small ${off ? 'btn-ghost' : 'danger'} user-toggle`,
    text: off ? 'Reactivate' : 'Deactivate',
    attrs: { type: 'button', hidden: me },
  });
  button.addEventListener('click', async () => {
    if (!off) {
      const ok = await ui.confirm({
        title: `Deactivate ${u.username}?`,
        text: 'They are logged out everywhere at once and cannot log in until reactivated.',
        confirmLabel: 'Deactivate',
      });
      if (!ok) return;
    }
    button.disabled = true;
    try {
      await (off ? api.admin.reactivate(u.id) : api.admin.deactivate(u.id));
      await loadUsers();
    } catch (e) {
      button.disabled = false;
      fail(e);
    }
  });
  return ui.el(
    'li',
    { class: `admin-item user${off ? ' deactivated' : ''}`, dataset: { userId: u.id, username: u.username } },
    ui.el(
      'div',
      { class: 'admin-item-main' },
      ui.el(
        'span',
        {},
        ui.el('strong', { class: 'admin-item-name', text: me ? `${u.username} (you)` : u.username }),
        u.is_admin ? ui.el('span', { class: 'badge-flag', text: 'admin' }) : null,
        off ? ui.el('span', { class: 'badge-flag', text: 'deactivated' }) : null,
      ),
      ui.el('span', {
        class: 'admin-item-meta',
        text: `Joined ${when(u.created_at)}${off ? ` · deactivated ${when(u.deactivated_at)}` : ''}`,
      }),
    ),
    button,
  );
}

// Rooms

async function loadRooms() {
  const list = view.rooms;
  const asked = `${list.q}|${list.page}`;
  try {
    const data = await api.admin.rooms(list.q, list.page, PAGE_SIZE);
    if (`${list.q}|${list.page}` !== asked) return;
    list.total = Number(data.total) || 0;
    $('admin-rooms').replaceChildren(...data.rooms.map(roomItem));
    renderPager('admin-rooms', list);
  } catch (e) {
    fail(e);
  }
}

function roomItem(r) {
  const kind = r.kind === 'direct' ? 'Direct' : r.is_private ? 'Private' : 'Public';
  const button = ui.el('button', { class: 'btn btn-small danger room-delete', text: 'Delete', attrs: { type: 'button' } });
  button.addEventListener('click', async () => {
    const ok = await ui.confirm({
      title: `Delete ${r.name}?`,
      text: 'The room and its whole history are gone for every member. This cannot be undone.',
      confirmLabel: 'Delete room',
    });
    if (!ok) return;
    button.disabled = true;
    try {
      await api.admin.deleteRoom(r.id);
      ui.toast(`${r.name} deleted.`, 'info', 3000);
      await loadRooms();
    } catch (e) {
      button.disabled = false;
      if (e.code === 'room_not_found') loadRooms();
      fail(e);
    }
  });
  return ui.el(
    'li',
    { class: 'admin-item room', dataset: { roomId: r.id } },
    ui.el(
      'div',
      { class: 'admin-item-main' },
      ui.el('strong', { class: 'admin-item-name', text: r.name }),
      ui.el('span', {
        class: 'admin-item-meta',
        text: `${kind} · ${r.member_count} member${r.member_count === 1 ? '' : 's'} · created ${when(r.created_at)}`,
      }),
    ),
    button,
  );
}

// Audit log

async function loadAudit(older) {
  const before = older ? view.auditOldest : undefined;
  try {
    const { entries } = await api.admin.audit(before ?? undefined, AUDIT_PAGE);
    const items = entries.map(auditItem);
    if (older) $('admin-audit').append(...items);
    else $('admin-audit').replaceChildren(...items);
    if (entries.length) view.auditOldest = entries[entries.length - 1].id;
    $('admin-audit-older').hidden = entries.length < AUDIT_PAGE;
  } catch (e) {
    fail(e);
  }
}

function auditItem(entry) {
  return ui.el(
    'li',
    { class: 'admin-item audit-entry', dataset: { id: String(entry.id), action: entry.action } },
    ui.el(
      'div',
      { class: 'admin-item-main' },
      ui.el('span', {}, ui.el('strong', { text: entry.action }), ` by ${entry.actor?.username ?? 'the server'}`),
      ui.el('span', {
        class: 'admin-item-meta',
        text: [when(entry.at), entry.target, entry.ip].filter(Boolean).join(' · '),
      }),
    ),
  );
}
