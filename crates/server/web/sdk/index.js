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
    return new NebulaSession({ baseUrl: this.baseUrl, token: this.token, client: this, ...options });
  }
}

const OPEN = 1;

function randomId() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/**
 * One room's state: the timeline (a window of consecutive `seq`s, each message in its
 * highest-`rev` version) and the position to resume from. Seqs start at 1 and have no gaps, so
 * the window's lowest seq says exactly whether older history exists.
 */
class RoomState {
  constructor(roomId, { sinceSeq = null, sinceRev = null } = {}) {
    this.roomId = roomId;
    this.seq = sinceSeq; // highest seq applied in order (null: start from now)
    this.rev = sinceRev; // the rev it is safe to resume from
    this.subscribed = false;
    this.subscribing = false; // a `subscribe` is out, its answer not in yet
    this.lastSeqAtSubscribe = 0;
    this.byId = new Map();
    this.timeline = [];
    this.early = new Map(); // seq → message that arrived ahead of its predecessors (acks, REST)
    this.sentPosition = false; // the `subscribe` out carried `since_seq`
    this.waiters = []; // resolved when the `subscribe` out is answered or the socket drops
    this.older = null; // the older page being fetched (a promise)
    this.filling = null; // the REST fetch of a gap (a promise)
  }

  /** The lowest seq of the window (`seq + 1` while it is empty), or null before any position. */
  get lowSeq() {
    if (this.timeline.length) return this.timeline[0].seq;
    return this.seq === null ? null : this.seq + 1;
  }

  settle() {
    this.subscribing = false;
    for (const resolve of this.waiters.splice(0)) resolve();
  }
}

/**
 * A WebSocket session. Events (`addEventListener`):
 * - `message` `{roomId, message}`: a new message, once, in `seq` order per room;
 * - `update` `{roomId, message}`: a newer version (`rev`) of a message (edit, delete, reaction);
 * - `timeline` `{roomId, messages}`: the room's timeline changed (new, changed or older messages);
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
    client = null,
  } = {}) {
    super();
    if (!WebSocketImpl) throw new Error('no WebSocket: pass one as the `WebSocket` option (e.g. the `ws` package)');
    this.url = String(baseUrl).replace(/\/$/, '').replace(/^http/, 'ws');
    // History pages and gap fills go over REST: through `client` (anything with NebulaClient's
    // `messages(roomId, query)`), else a NebulaClient of this session's URL and token.
    this.client = client;
    this.httpUrl = String(baseUrl).replace(/\/$/, '').replace(/^ws/, 'http');
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
    this.rooms.get(roomId)?.settle();
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
   * What the session holds of a room: `seq` (the newest message applied in order, null before
   * the first `subscribed` or history page), `lowSeq` (the oldest one held), `hasMoreOlder`
   * (whether messages exist below it: `loadOlder` fetches them), `subscribed`; null for a room
   * not followed.
   */
  roomState(roomId) {
    const room = this.rooms.get(roomId);
    if (!room) return null;
    const lowSeq = room.lowSeq;
    return { seq: room.seq, rev: room.rev, lowSeq, hasMoreOlder: lowSeq === null || lowSeq > 1, subscribed: room.subscribed };
  }

  /**
   * Fetches the room's newest page over REST (`limit` messages) into its timeline and resolves
   * with the timeline. Before any subscription it also sets the position to resume from (the
   * page's newest seq, and its highest rev: every change after it will be replayed); after one,
   * the page only fills in what lies below the live messages, and the resume position keeps
   * coming from the socket. A `subscribe` still unanswered is waited for first, so the page
   * cannot predate the subscription.
   */
  async loadLatest(roomId, { limit = 50 } = {}) {
    const room = this.#followed(roomId);
    for (let attempt = 0; ; attempt++) {
      if (room.subscribing) await new Promise((resolve) => room.waiters.push(resolve));
      const data = await this.#messages(roomId, { page: 1, page_size: limit });
      if (this.rooms.get(roomId) !== room) return [];
      const page = (data?.messages ?? []).slice().sort((a, b) => a.seq - b.seq);
      // A subscription went out (the socket opened) during the fetch: the page may be older
      // than it. Fetch again once it is answered.
      if (room.subscribing && attempt < 3) continue;
      if (room.seq === null) this.#seed(room, page);
      else this.#merge(room, page);
      return room.timeline.slice();
    }
  }

  /**
   * Fetches the `limit` messages just below the timeline (`before_seq`) into it; resolves with
   * how many were added (0 at the start of the room). Concurrent calls share one fetch.
   */
  loadOlder(roomId, { limit = 50 } = {}) {
    const room = this.#followed(roomId);
    if (room.older) return room.older;
    const low = room.lowSeq;
    if (low === null || low <= 1) return Promise.resolve(0);
    room.older = (async () => {
      try {
        const data = await this.#messages(roomId, { before_seq: low, limit });
        if (this.rooms.get(roomId) !== room || room.lowSeq !== low) return 0;
        const page = (data?.messages ?? []).filter((m) => m.seq < low).sort((a, b) => a.seq - b.seq);
        return this.#prepend(room, page);
      } finally {
        room.older = null;
      }
    })();
    return room.older;
  }

  /**
   * A message obtained over REST (posted while the socket was down, an edit's answer, one
   * fetched on its own): applied like one from the socket, by `seq` and `rev`, without moving
   * the position the session resumes from. A new one beyond a hole waits for the hole to be
   * filled: by the replay of the next subscription, or over REST when the room is not
   * subscribed now.
   */
  apply(message) {
    const room = message && this.rooms.get(message.room_id);
    if (!room || room.seq === null || !Number.isInteger(message.seq)) return;
    this.#newMessage(message, true);
    if (room.early.size && !room.subscribed) this.#fillGap(room);
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

  /** Sends a read marker; returns whether the socket was open to take it. */
  read(roomId, seq) {
    return this.#frame({ type: 'read', room_id: roomId, seq });
  }

  /** Sends any client event (calls, …) if the socket is open; returns whether it was. */
  sendEvent(event) {
    return this.#frame(event);
  }

  #followed(roomId) {
    const room = this.rooms.get(roomId);
    if (!room) throw new Error(`not following room ${roomId}: subscribe(roomId) first`);
    return room;
  }

  #messages(roomId, query) {
    if (this.client) return this.client.messages(roomId, query);
    return new NebulaClient({ baseUrl: this.httpUrl, token: this.token }).messages(roomId, query);
  }

  /** The first page of a room never followed: it gives the position to resume from. */
  #seed(room, page) {
    for (const m of page) this.#keep(room, m);
    room.timeline = page.map((m) => room.byId.get(m.id));
    room.seq = page.length ? page[page.length - 1].seq : 0;
    room.rev = page.reduce((max, m) => Math.max(max, m.rev ?? 0), 0);
    // History, not news: no `message` events.
    this.#emit('timeline', { roomId: room.roomId, messages: room.timeline });
  }

  /** A newest page for a room already followed: older ones below, newer ones in order. */
  #merge(room, page) {
    const low = room.lowSeq;
    const below = page.filter((m) => m.seq < low);
    // Only a run that reaches down from the window keeps it free of holes.
    const run = [];
    for (let i = below.length - 1; i >= 0 && below[i].seq === low - 1 - run.length; i--) run.unshift(below[i]);
    const added = this.#prepend(room, run, { quiet: true });
    for (const m of page) if (m.seq >= low) this.#newMessage(m, true);
    if (added) this.#emit('timeline', { roomId: room.roomId, messages: room.timeline });
  }

  /** Older messages (ascending, ending just below the window): added at its start. */
  #prepend(room, page, { quiet = false } = {}) {
    const low = room.lowSeq;
    if (!page.length || page[page.length - 1].seq !== low - 1) return 0;
    for (let i = 1; i < page.length; i++) if (page[i].seq !== page[i - 1].seq + 1) return 0;
    for (const m of page) this.#keep(room, m);
    room.timeline.unshift(...page.map((m) => room.byId.get(m.id)));
    if (!quiet) this.#emit('timeline', { roomId: room.roomId, messages: room.timeline });
    return page.length;
  }

  /** Messages beyond a hole, with no replay coming: fetch the hole over REST (`after_seq`). */
  #fillGap(room) {
    if (room.filling) return;
    room.filling = (async () => {
      try {
        for (let guard = 0; guard < 100 && room.early.size && !room.subscribed && this.rooms.get(room.roomId) === room; guard++) {
          const from = room.seq;
          const data = await this.#messages(room.roomId, { after_seq: from, limit: 100 });
          for (const m of data?.messages ?? []) this.#newMessage(m, true);
          if (room.seq === from) break;
        }
      } catch {
        /* the next subscription's replay brings them */
      } finally {
        room.filling = null;
      }
    })();
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
    for (const room of this.rooms.values()) {
      room.subscribed = false;
      room.settle();
    }
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
    if (this.#frame(frame)) {
      room.subscribing = true;
      room.sentPosition = frame.since_seq !== undefined;
    }
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
    if (room.seq !== null && !room.sentPosition) {
      // Asked from now, but a history page set a position meanwhile: ask again from it, so
      // what came between the page and now is replayed.
      room.sentPosition = true;
      this.#subscribe(room);
      return;
    }
    room.subscribed = true;
    room.settle();
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
    // `streamed`: it came as the room's own `message.new` (not an ack or a REST answer).
    const early = room.early.get(message.seq);
    const streamed = !fromAck || !!early?.streamed;
    if (!early || early.message.rev < message.rev) room.early.set(message.seq, { message, streamed });
    else early.streamed = streamed;
    if (message.seq > room.seq + 1) return;
    let applied = false;
    for (let entry = room.early.get(room.seq + 1); entry; entry = room.early.get(room.seq + 1)) {
      const next = entry.message;
      room.early.delete(next.seq);
      room.seq = next.seq;
      // A live message (past the replay) moves the resume rev; replayed ones must not (their
      // current rev can be above changes of older messages still to be replayed), nor acks and
      // REST answers (changes before them may still be on their way in the stream).
      if (entry.streamed && next.seq > room.lastSeqAtSubscribe && room.subscribed) {
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
    // Updates come in rev order within a subscription: every change up to this rev has been
    // seen (not so before its `subscribed`, when a replay may still have to come).
    if (room.subscribed) room.rev = Math.max(room.rev ?? 0, message.rev);
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
    // A refused subscription (not a member, …) is answered too.
    if (event.ref) this.rooms.get(event.ref)?.settle();
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
