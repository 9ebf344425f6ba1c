/**
 * The control socket: a Unix socket in the data directory (0600, so only the device's own user)
 * that takes one JSON request per line and answers one JSON line. It stands in for the board's
 * button and serial console: `status`, `press` (a press of a given length, decided at once),
 * `down`/`up` (a real-time hold).
 */
import { chmodSync, existsSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export type ControlRequest = { op: 'status' } | { op: 'press'; ms: number } | { op: 'down' } | { op: 'up' };

export class ControlSocket {
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();

  constructor(
    private readonly path: string,
    private readonly handle: (req: ControlRequest) => Promise<unknown>,
  ) {}

  async open(): Promise<void> {
    // A stale socket file from a crash would make listen fail with EADDRINUSE.
    if (existsSync(this.path)) rmSync(this.path, { force: true });
    const server = createServer((socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      socket.on('error', () => undefined);
      let buffered = '';
      socket.on('data', (chunk: Buffer) => {
        buffered += chunk.toString('utf8');
        if (buffered.length > 4096) return socket.destroy();
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          void this.#answer(line).then((answer) => socket.write(`${JSON.stringify(answer)}\n`));
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => resolve());
    });
    chmodSync(this.path, 0o600);
    this.#server = server;
  }

  async #answer(line: string): Promise<unknown> {
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
    } catch {
      return { ok: false, error: 'each request is one JSON object per line' };
    }
    if (!['status', 'press', 'down', 'up'].includes(req?.op)) return { ok: false, error: 'op is one of status, press, down, up' };
    if (req.op === 'press' && !(Number.isFinite(req.ms) && req.ms >= 0)) return { ok: false, error: 'press needs ms, a number of milliseconds' };
    try {
      return { ok: true, result: await this.handle(req) };
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
  }

  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server === undefined) return;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }
}

/** One request to a running device's control socket. */
export function controlRequest(path: string, req: ControlRequest, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    let buffered = '';
    const timer = setTimeout(() => socket.destroy(new Error(`no answer from ${path} in ${timeoutMs} ms`)), timeoutMs);
    socket.on('connect', () => socket.write(`${JSON.stringify(req)}\n`));
    socket.on('data', (c: Buffer) => {
      buffered += c.toString('utf8');
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      socket.end();
      const answer = JSON.parse(buffered.slice(0, nl)) as { ok: boolean; result?: unknown; error?: string };
      if (answer.ok) resolve(answer.result);
      else reject(new Error(answer.error ?? 'refused'));
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
