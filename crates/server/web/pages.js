// pages.js — which signed-in page is shown: the chat, settings or administration. The chat
// keeps running (socket, rooms) while another page is open; only the view changes.

const PAGES = { chat: 'chat-screen', settings: 'settings-screen', admin: 'admin-screen' };
const shownHooks = new Map();
let current = null;

/** `fn()` runs each time page `name` is shown. */
export function onPageShown(name, fn) {
  shownHooks.set(name, fn);
}

export function showPage(name) {
  current = name;
  for (const [page, id] of Object.entries(PAGES)) document.getElementById(id).hidden = page !== name;
  document.body.dataset.page = name;
  shownHooks.get(name)?.();
}

/** Signed out: none of them. */
export function hidePages() {
  current = null;
  for (const id of Object.values(PAGES)) document.getElementById(id).hidden = true;
  delete document.body.dataset.page;
}

export function currentPage() {
  return current;
}
