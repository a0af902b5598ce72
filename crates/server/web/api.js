// api.js — the page's REST calls, made through the SDK's client (sdk/index.js), plus the session.
//
// Where the token lives: sessionStorage.
//   + It survives a reload of the tab (so a refresh does not log you out) but not the closing
//     of the tab, and it is not shared between tabs: each tab is its own session, which is
//     what lets two people (or a test) use two tabs as two users, and a forgotten tab on a
//     shared computer does not leave a token behind for days the way localStorage would.
//   + The server authenticates with `Authorization: Bearer` and the WebSocket with `?token=`,
//     never with cookies, so there is no ambient credential and no CSRF to defend against.
//   - Any script running in the page can read it, so an XSS bug would leak it (an HttpOnly
//     cookie would not, but would need cookie auth + CSRF protection on the server, and the
//     WebSocket contract takes the token in the URL anyway). The defence here is to not have
//     XSS: the client renders every piece of user data with textContent, never innerHTML, and
//     index.html carries a strict Content-Security-Policy (scripts from 'self' only).
//   - The token also travels in the WebSocket URL (contract: `GET /ws?token=`), where proxies
//     may log it; its lifetime (`expires_in`) bounds the damage, and the server closes the
//     socket with 4001 when it expires, which sends the user back to the login screen.

import { NebulaClient, NebulaError } from './sdk/index.js';

const STORAGE_KEY = 'nebula.session';

/** An error answer from the server (RFC 9457 problem details), or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, problem = {}) {
    const detail = problem.detail || problem.title || (status ? `HTTP ${status}` : 'Network error');
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.code = problem.code || (status ? `http_${status}` : 'network_error');
    this.title = problem.title || '';
    this.detail = detail;
    this.retryAfter = null;
  }
}

let session = loadSession();
const unauthorizedListeners = new Set();

function loadSession() {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    if (!raw) return null;
    const s = JSON.parse(raw);
    if (!s || typeof s.token !== 'string' || !s.user) return null;
    if (s.expiresAt && Date.now() >= s.expiresAt) {
      sessionStorage.removeItem(STORAGE_KEY);
      return null;
    }
    return s;
  } catch {
    return null;
  }
}

/** The current session `{token, user, expiresAt}` or null. */
export function getSession() {
  if (session && session.expiresAt && Date.now() >= session.expiresAt) clearSession();
  return session;
}

/** Keep the answer of register/login as the session. */
export function setSession(auth) {
  session = {
    token: auth.token,
    user: auth.user,
    expiresAt: auth.expires_in ? Date.now() + auth.expires_in * 1000 : null,
  };
  try {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  } catch {
    /* storage full or disabled: the session still lives in memory for this page */
  }
  return session;
}

export function clearSession() {
  session = null;
  try {
    sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    /* ignore */
  }
}

/** Called (once per 401) when the server rejects the session's token. */
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
  return () => unauthorizedListeners.delete(fn);
}

function emitUnauthorized() {
  for (const fn of unauthorizedListeners) {
    try {
      fn();
    } catch (e) {
      console.error(e);
    }
  }
}

/**
 * Every REST call goes through the SDK's client (served as /web/sdk/index.js, a copy of
 * clients/typescript/src/index.js); this module adds the page's session: which token to send,
 * and what a 401 for it means (the session is over).
 */
const client = new NebulaClient({
  baseUrl: location.origin,
  // Answers about my account and rooms must not come from the HTTP cache.
  fetch: (url, init) => fetch(url, { ...init, cache: 'no-store' }),
});

/** The SDK's error as this client's ApiError (same status, code, detail, Retry-After). */
function apiError(e) {
  if (!(e instanceof NebulaError)) return e;
  const err = new ApiError(e.status, e.problem && typeof e.problem === 'object' ? e.problem : {});
  err.retryAfter = e.retryAfter;
  return err;
}

/** The session's token, or (after telling the listeners) a 401 ApiError when there is none. */
function sessionToken() {
  const s = getSession();
  if (!s) {
    emitUnauthorized();
    throw new ApiError(401, { code: 'unauthorized', detail: 'Please log in.' });
  }
  return s.token;
}

/** A 401 for the token the page still holds ends the session; one for a replaced token does not. */
function rejected(err, sentToken) {
  if (err.status === 401 && sentToken && session?.token === sentToken) {
    clearSession();
    emitUnauthorized();
  }
  return err;
}

async function request(method, path, { body, auth = true, signal } = {}) {
  const token = auth ? sessionToken() : null;
  try {
    return await client.request(method, path, body, { token, signal });
  } catch (e) {
    throw rejected(apiError(e), token);
  }
}

const enc = encodeURIComponent;

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

export const api = {
  /** `GET /`: `{name, version, docs, limits: {message_max_chars, media_max_bytes}}`. */
  serviceInfo: () => request('GET', '/', { auth: false }),
  register: (username, password) =>
    request('POST', '/auth/register', { body: { username, password }, auth: false }),
  /** `second`: `{totp_code}` or `{recovery_code}` when the account has two-factor on. */
  login: (username, password, second = {}) =>
    request('POST', '/auth/login', { body: { username, password, ...second }, auth: false }),
  /** My account: a `user` with `email`, `email_verified`, `is_admin`, `totp_enabled`. */
  me: () => request('GET', '/me'),
  /** `email`: an address, or null to remove it. */
  setEmail: (email) => request('PATCH', '/me', { body: { email } }),
  sendEmailCode: () => request('POST', '/me/email/verify'),
  confirmEmail: (code) => request('POST', '/me/email/confirm', { body: { code } }),
  /** 204; every token issued before (this page's too) stops working. */
  changePassword: (currentPassword, newPassword) =>
    request('POST', '/me/password', { body: { current_password: currentPassword, new_password: newPassword } }),
  logoutAll: () => request('POST', '/auth/logout-all'),
  /** `{secret, otpauth_url}` */
  totpSetup: () => request('POST', '/me/2fa/setup'),
  /** `{recovery_codes}` */
  totpEnable: (code) => request('POST', '/me/2fa/enable', { body: { code } }),
  totpDisable: (password, code) => request('POST', '/me/2fa/disable', { body: { password, code } }),
  /** Everything the server holds about me, as one JSON document. */
  exportData: () => request('GET', '/me/export'),
  deleteAccount: (password) => request('DELETE', '/me', { body: { password } }),

  reportMessage: (roomId, messageId, reason) =>
    request('POST', `/rooms/${enc(roomId)}/messages/${enc(messageId)}/report`, { body: { reason } }),
  reportUser: (userId, reason) => request('POST', `/users/${enc(userId)}/report`, { body: { reason } }),

  admin: {
    /** `{users: [user + is_admin, deactivated_at], total}` */
    users: (q, page, pageSize) => request('GET', `/admin/users${query({ q, page, page_size: pageSize })}`),
    deactivate: (userId) => request('POST', `/admin/users/${enc(userId)}/deactivate`),
    reactivate: (userId) => request('POST', `/admin/users/${enc(userId)}/reactivate`),
    /** `{rooms, total}` */
    rooms: (q, page, pageSize) => request('GET', `/admin/rooms${query({ q, page, page_size: pageSize })}`),
    deleteRoom: (roomId) => request('DELETE', `/admin/rooms/${enc(roomId)}`),
    /** `{reports}`: `open` oldest first, `resolved` newest first. */
    reports: (status) => request('GET', `/admin/reports${query({ status })}`),
    /** `action`: none | delete_message | deactivate_user. */
    resolve: (reportId, action, note) =>
      request('POST', `/admin/reports/${enc(reportId)}/resolve`, { body: { action, ...(note ? { note } : {}) } }),
    /** `{entries: [{id, at, actor, action, target, ip}]}`, newest first, below `before`. */
    audit: (before, limit) => request('GET', `/admin/audit${query({ before, limit })}`),
  },

  myRooms: () => request('GET', '/rooms'),
  publicRooms: (q, page = 1, pageSize = 30, signal) =>
    request('GET', `/rooms/public${query({ q, page, page_size: pageSize })}`, { signal }),
  createRoom: ({ name, description, isPrivate }) =>
    request('POST', '/rooms', {
      body: { name, is_private: !!isPrivate, ...(description ? { description } : {}) },
    }),
  room: (id) => request('GET', `/rooms/${enc(id)}`),

  members: (id) => request('GET', `/rooms/${enc(id)}/members`),
  join: (id) => request('POST', `/rooms/${enc(id)}/members`, { body: {} }),
  addMember: (id, username) =>
    request('POST', `/rooms/${enc(id)}/members`, { body: { username } }),
  leave: (id) => request('DELETE', `/rooms/${enc(id)}/members/me`),

  /** The newest `limit` messages, ascending by seq. */
  /** A page of messages: `query` is `{page, page_size}`, `{before_seq, limit}` or `{after_seq, limit}`. */
  messages: (id, q) => request('GET', `/rooms/${enc(id)}/messages${query(q)}`),
  latestMessages: (id, limit = 50) =>
    request('GET', `/rooms/${enc(id)}/messages${query({ page: 1, page_size: limit })}`),
  /** Keyset: the `limit` messages just below `beforeSeq`, ascending; `{messages, has_more}`. */
  messagesBefore: (id, beforeSeq, limit = 50) =>
    request('GET', `/rooms/${enc(id)}/messages${query({ before_seq: beforeSeq, limit })}`),
  /** Keyset: the `limit` messages just above `afterSeq`, ascending; `{messages, has_more}`. */
  messagesAfter: (id, afterSeq, limit = 100) =>
    request('GET', `/rooms/${enc(id)}/messages${query({ after_seq: afterSeq, limit })}`),
  postMessage: (id, content, clientMsgId, replyTo, attachments) =>
    request('POST', `/rooms/${enc(id)}/messages`, {
      body: {
        content,
        client_msg_id: clientMsgId,
        ...(replyTo ? { reply_to: replyTo } : {}),
        ...(attachments?.length ? { attachments } : {}),
      },
    }),
  message: (roomId, messageId) => request('GET', `/rooms/${enc(roomId)}/messages/${enc(messageId)}`),
  editMessage: (roomId, messageId, content) =>
    request('PATCH', `/rooms/${enc(roomId)}/messages/${enc(messageId)}`, { body: { content } }),
  deleteMessage: (roomId, messageId) => request('DELETE', `/rooms/${enc(roomId)}/messages/${enc(messageId)}`),
  /** `{reactions: [{emoji, count, users}]}` */
  reactions: (roomId, messageId) => request('GET', `/rooms/${enc(roomId)}/messages/${enc(messageId)}/reactions`),
  react: (roomId, messageId, emoji) =>
    request('PUT', `/rooms/${enc(roomId)}/messages/${enc(messageId)}/reactions/${enc(emoji)}`),
  unreact: (roomId, messageId, emoji) =>
    request('DELETE', `/rooms/${enc(roomId)}/messages/${enc(messageId)}/reactions/${enc(emoji)}`),

  /** `{max_bytes, quota_bytes, used_bytes}` */
  mediaLimits: () => request('GET', '/media/limits'),
  /** A media object with fresh signed `url` / `thumbnail_url` (they expire). */
  mediaInfo: (id) => request('GET', `/media/${enc(id)}/info`),

  /** `{stories: [story]}`: mine and my contacts', unexpired, newest first. */
  stories: () => request('GET', '/stories'),
  postStory: ({ text, mediaId }) =>
    request('POST', '/stories', { body: { ...(text ? { text } : {}), ...(mediaId ? { media_id: mediaId } : {}) } }),
  viewStory: (id) => request('POST', `/stories/${enc(id)}/views`),
  /** `{views: [{user, viewed_at}]}` (author only). */
  storyViews: (id) => request('GET', `/stories/${enc(id)}/views`),
  deleteStory: (id) => request('DELETE', `/stories/${enc(id)}`),

  /** My direct rooms, most recent message first: `{rooms}`. */
  directRooms: () => request('GET', '/dms'),
  /** The direct room with that user (created on first use): a `room` with `kind: "direct"`. */
  openDirect: (userId) => request('POST', '/dms', { body: { user_id: userId } }),
  /** Users whose name starts with `q` (at most 20): `{users}`. */
  searchUsers: (q, signal) => request('GET', `/users${query({ q })}`, { signal }),
  user: (id) => request('GET', `/users/${enc(id)}`),

  contacts: () => request('GET', '/contacts'),
  /** Pending requests: `{incoming, outgoing}`. */
  contactRequests: () => request('GET', '/contacts/requests'),
  requestContact: (userId) => request('POST', '/contacts/requests', { body: { user_id: userId } }),
  acceptContact: (requestId) => request('POST', `/contacts/requests/${enc(requestId)}/accept`),
  declineContact: (requestId) => request('POST', `/contacts/requests/${enc(requestId)}/decline`),
  removeContact: (userId) => request('DELETE', `/contacts/${enc(userId)}`),
  blocks: () => request('GET', '/blocks'),
  block: (userId) => request('PUT', `/blocks/${enc(userId)}`),
  unblock: (userId) => request('DELETE', `/blocks/${enc(userId)}`),

  /** TURN credentials `{uris, username, password, ttl}`; 404 `turn_not_configured` if none. */
  turn: () => request('GET', '/voip/turn'),
};

/**
 * Upload a file as the raw body of `POST /media` (the SDK uses XMLHttpRequest for its upload
 * progress, which fetch cannot report). `onProgress(sentBytes, totalBytes)`; `signal` aborts.
 * Resolves to the `media` object, rejects with an ApiError (an abort with an AbortError).
 */
export async function uploadMedia(file, { onProgress, signal } = {}) {
  const token = sessionToken();
  try {
    return await client.uploadMedia(file, {
      filename: file.name || 'file',
      contentType: file.type || undefined,
      onProgress: onProgress || (() => {}),
      signal,
      token,
    });
  } catch (e) {
    throw rejected(apiError(e), token);
  }
}
