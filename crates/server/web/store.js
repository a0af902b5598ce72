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
    this.loadingOlder = false;
    this.hasMoreOlder = true;
    this.lowSeq = null; // lowest seq loaded (null: nothing loaded)
    this.contigTop = 0;
    this.lastSeq = null; // newest seq the server told us about (subscribed/message.new)
    this.filling = false;
    this.subscribed = false;
    this.subscribing = false;
    this.subscribeSince = null; // since_seq of the last subscribe sent
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
    this.unread = 0;
    this.lastReadSent = 0;
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
    this.messages.set(msg.seq, msg);
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
