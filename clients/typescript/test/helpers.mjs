// The real server (e2e/lib/server.mjs starts it) and a TCP proxy the tests can cut.
import net from 'node:net';

export { NebulaServer, freePort, uniqueName } from '../../../e2e/lib/server.mjs';

/** Forwards 127.0.0.1:port to target; `cut()` drops every connection and stops listening. */
export class Proxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.sockets = new Set();
    this.server = null;
    this.port = 0;
    /** While set, new connections are dropped at once (clients keep retrying). */
    this.hold = false;
  }

  async start() {
    this.server = net.createServer((client) => {
      if (this.hold) {
        client.destroy();
        return;
      }
      const upstream = net.connect(this.targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise((resolve) => this.server.listen(this.port, '127.0.0.1', resolve));
    this.port = this.server.address().port;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async cut() {
    const closed = new Promise((resolve) => this.server.close(resolve));
    for (const s of this.sockets) s.destroy();
    await closed;
  }
}

/** Resolves when `check()` holds, checked after each of the target's `type` events. */
export function until(target, type, check, timeoutMs = 20_000) {
  return new Promise((resolve, reject) => {
    if (check()) return resolve();
    const timer = setTimeout(() => {
      target.removeEventListener(type, listener);
      reject(new Error(`timed out waiting for ${type}`));
    }, timeoutMs);
    const listener = () => {
      if (!check()) return;
      clearTimeout(timer);
      target.removeEventListener(type, listener);
      resolve();
    };
    target.addEventListener(type, listener);
  });
}
