// store.js — what the client knows about one room. No DOM here.
//
// Messages are keyed by `seq` (the server's per-room 1, 2, 3 … with no gaps), so a message
// that arrives twice (live and in a replay, or in a gap fill) is stored once, and the list is
// always sorted by seq whatever order things arrive in.
//
// `contigTop` is the highest seq up to which the loaded window has no hole: everything in
// [lowSeq, contigTop] is here. It is what we pass as `since_seq` when (re)subscribing, so a
// replay after a reconnect brings exactly what is missing; anything above it that is already
// here is deduplicated. When a message arrives above contigTop + 1 we have a gap and fetch it
// with `after_seq`.
//
// Messages also change (edits, deletes, reactions). Each version carries the room's `rev` at
// that change; of two versions of one message the one with the higher `rev` wins, whatever
// order they arrive in. `sinceRev` is the rev up to which every change of the room is known:
// it is what we pass as `since_rev` when resuming, so the server replays the changes missed.

export class RoomState {
  constructor(room) {
    this.room = room;
    /** @type {Map<number, object>} seq → message */
    this.messages = new Map();
    /** seqs ascending, mirrors the rendered list */
    this.order = [];
    this.loaded = false; // the newest page has been fetched
    this.loading = null; // promise while fetching it
    this.loadError = false;
    this.early = []; // live messages that arrived while the newest page was loading
    this.earlyVersions = []; // and changed messages (`message.updated`)
    this.loadingOlder = false;
    this.hasMoreOlder = true;
    this.lowSeq = null; // lowest seq loaded (null: nothing loaded)
    this.contigTop = 0;
    this.lastSeq = null; // newest seq the server told us about (subscribed/message.new)
    this.filling = false;
    this.subscribed = false;
    this.subscribing = false;
    this.subscribeSince = null; // since_seq of the last subscribe sent
    this.subscribeResumed = false; // and whether it had since_rev
    this.sinceRev = null; // every change of the room up to this rev is known (null: none yet)
    this.replayUntil = null; // last_rev of a resumed subscription whose replay may still be running
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
    this.unreadSeq = Math.max(this.unreadSeq, this.lastSeq ?? 0);
  }

  get id() {
    return this.room.id;
  }

  get maxSeq() {
    return this.order.length ? this.order[this.order.length - 1] : 0;
  }

  has(seq) {
    return this.messages.has(seq);
  }

  /**
   * Add a message (`fromHistory`: it comes from a history page, read downwards). Returns the index it now has in `order`, or -1 if it was already there
   * (or is not for this room).
   */
  insert(msg, fromHistory = false) {
    if (!msg || msg.room_id !== this.id || !Number.isInteger(msg.seq)) return -1;
    if (this.messages.has(msg.seq)) return -1;
    const ref = this.refs.get(msg.id);
    this.refs.delete(msg.id);
    this.messages.set(msg.seq, ref && ref.rev > msg.rev ? ref : msg);
    const idx = upperBound(this.order, msg.seq);
    this.order.splice(idx, 0, msg.seq);
    if (this.lastSeq === null || msg.seq > this.lastSeq) this.lastSeq = msg.seq;
    if (fromHistory && (this.lowSeq === null || msg.seq < this.lowSeq)) {
      // Only history pages (newest page, older pages) extend the window downwards, and each
      // is contiguous: what lies below their first message is "older history", not a hole.
      this.lowSeq = msg.seq;
      if (this.contigTop < msg.seq - 1) this.contigTop = msg.seq - 1;
    }
    this.advanceContig();
    return idx;
  }

  /**
   * Another version of a message held here (in the window or as a reply target): keep the one
   * with the higher `rev`. Returns true when `msg` replaced what was held.
   */
  update(msg) {
    if (!msg || msg.room_id !== this.id) return false;
    const held = this.get(msg.id, msg.seq);
    if (!held || !(msg.rev > held.rev)) return false;
    if (this.messages.get(msg.seq) === held) this.messages.set(msg.seq, msg);
    else this.refs.set(msg.id, msg);
    return true;
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

  /**
   * `subscribed` arrived. `resumed`: it was sent with `since_rev`, so the server now replays
   * `message.new` (seq order, current versions) then `message.updated` (rev order) up to
   * `lastRev`; until that replay is provably over, `sinceRev` must stay where it was.
   */
  noteSubscribed(lastRev, resumed) {
    if (resumed && lastRev > (this.sinceRev ?? 0)) {
      this.replayUntil = lastRev;
    } else {
      this.replayUntil = null;
      this.sinceRev = Math.max(this.sinceRev ?? 0, lastRev);
    }
  }

  /**
   * A `message.new` or `message.updated` from this room's stream. Live events come in rev
   * order, so once one is live every change up to its rev has been seen. A replayed
   * `message.new` may carry a rev above changes still to be replayed: the replay is over only
   * with the `message.updated` at `replayUntil`, or any event above it.
   */
  noteStreamRev(rev, updated) {
    if (!Number.isInteger(rev)) return;
    if (this.replayUntil !== null) {
      if (rev < this.replayUntil || (rev === this.replayUntil && !updated)) return;
      this.replayUntil = null;
    }
    if (rev > (this.sinceRev ?? 0)) this.sinceRev = rev;
  }

  /** The first message of someone else after my read position, if loaded: where "New messages" goes. */
  firstUnreadSeq(meId, readSeq) {
    for (let i = upperBound(this.order, readSeq); i < this.order.length; i++) {
      const m = this.messages.get(this.order[i]);
      if (m.sender_id !== meId && !m.deleted_at) return m.seq;
    }
    return null;
  }

  advanceContig() {
    while (this.messages.has(this.contigTop + 1)) this.contigTop += 1;
  }

  /** Is something above contigTop (a hole below it)? */
  get hasGap() {
    return this.maxSeq > this.contigTop;
  }

  /** The seq to resubscribe with: only for rooms whose messages we hold. */
  get sinceSeq() {
    return this.loaded ? this.contigTop : null;
  }

  /** Forget messages (e.g. on leave). */
  reset() {
    this.messages.clear();
    this.order = [];
    this.loaded = false;
    this.loading = null;
    this.hasMoreOlder = true;
    this.lowSeq = null;
    this.contigTop = 0;
    this.refs.clear();
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
