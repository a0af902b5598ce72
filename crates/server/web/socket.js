// socket.js — the page's WebSocket, through the SDK's session (sdk/index.js: `NebulaSession`),
// which connects (`GET /ws?token=`), reconnects after network losses and server restarts with
// exponential backoff and jitter (0.5 s doubling to a 15 s cap, each delay drawn from 50–100 %
// of the step), drops a half-open connection by an unanswered ping, and gives up on a connect
// that hangs. This module adds what the page needs around it:
//
// States: 'connecting' (first attempt), 'online', 'reconnecting' (waiting for the next try, with
// its time, or trying again), 'offline' (stopped, e.g. logged out). The session lives as long
// as this object (one sign-in): it holds every followed room's timeline and resubscribes them
// with `since_seq`/`since_rev` after every (re)open, so the server replays what was missed;
// `session` is handed to the owner (feed.js listens to its timelines). A close with 4001 (token expired or revoked) stops the session and tells the
// owner, and so does (for a REST check) an upgrade that was refused; the browser coming back
// online or the tab becoming visible skips the backoff wait.

import { api } from './api.js';
import { NebulaSession } from './sdk/index.js';

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;
const PING_EVERY_MS = 20_000;
const CONNECT_TIMEOUT_MS = 10_000;

/** Close code the server uses when the token expires or is revoked. */
export const CLOSE_TOKEN_EXPIRED = 4001;

export class ChatSocket {
  /**
   * @param {object} o
   * @param {() => string|null} o.getToken
   * @param {(event: object) => void} o.onEvent      every server event, parsed
   * @param {(state: string, info: object) => void} o.onState
   * @param {() => void} o.onOpen                     socket open: (re)subscribe now
   * @param {() => void} o.onClose                    an open socket closed
   * @param {(code: number, token: string|null) => void} o.onAuthLost  4001, or the upgrade was
   *   refused (check auth); `token`: the one this socket used (perhaps replaced since)
   */
  constructor({ getToken, onEvent, onState, onOpen, onClose, onAuthLost }) {
    this.getToken = getToken;
    this.onEvent = onEvent;
    this.onStateCb = onState;
    this.onOpen = onOpen;
    this.onClose = onClose;
    this.onAuthLost = onAuthLost;
    // One session per sign-in, kept across stop/start (a new token after a password change):
    // the rooms' timelines and resume positions live in it.
    this.session = this.newSession();
    this.state = 'offline';
    this.stopped = true;
    this.opened = false; // the current attempt reached `open`
    this.connToken = null;

    this.handleOnline = () => {
      if (!this.stopped && !this.isOpen) this.reconnectNow();
    };
    this.handleVisible = () => {
      if (document.visibilityState === 'visible' && !this.stopped && !this.isOpen && this.state === 'reconnecting') {
        this.reconnectNow();
      }
    };
  }

  get isOpen() {
    return !!this.session?.isOpen;
  }

  start() {
    if (!this.stopped) return;
    const token = this.getToken();
    if (!token) {
      this.onAuthLost?.(0, null);
      return;
    }
    this.stopped = false;
    this.opened = false;
    this.connToken = token;
    window.addEventListener('online', this.handleOnline);
    document.addEventListener('visibilitychange', this.handleVisible);
    this.session.token = token;
    this.setState('connecting');
    this.session.connect();
  }

  /** Close for good (logout). */
  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.handleOnline);
    document.removeEventListener('visibilitychange', this.handleVisible);
    this.session.close();
    this.setState('offline');
  }

  /** Skip the backoff wait and try now (with the current token). */
  reconnectNow() {
    if (this.stopped) return;
    const token = this.getToken();
    if (!token) return;
    this.connToken = token;
    this.session.token = token;
    this.opened = false;
    this.setState('reconnecting', {});
    this.session.reconnect();
  }

  /**
   * Send a message through the session (re-sent with the same client_msg_id after a reconnect
   * until acknowledged): the promise of its ack, or null when the socket is not open.
   */
  sendMessage(roomId, content, options) {
    if (!this.isOpen || this.stopped) return null;
    return this.session.send(roomId, content, options);
  }

  /** Send one event; false when the socket is not open (the caller decides what to do). */
  send(event) {
    return !this.stopped && !!this.session.sendEvent(event);
  }

  /** Follow a room (once; the session resubscribes it after every reconnect). */
  follow(roomId) {
    if (!this.session.roomState(roomId)) this.session.subscribe(roomId);
  }

  /** Stop following a room and forget its timeline. */
  unfollow(roomId) {
    if (this.session.roomState(roomId)) this.session.unsubscribe(roomId);
  }

  /** Is the room subscribed on the open socket now (live events and sends flow)? */
  subscribed(roomId) {
    return this.isOpen && !!this.session.roomState(roomId)?.subscribed;
  }

  setState(state, info = {}) {
    this.state = state;
    this.onStateCb?.(state, info);
  }

  newSession() {
    const session = new NebulaSession({
      baseUrl: location.origin,
      token: null,
      WebSocket,
      // History pages through the page's REST calls (a 401 there ends the sign-in).
      client: { messages: (roomId, query) => api.messages(roomId, query) },
      minBackoffMs: BASE_DELAY_MS,
      maxBackoffMs: MAX_DELAY_MS,
      pingIntervalMs: PING_EVERY_MS,
      connectTimeoutMs: CONNECT_TIMEOUT_MS,
    });
    session.addEventListener('open', () => {
      if (this.session !== session) return;
      this.opened = true;
      this.setState('online');
      try {
        this.onOpen?.();
      } catch (e) {
        console.error(e);
      }
    });
    session.addEventListener('event', ({ detail: { event } }) => {
      if (this.session !== session || !event || typeof event.type !== 'string' || event.type === 'pong') return;
      try {
        this.onEvent?.(event);
      } catch (e) {
        console.error('event handler failed', event.type, e);
      }
    });
    session.addEventListener('close', ({ detail: { code, retryAt } }) => {
      if (this.session !== session) return;
      const wasOpen = this.opened;
      this.opened = false;
      if (wasOpen) {
        try {
          this.onClose?.();
        } catch (e) {
          console.error(e);
        }
      }
      if (this.stopped) return;
      if (code === CLOSE_TOKEN_EXPIRED) {
        const token = this.connToken;
        this.stop();
        this.onAuthLost?.(code, token);
        return;
      }
      if (retryAt) this.setState('reconnecting', { retryAt });
      // An upgrade refused with 401 looks like 1006 without an open: let the owner check the
      // token over REST (a 401 there logs out), and keep retrying meanwhile.
      if (!wasOpen) this.onAuthLost?.(code, this.connToken);
    });
    return session;
  }
}
