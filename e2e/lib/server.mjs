// Start, kill and restart the real `nebula` binary for browser tests.
//
// NEBULA_BIN: path to the binary (default ../target/debug/nebula, relative to e2e/).
// Each server gets its own temp dir with a SQLite database and a log file; restarting keeps
// the port, the database and the JWT secret, so the open pages' tokens stay valid.

import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_DIR = path.resolve(E2E_DIR, '..');

export function nebulaBin() {
  return path.resolve(E2E_DIR, process.env.NEBULA_BIN || '../target/debug/nebula');
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class NebulaServer {
  constructor({ port, dir, env = {} } = {}) {
    this.port = port;
    this.dir = dir;
    this.env = env;
    this.proc = null;
    this.exited = null;
    this.jwtSecret = randomBytes(32).toString('hex');
  }

  static async create(env = {}) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nebula-e2e-'));
    const port = await freePort();
    const server = new NebulaServer({ port, dir, env });
    await server.start();
    return server;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get logPath() {
    return path.join(this.dir, 'server.log');
  }

  /** The environment the server (and its operator commands) run with. */
  serverEnv() {
    return {
      ...process.env,
      BACKEND_ADDR: `127.0.0.1:${this.port}`,
      DATABASE_URL: `sqlite://${path.join(this.dir, 'nebula.db')}`,
      DEV_MODE: 'true',
      // Fixed for this server's lifetime so tokens survive a restart (DEV_MODE would
      // otherwise pick a new random secret each start).
      JWT_SECRET: this.jwtSecret,
      RUST_LOG: process.env.RUST_LOG || 'info',
      ...this.env,
    };
  }

  async start() {
    const bin = nebulaBin();
    if (!fs.existsSync(bin)) {
      throw new Error(`nebula binary not found at ${bin}: build it (cargo build) or set NEBULA_BIN`);
    }
    const log = fs.openSync(this.logPath, 'a');
    this.proc = spawn(bin, [], {
      cwd: this.dir,
      env: this.serverEnv(),
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    const proc = this.proc;
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    await this.waitHealthy(proc);
  }

  async waitHealthy(proc, timeoutMs = 60_000) {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    proc.once('exit', () => (exited = true));
    while (Date.now() < deadline) {
      if (exited || proc.exitCode !== null) {
        throw new Error(`nebula exited during start-up:\n${this.logTail()}`);
      }
      try {
        const res = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(2000) });
        if (res.status === 200) return;
      } catch {
        /* not listening yet */
      }
      await sleep(100);
    }
    throw new Error(`nebula not healthy within ${timeoutMs} ms:\n${this.logTail()}`);
  }

  /** `nebula admin grant USERNAME` against this server's database, as an operator would. */
  grantAdmin(username) {
    return new Promise((resolve, reject) => {
      execFile(nebulaBin(), ['admin', 'grant', username], { cwd: this.dir, env: this.serverEnv() }, (err, stdout, stderr) =>
        err ? reject(new Error(`nebula admin grant ${username}: ${err.message}\n${stderr}`)) : resolve(stdout),
      );
    });
  }

  /** Crash it (SIGKILL by default) and wait until it is gone. */
  async kill(signal = 'SIGKILL') {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill(signal);
    await this.exited;
  }

  async restart() {
    await this.kill();
    await this.start();
  }

  /** Stop gracefully (SIGTERM, SIGKILL after 10 s) and remove the temp dir unless KEEP_E2E_DIR. */
  async stop() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(t);
    }
    if (!process.env.KEEP_E2E_DIR) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  logTail(lines = 40) {
    try {
      return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

/** Small REST client for setting things up from the test. */
export async function rest(base, method, pathname, { body, token } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(`${base}${pathname}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!res.ok) {
    const err = new Error(`${method} ${pathname} → ${res.status}: ${text.slice(0, 300)}`);
    err.status = res.status;
    err.body = data;
    throw err;
  }
  return data;
}

/** A username that is unique within a run (3–32 chars of [A-Za-z0-9_.-]). */
export function uniqueName(prefix) {
  return `${prefix}_${randomBytes(3).toString('hex')}`;
}
