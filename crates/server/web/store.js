// store.js — what the page knows about one room. No DOM here, and no message bookkeeping of its
// own: which messages a room holds, in which version, and where to resume from after a
// disconnect is the SDK session's (sdk/index.js, `NebulaSession`: it subscribes with
// `since_seq`/`since_rev`, drops duplicates, keeps each message's highest-`rev` version and
// loads history pages). `sync()` takes the session's timeline as it is after each `timeline`
// event; the rest is what only the page cares about: reply targets fetched on their own,
// who is online or typing, read markers, my unsent messages, members, unread counts.

export class RoomState {
  constructor(room) {
    this.room = room;
    /** @type {Map<number, object>} seq → message: the session's timeline, as last synced */
    this.messages = new Map();
    /** seqs ascending, mirrors the rendered list */
    this.order = [];
    /** the session's position: newest seq applied in order (null before any), oldest held */
    this.seq = null;
    this.lowSeq = null;
    this.hasMoreOlder = true;
    this.loaded = false; // the newest page has been fetched into the session's timeline
    this.loading = null; // promise while fetching it
    this.loadError = false;
    this.loadingOlder = false;
    /** id → message: reply targets fetched outside the loaded window */
    this.refs = new Map();
    /** user_id → user */
    this.online = new Map();
    /** user_id → {username, until} */
    this.typing = new Map();
    /** user_id → seq (others' read markers) */
    this.reads = new Map();
    /** client_msg_id → {clientMsgId, content, status: 'sending'|'failed', error, timer, via} */
    this.pending = new Map();
    /** member list, when fetched: user_id → member */
    this.members = null;
    this.unread = 0; // messages of others not read, as far as we know
    this.unreadSeq = 0; // `unread` counts messages up to this seq
    this.lastReadSent = 0; // my read position (what the server holds for me)
    this.unreadFrom = null; // my read position when the room was opened (timeline.js)
    this.dividerSeq = undefined; // the message "New messages" precedes: null none, undefined not found yet
    this.applyListing(room);
  }

  get id() {
    return this.room.id;
  }

  /**
   * The session's timeline for this room (`messages`, consecutive seqs ascending) and its
   * position (`roomState(roomId)`). Returns the seqs that were not held before.
   */
  sync(messages, position = null) {
    const added = [];
    const next = new Map();
    for (const m of messages) {
      if (!this.messages.has(m.seq)) added.push(m.seq);
      // A reply target fetched on its own may be newer than the session's copy.
      const ref = this.refs.get(m.id);
      if (ref) this.refs.delete(m.id);
      next.set(m.seq, ref && ref.rev > m.rev ? ref : m);
    }
    this.messages = next;
    this.order = messages.map((m) => m.seq);
    if (position) {
      this.seq = position.seq;
      this.lowSeq = position.lowSeq;
      this.hasMoreOlder = position.hasMoreOlder;
    }
    return added;
  }

  /** A newer version of a message held here (in the window or as a reply target): true when it replaced it. */
  applyVersion(msg) {
    if (!msg || msg.room_id !== this.id) return false;
    const held = this.get(msg.id, msg.seq);
    if (!held || !(msg.rev > held.rev)) return false;
    if (this.messages.get(msg.seq) === held) this.messages.set(msg.seq, msg);
    else this.refs.set(msg.id, msg);
    return true;
  }

  /** A fresh copy of the room from `GET /rooms` (or the room first seen): unread from the server. */
  applyListing(room) {
    this.room = room;
    if (Number.isInteger(room.last_read_seq)) this.lastReadSent = Math.max(this.lastReadSent, room.last_read_seq);
    if (Number.isInteger(room.unread_count) && Number.isInteger(room.last_seq) && room.last_seq >= this.unreadSeq) {
      this.unread = room.unread_count;
      this.unreadSeq = room.last_seq;
    }
  }

  /** A new message of someone else arrived while the room is not being read. */
  countUnread(msg) {
    if (msg.seq <= this.unreadSeq) return false;
    this.unreadSeq = msg.seq;
    if (msg.seq <= this.lastReadSent || msg.deleted_at) return false;
    this.unread += 1;
    return true;
  }

  /** The room is being looked at: nothing in it is unread any more. */
  markSeen() {
    this.unread = 0;
    this.unreadSeq = Math.max(this.unreadSeq, this.seq ?? 0);
  }

  /** The message with that id (and seq, as `reply_to` gives both), if held. */
  get(id, seq) {
    const m = this.messages.get(seq);
    return m && m.id === id ? m : this.refs.get(id) || null;
  }

  /** Keep a message fetched on its own (a reply target outside the window). */
  addRef(msg) {
    if (!msg || msg.room_id !== this.id || this.get(msg.id, msg.seq)) return;
    this.refs.set(msg.id, msg);
  }

  /** The first message of someone else after my read position, if loaded: where "New messages" goes. */
  firstUnreadSeq(meId, readSeq) {
    for (let i = upperBound(this.order, readSeq); i < this.order.length; i++) {
      const m = this.messages.get(this.order[i]);
      if (m.sender_id !== meId && !m.deleted_at) return m.seq;
    }
    return null;
  }

  /** Names of the people typing now (not me), expired entries dropped. */
  typingNames(now = Date.now()) {
    const names = [];
    for (const [uid, t] of this.typing) {
      if (t.until <= now) this.typing.delete(uid);
      else names.push(t.username);
    }
    return names.sort((a, b) => a.localeCompare(b));
  }
}

/** First index whose value is > x (order is ascending). */
export function upperBound(arr, x) {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Count Unicode scalar values, as the server does for its 4000-character limit. */
export function charCount(s) {
  let n = 0;
  for (const _ of s) n += 1;
  return n;
}
