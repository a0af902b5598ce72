// Nebula client: typed REST calls (`NebulaClient`) and a WebSocket session (`NebulaSession`)
// that resumes after any disconnect without losing, repeating or reordering messages.
// No runtime dependencies: fetch and (in browsers) WebSocket are globals; on Node 20 pass a
// WebSocket constructor (e.g. the `ws` package) as `WebSocket`.

/** An error answer of the REST API (an RFC 9457 problem). */
export class NebulaError extends Error {
  /** `status` 0: the server could not be reached (`code` `network_error`). */
  constructor(status, problem, { retryAfter = null } = {}) {
    super(`${status} ${problem?.code ?? ''}: ${problem?.detail ?? problem?.title ?? ''}`.trim());
    this.name = 'NebulaError';
    this.status = status;
    this.code = problem?.code;
    this.problem = problem;
    /** The problem's `detail` (or `title`): a sentence for people. */
    this.detail = problem?.detail ?? problem?.title ?? null;
    /** Seconds, from `Retry-After` (429, 503). */
    this.retryAfter = retryAfter;
  }
}

/** `?a=1&b=2` of the defined, non-empty values, or ''. */
function queryString(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** The body of a response: JSON, or null when empty or not JSON. */
function parseBody(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function failure(status, data, retryAfterHeader) {
  const retryAfter = Number(retryAfterHeader) || null;
  return new NebulaError(status, data && typeof data === 'object' ? data : { code: `http_${status}` }, { retryAfter });
}

/** REST calls of the core routes (see `/openapi.json`). */
export class NebulaClient {
  constructor({ baseUrl, token = null, fetch: fetchImpl = globalThis.fetch } = {}) {
    this.baseUrl = String(baseUrl).replace(/\/$/, '');
    this.token = token;
    this.fetch = fetchImpl;
  }

  /**
   * One call. `options.token` overrides the client's token for this call (`null`: none);
   * `options.signal` aborts it (rejecting with the AbortError). An unreachable server rejects
   * with a NebulaError of status 0, code `network_error`.
   */
  async request(method, path, body, { token = this.token, signal } = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    let res;
    try {
      res = await this.fetch(`${this.baseUrl}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (e) {
      if (e?.name === 'AbortError') throw e;
      throw new NebulaError(0, { code: 'network_error', detail: 'Could not reach the server.' });
    }
    const data = parseBody(res.status === 204 ? '' : await res.text().catch(() => ''));
    if (!res.ok) throw failure(res.status, data, res.headers.get('Retry-After'));
    return data;
  }

  /**
   * Uploads `file` (a Blob or File; bytes on Node) as `POST /media`: resolves with the media
   * object. `onProgress(sent, total)` reports the upload's progress where the platform can
   * (XMLHttpRequest, in browsers); `signal` aborts.
   */
  uploadMedia(file, { filename = file?.name || 'file', contentType = file?.type, onProgress, signal, token = this.token } = {}) {
    const url = `${this.baseUrl}/media${queryString({ filename })}`;
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (contentType) headers['Content-Type'] = contentType;
    if (!onProgress || typeof globalThis.XMLHttpRequest !== 'function') {
      return (async () => {
        let res;
        try {
          res = await this.fetch(url, { method: 'POST', headers, body: file, signal });
        } catch (e) {
          if (e?.name === 'AbortError') throw e;
          throw new NebulaError(0, { code: 'network_error', detail: 'Could not reach the server.' });
        }
        const data = parseBody(await res.text().catch(() => ''));
        if (!res.ok || !data) throw failure(res.status, data, res.headers.get('Retry-After'));
        return data;
      })();
    }
    // fetch cannot report upload progress; XMLHttpRequest can.
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', url);
      for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
      xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
      xhr.onload = () => {
        const data = parseBody(xhr.responseText);
        if (xhr.status >= 200 && xhr.status < 300 && data) resolve(data);
        else reject(failure(xhr.status, data, xhr.getResponseHeader('Retry-After')));
      };
      xhr.onerror = () => reject(new NebulaError(0, { code: 'network_error', detail: 'Could not reach the server.' }));
      xhr.onabort = () => reject(new DOMException('Upload cancelled', 'AbortError'));
      signal?.addEventListener('abort', () => xhr.abort(), { once: true });
      xhr.send(file);
    });
  }

  async register(username, password, email) {
    const auth = await this.request('POST', '/auth/register', { username, password, ...(email ? { email } : {}) });
    this.token = auth.token;
    return auth;
  }

  async login(username, password) {
    const auth = await this.request('POST', '/auth/login', { username, password });
    this.token = auth.token;
    return auth;
  }

  me() {
    return this.request('GET', '/me');
  }

  rooms() {
    return this.request('GET', '/rooms');
  }

  publicRooms() {
    return this.request('GET', '/rooms/public');
  }

  createRoom(name, { isPrivate, description } = {}) {
    const body = { name };
    if (isPrivate !== undefined) body.is_private = isPrivate;
    if (description !== undefined) body.description = description;
    return this.request('POST', '/rooms', body);
  }

  room(roomId) {
    return this.request('GET', `/rooms/${roomId}`);
  }

  join(roomId) {
    return this.request('POST', `/rooms/${roomId}/members`, {});
  }

  addMember(roomId, { userId, username }) {
    return this.request('POST', `/rooms/${roomId}/members`, userId ? { user_id: userId } : { username });
  }

  leave(roomId) {
    return this.request('DELETE', `/rooms/${roomId}/members/me`);
  }

  members(roomId) {
    return this.request('GET', `/rooms/${roomId}/members`);
  }

  messages(roomId, query = {}) {
    const params = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
    const qs = params.toString();
    return this.request('GET', `/rooms/${roomId}/messages${qs ? `?${qs}` : ''}`);
  }

  postMessage(roomId, content, { clientMsgId, replyTo } = {}) {
    const body = { content };
    if (clientMsgId) body.client_msg_id = clientMsgId;
    if (replyTo) body.reply_to = replyTo;
    return this.request('POST', `/rooms/${roomId}/messages`, body);
  }

  editMessage(roomId, messageId, content) {
    return this.request('PATCH', `/rooms/${roomId}/messages/${messageId}`, { content });
  }

  deleteMessage(roomId, messageId) {
    return this.request('DELETE', `/rooms/${roomId}/messages/${messageId}`);
  }

  react(roomId, messageId, emoji) {
    return this.request('PUT', `/rooms/${roomId}/messages/${messageId}/reactions/${encodeURIComponent(emoji)}`);
  }

  /** A WebSocket session with this client's token. */
  session(options = {}) {
    return new NebulaSession({ baseUrl: this.baseUrl, token: this.token, ...options });
  }
}

const OPEN = 1;

function randomId() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/**
 * One room's state: the timeline in `seq` order (each message in its highest-`rev` version) and
 * the position to resume from.
 */
class RoomState {
  constructor(roomId, { sinceSeq = null, sinceRev = null } = {}) {
    this.roomId = roomId;
    this.seq = sinceSeq; // highest seq applied in order (null: start from now)
    this.rev = sinceRev; // the rev it is safe to resume from
    this.subscribed = false;
    this.lastSeqAtSubscribe = 0;
    this.byId = new Map();
    this.timeline = [];
    this.early = new Map(); // seq → message that arrived ahead of its predecessors (acks)
  }
}

/**
 * A WebSocket session. Events (`addEventListener`):
 * - `message` `{roomId, message}`: a new message, once, in `seq` order per room;
 * - `update` `{roomId, message}`: a newer version (`rev`) of a message (edit, delete, reaction);
 * - `timeline` `{roomId, messages}`: the room's timeline changed;
 * - `event` `{event}`: every server event as received (typing, presence, member.*, read, calls…);
 * - `subscribed` `{roomId, event}`, `open`, `error` `{event}`;
 * - `close` `{code, reason, retryAt}`: the socket closed (or never opened); `retryAt` is when
 *   the next attempt starts (epoch ms), null once `close()` was called.
 */
export class NebulaSession extends EventTarget {
  constructor({
    baseUrl,
    token,
    WebSocket: WebSocketImpl = globalThis.WebSocket,
    minBackoffMs = 200,
    maxBackoffMs = 10_000,
    pingIntervalMs = 20_000,
    connectTimeoutMs = 10_000,
    random = Math.random,
  } = {}) {
    super();
    if (!WebSocketImpl) throw new Error('no WebSocket: pass one as the `WebSocket` option (e.g. the `ws` package)');
    this.url = String(baseUrl).replace(/\/$/, '').replace(/^http/, 'ws');
    this.token = token;
    this.WebSocket = WebSocketImpl;
    this.minBackoffMs = minBackoffMs;
    this.maxBackoffMs = maxBackoffMs;
    this.pingIntervalMs = pingIntervalMs;
    this.connectTimeoutMs = connectTimeoutMs;
    this.random = random;
    this.rooms = new Map();
    this.pending = new Map(); // client_msg_id → {roomId, frame, resolve, reject, sent}
    this.socket = null;
    this.closed = false;
    this.attempt = 0;
    this.timer = null;
    this.pinger = null;
    this.heard = true;
    this.connections = 0;
  }

  /** Opens the socket (and reopens it after every disconnect until `close()`). */
  connect() {
    this.closed = false;
    this.#open();
    return this;
  }

  /** Whether the socket is open now. */
  get isOpen() {
    return this.socket?.readyState === OPEN;
  }

  /**
   * Drops the current socket (if any) and connects again at once, skipping the backoff wait:
   * after the network came back, or with a new `token`.
   */
  reconnect() {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.attempt = 0;
    const old = this.socket;
    if (old) {
      this.#lost(old, 4000, 'reconnect', { retry: false });
      old.close(4000, 'reconnect');
    }
    this.#open();
  }

  /** Closes for good: no more reconnects; pending sends are rejected. */
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    const socket = this.socket;
    if (socket) {
      this.#lost(socket, 1000, 'closed');
      socket.close(1000);
    }
    for (const [id, send] of this.pending) {
      send.reject(new Error('session closed'));
      this.pending.delete(id);
    }
  }

  /** Starts following a room; `sinceSeq`/`sinceRev` resume from a stored position (0 = all). */
  subscribe(roomId, { sinceSeq = null, sinceRev = null } = {}) {
    if (!this.rooms.has(roomId)) this.rooms.set(roomId, new RoomState(roomId, { sinceSeq, sinceRev }));
    this.#subscribe(this.rooms.get(roomId));
  }

  unsubscribe(roomId) {
    this.rooms.delete(roomId);
    this.#frame({ type: 'unsubscribe', room_id: roomId });
  }

  /** The room's messages in `seq` order, each in its latest version. */
  timeline(roomId) {
    return this.rooms.get(roomId)?.timeline.slice() ?? [];
  }

  /** The position to store for a later `subscribe(roomId, position)`. */
  position(roomId) {
    const room = this.rooms.get(roomId);
    return room ? { sinceSeq: room.seq, sinceRev: room.rev } : null;
  }

  /**
   * Sends a message; resolves with the stored message on `message.ack`. Retried with the same
   * `client_msg_id` after a disconnect, so it is stored once. `attachments`: ids of media
   * uploaded with `uploadMedia`.
   */
  send(roomId, content, { clientMsgId = randomId(), replyTo, attachments } = {}) {
    const frame = { type: 'message.send', room_id: roomId, content, client_msg_id: clientMsgId };
    if (replyTo) frame.reply_to = replyTo;
    if (attachments?.length) frame.attachments = attachments;
    return new Promise((resolve, reject) => {
      this.pending.set(clientMsgId, { roomId, frame, resolve, reject });
      const room = this.rooms.get(roomId);
      if (!room || room.subscribed) this.#frame(frame);
    });
  }

  typing(roomId, state) {
    this.#frame({ type: 'typing', room_id: roomId, state });
  }

  read(roomId, seq) {
    this.#frame({ type: 'read', room_id: roomId, seq });
  }

  /** Sends any client event (calls, …) if the socket is open; returns whether it was. */
  sendEvent(event) {
    return this.#frame(event);
  }

  #emit(type, detail) {
    this.dispatchEvent(Object.assign(new Event(type), { detail }));
  }

  #frame(event) {
    if (this.socket?.readyState !== OPEN) return false;
    this.socket.send(JSON.stringify(event));
    return true;
  }

  #open() {
    if (this.closed) return;
    const socket = new this.WebSocket(`${this.url}/ws?token=${encodeURIComponent(this.token)}`);
    this.socket = socket;
    // A connect that hangs (packets into the void) counts as a failure.
    const connectTimer = setTimeout(() => {
      if (socket !== this.socket || socket.readyState === OPEN) return;
      this.#lost(socket, 4000, 'connect timeout');
      socket.close(4000, 'connect timeout');
    }, this.connectTimeoutMs);
    socket.onopen = () => {
      clearTimeout(connectTimer);
      if (socket !== this.socket) return;
      this.attempt = 0;
      this.connections += 1;
      this.heard = true;
      clearInterval(this.pinger);
      // A silent network (no close, no data) is noticed by an unanswered ping.
      this.pinger = setInterval(() => {
        if (!this.heard) {
          socket.close(4000, 'no answer');
          this.#lost(socket, 4000, 'no answer');
          return;
        }
        this.heard = false;
        this.#frame({ type: 'ping' });
      }, this.pingIntervalMs);
      this.#emit('open', {});
      for (const room of this.rooms.values()) this.#subscribe(room);
      // Sends to rooms not subscribed here go out at once; the others after `subscribed`.
      for (const send of this.pending.values()) {
        if (!this.rooms.has(send.roomId)) this.#frame(send.frame);
      }
    };
    socket.onmessage = (message) => {
      if (socket !== this.socket) return;
      this.heard = true;
      let event;
      try {
        event = JSON.parse(typeof message.data === 'string' ? message.data : String(message.data));
      } catch {
        return;
      }
      this.#handle(event);
    };
    socket.onclose = (close) => {
      clearTimeout(connectTimer);
      this.#lost(socket, close.code, close.reason);
    };
    socket.onerror = () => {
      /* followed by close */
    };
  }

  #lost(socket, code, reason, { retry = true } = {}) {
    if (socket !== this.socket) return;
    this.socket = null;
    clearInterval(this.pinger);
    for (const room of this.rooms.values()) room.subscribed = false;
    let retryAt = null;
    if (!this.closed && retry) {
      // Exponential backoff with jitter (half to all of the step), so clients spread out.
      const step = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** this.attempt);
      this.attempt = Math.min(this.attempt + 1, 20);
      const delay = step / 2 + (this.random() * step) / 2;
      retryAt = Date.now() + delay;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.#open(), delay);
    }
    this.#emit('close', { code, reason: String(reason ?? ''), retryAt: this.closed ? null : retryAt });
  }

  #subscribe(room) {
    const frame = { type: 'subscribe', room_id: room.roomId };
    if (room.seq !== null) frame.since_seq = room.seq;
    if (room.rev !== null && room.seq !== null) frame.since_rev = room.rev;
    this.#frame(frame);
  }

  #handle(event) {
    this.#emit('event', { event });
    switch (event.type) {
      case 'subscribed':
        return this.#subscribed(event);
      case 'message.new':
        return this.#newMessage(event.message, false);
      case 'message.ack':
        return this.#ack(event);
      case 'message.updated':
        return this.#updated(event.message);
      case 'error':
        return this.#error(event);
      default:
    }
  }

  #subscribed(event) {
    const room = this.rooms.get(event.room_id);
    if (!room) return;
    room.subscribed = true;
    room.lastSeqAtSubscribe = event.last_seq;
    if (room.seq === null) {
      // Following from now: the server replays nothing.
      room.seq = event.last_seq;
      room.rev = event.last_rev;
    } else if (room.rev === null) {
      room.rev = 0;
    }
    this.#emit('subscribed', { roomId: room.roomId, event });
    for (const send of this.pending.values()) {
      if (send.roomId === room.roomId) this.#frame(send.frame);
    }
  }

  #keep(room, message) {
    const known = room.byId.get(message.id);
    if (known && known.rev >= message.rev) return false;
    room.byId.set(message.id, message);
    if (known) {
      const index = room.timeline.findIndex((m) => m.id === message.id);
      if (index >= 0) room.timeline[index] = message;
    }
    return true;
  }

  #newMessage(message, fromAck) {
    const room = this.rooms.get(message.room_id);
    if (!room || room.seq === null) return;
    if (message.seq <= room.seq) {
      // A repeat (a replay after a resume, or the ack of our own message): maybe newer.
      if (this.#keep(room, message) && room.timeline.some((m) => m.id === message.id)) {
        this.#emit('update', { roomId: room.roomId, message });
        this.#emit('timeline', { roomId: room.roomId, messages: room.timeline });
      }
      return;
    }
    // Ahead of its predecessors (an ack overtaking message.new): applied when they come.
    const early = room.early.get(message.seq);
    if (!early || early.rev < message.rev) room.early.set(message.seq, message);
    if (message.seq > room.seq + 1) return;
    let applied = false;
    for (let next = room.early.get(room.seq + 1); next; next = room.early.get(room.seq + 1)) {
      room.early.delete(next.seq);
      room.seq = next.seq;
      // A live message (past the replay) moves the resume rev; replayed ones must not (their
      // current rev can be above changes of older messages still to be replayed).
      if (!fromAck && next.seq > room.lastSeqAtSubscribe && room.subscribed) {
        room.rev = Math.max(room.rev ?? 0, next.rev);
      }
      const known = room.byId.get(next.id);
      if (!known || known.rev < next.rev) room.byId.set(next.id, next);
      const current = room.byId.get(next.id);
      room.timeline.push(current);
      applied = true;
      this.#emit('message', { roomId: room.roomId, message: current });
    }
    if (applied) this.#emit('timeline', { roomId: room.roomId, messages: room.timeline });
  }

  #ack(event) {
    const send = event.client_msg_id ? this.pending.get(event.client_msg_id) : null;
    if (send) {
      this.pending.delete(event.client_msg_id);
      send.resolve(event.message);
    }
    this.#newMessage(event.message, true);
  }

  #updated(message) {
    const room = this.rooms.get(message.room_id);
    if (!room) return;
    // Updates come in rev order: every change up to this rev has been seen.
    room.rev = Math.max(room.rev ?? 0, message.rev);
    // (An update of a message whose message.new is still to come is kept for it.)
    if (this.#keep(room, message) && message.seq <= (room.seq ?? 0)) {
      this.#emit('update', { roomId: room.roomId, message: room.byId.get(message.id) });
      if (room.timeline.some((m) => m.id === message.id)) {
        this.#emit('timeline', { roomId: room.roomId, messages: room.timeline });
      }
    }
  }

  #error(event) {
    this.#emit('error', { event });
    const send = event.ref ? this.pending.get(event.ref) : null;
    if (!send) return;
    if (event.code === 'rate_limited') {
      setTimeout(() => this.#frame(send.frame), 1000);
      return;
    }
    this.pending.delete(event.ref);
    send.reject(Object.assign(new Error(`${event.code}: ${event.message}`), { code: event.code }));
  }
}
