// socket.js — one WebSocket (`GET /ws?token=`) that survives network losses and server restarts.
//
// States: 'connecting' (first attempt), 'online', 'reconnecting' (waiting for the next try or
// trying again), 'offline' (stopped, e.g. logged out). After every (re)open the owner gets
// `onOpen` and re-subscribes its rooms with `since_seq`, so the server replays what was missed.
//
// Reconnects use exponential backoff with jitter (0.5 s doubling to a 15 s cap, each delay
// drawn from [50 %, 100 %] of the step), so a restarted server is not hit by every client at
// the same instant. A heartbeat `ping` every 20 s, with no frame back within 10 s, drops a
// half-open connection that the browser would otherwise keep believing in.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;
const PING_EVERY_MS = 20_000;
const PONG_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 10_000;

/** Close code the server uses when the token expires. */
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
    this.ws = null;
    this.state = 'offline';
    this.attempt = 0;
    this.everOpened = false;
    this.stopped = true;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.connectTimer = null;
    this.nextRetryAt = null;
    this.lastFrameAt = 0;
    this.connToken = null;

    this.handleOnline = () => {
      if (!this.stopped && !this.isOpen) this.reconnectNow();
    };
    this.handleVisible = () => {
      if (document.visibilityState === 'visible' && !this.stopped && !this.isOpen && this.retryTimer) {
        this.reconnectNow();
      }
    };
  }

  get isOpen() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempt = 0;
    this.everOpened = false;
    window.addEventListener('online', this.handleOnline);
    document.addEventListener('visibilitychange', this.handleVisible);
    this.connect();
  }

  /** Close for good (logout). */
  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.handleOnline);
    document.removeEventListener('visibilitychange', this.handleVisible);
    this.clearTimers();
    if (this.ws) this.abandon(this.ws, 1000, 'bye');
    this.ws = null;
    this.setState('offline');
  }

  /** Skip the backoff wait and try now. */
  reconnectNow() {
    if (this.stopped) return;
    if (this.ws && this.ws.readyState === WebSocket.CONNECTING) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.ws) this.abandon(this.ws, 4000, 'reconnect');
    this.ws = null;
    this.connect();
  }

  /** Send one event; false when the socket is not open (the caller decides what to do). */
  send(event) {
    if (!this.isOpen) return false;
    try {
      this.ws.send(JSON.stringify(event));
      return true;
    } catch {
      return false;
    }
  }

  setState(state, info = {}) {
    this.state = state;
    this.onStateCb?.(state, info);
  }

  clearTimers() {
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    clearTimeout(this.connectTimer);
    this.retryTimer = this.pingTimer = this.pongTimer = this.connectTimer = null;
  }

  url(token) {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}/ws?token=${encodeURIComponent(token)}`;
  }

  connect() {
    if (this.stopped) return;
    const token = this.getToken();
    if (!token) {
      this.onAuthLost?.(0, null);
      return;
    }
    this.connToken = token;
    this.setState(this.everOpened || this.attempt > 0 ? 'reconnecting' : 'connecting', {
      attempt: this.attempt,
    });
    let ws;
    try {
      ws = new WebSocket(this.url(token));
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    let opened = false;

    // A connect that hangs (SYN into the void) counts as a failure.
    this.connectTimer = setTimeout(() => {
      if (this.ws === ws && ws.readyState === WebSocket.CONNECTING) {
        this.abandon(ws, 4000, 'connect timeout');
        this.afterClose(ws, false, 1006);
      }
    }, CONNECT_TIMEOUT_MS);

    ws.onopen = () => {
      if (this.ws !== ws) return;
      opened = true;
      clearTimeout(this.connectTimer);
      this.everOpened = true;
      this.lastFrameAt = Date.now();
      this.setState('online');
      this.startHeartbeat(ws);
      try {
        this.onOpen?.();
      } catch (e) {
        console.error(e);
      }
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastFrameAt = Date.now();
      // A frame from the server means the connection really works: reset the backoff.
      this.attempt = 0;
      clearTimeout(this.pongTimer);
      this.pongTimer = null;
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (!data || typeof data.type !== 'string') return;
      if (data.type === 'pong') return;
      try {
        this.onEvent?.(data);
      } catch (e) {
        console.error('event handler failed', data.type, e);
      }
    };
    ws.onerror = () => {
      /* onclose follows and does the work */
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.afterClose(ws, opened, ev.code);
    };
  }

  afterClose(ws, opened, code) {
    if (this.ws === ws) this.ws = null;
    this.clearTimers();
    if (opened) {
      try {
        this.onClose?.();
      } catch (e) {
        console.error(e);
      }
    }
    if (this.stopped) return;
    if (code === CLOSE_TOKEN_EXPIRED) {
      this.stopped = true;
      this.setState('offline');
      this.onAuthLost?.(code, this.connToken);
      return;
    }
    // An upgrade refused with 401 looks like 1006 without an open: let the owner check the
    // token over REST (a 401 there logs out), and keep retrying meanwhile.
    if (!opened) this.onAuthLost?.(code, this.connToken);
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    if (this.stopped) return;
    const step = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempt);
    const delay = Math.round(step * (0.5 + Math.random() * 0.5));
    this.attempt += 1;
    this.nextRetryAt = Date.now() + delay;
    this.setState('reconnecting', { retryAt: this.nextRetryAt, attempt: this.attempt });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  startHeartbeat(ws) {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (this.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - this.lastFrameAt < PING_EVERY_MS / 2) return; // traffic proves liveness
      this.send({ type: 'ping' });
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => {
        if (this.ws !== ws) return;
        this.abandon(ws, 4000, 'heartbeat timeout');
        this.afterClose(ws, true, 1006);
      }, PONG_TIMEOUT_MS);
    }, PING_EVERY_MS);
  }

  /** Detach a socket so its late events are ignored, and close it. */
  abandon(ws, code, reason) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(code, reason);
    } catch {
      /* ignore */
    }
  }
}
