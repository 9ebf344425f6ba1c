/**
 * WebServer: the device's local HTTP port. In setup mode it serves the setup page behind the
 * label's setup password and application key; in web-server mode it serves local activation,
 * which needs the application key; in hub mode it is closed, so the port refuses connections.
 *
 * node:http rather than a framework: six routes on a device with little memory, and nothing here
 * that a framework would make safer. What it does take care of: a session cookie that is HttpOnly
 * and SameSite=Strict plus a CSRF token on every form, a doubling lockout per client address after
 * failed sign-ins or keys, a body limit, and headers that forbid framing, sniffing and
 * third-party content.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Scheduler } from './hardware.js';
import type { Command } from './hub-manager.js';
import { COMMANDS } from './hub-manager.js';
import { secretMatches, type DeviceLabel } from './label.js';
import type { Logger } from './log.js';
import { controlPage, loginPage, savedPage, setupPage, SETUP_CSS, SETUP_JS, type DeviceFacts } from './pages.js';
import { FIELDS, type FormValues, type Problem } from './setup-form.js';

const BODY_LIMIT = 256 * 1024;
const SESSION_IDLE_MS = 15 * 60_000;
/** A browser seen this recently counts as attached (the LEDs go steady). */
const ATTACHED_MS = 60_000;

export interface WebServerDeps {
  label: DeviceLabel;
  log: Logger;
  scheduler: Scheduler;
  facts(): DeviceFacts;
  initialValues(): FormValues;
  applySetup(form: FormValues): { ok: true; mode: 'web' | 'hub' } | { ok: false; problems: Problem[] };
  /** Runs once the saved page has been sent: the device restarts into its new mode. */
  afterSaved(): void;
  command(command: Command, source: 'web'): { ok: true; result: Record<string, unknown> } | { ok: false; message: string };
  relayState(): string;
  status(): unknown;
  onClientChange(): void;
}

/** Failed attempts per client address: five free, then a lockout that doubles up to 15 minutes. */
export class AttemptLimiter {
  readonly #failures = new Map<string, { count: number; until: number }>();

  constructor(private readonly scheduler: Scheduler) {}

  /** Milliseconds this client must still wait, or 0. */
  wait(client: string): number {
    const f = this.#failures.get(client);
    return f === undefined ? 0 : Math.max(0, f.until - this.scheduler.now());
  }

  fail(client: string): void {
    const f = this.#failures.get(client) ?? { count: 0, until: 0 };
    f.count += 1;
    if (f.count >= 5) f.until = this.scheduler.now() + Math.min(15 * 60_000, 30_000 * 2 ** (f.count - 5));
    this.#failures.set(client, f);
  }

  succeed(client: string): void {
    this.#failures.delete(client);
  }
}

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > BODY_LIMIT) {
        reject(new BodyTooLarge());
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export class WebServer {
  #server: Server | undefined;
  #mode: 'setup' | 'web' | undefined;
  readonly #sockets = new Set<Socket>();
  readonly #sessions = new Map<string, { csrf: string; seen: number }>();
  readonly #limiter: AttemptLimiter;
  #lastClientAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly deps: WebServerDeps,
    private readonly bind: { host: string; port: number },
  ) {
    this.#limiter = new AttemptLimiter(deps.scheduler);
  }

  get mode(): 'setup' | 'web' | undefined {
    return this.#mode;
  }

  /** A signed-in browser was seen within the last minute. */
  get clientAttached(): boolean {
    return this.#mode === 'setup' && this.deps.scheduler.now() - this.#lastClientAt < ATTACHED_MS;
  }

  async open(mode: 'setup' | 'web'): Promise<void> {
    await this.close();
    const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        const tooLarge = err instanceof BodyTooLarge;
        if (!tooLarge) this.deps.log.error('web request failed', { path: req.url, error: (err as Error).message });
        if (!res.headersSent) this.#send(res, tooLarge ? 413 : 500, 'text/plain; charset=utf-8', tooLarge ? 'The request is too large.\n' : 'Internal error.\n');
      });
    });
    server.on('connection', (s: Socket) => {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
    });
    server.on('clientError', (_err, socket: Socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.bind.port, this.bind.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#server = server;
    this.#mode = mode;
    this.deps.log.info(mode === 'setup' ? 'setup page open' : 'control page open', { url: `http://${this.bind.host}:${this.bind.port}/` });
  }

  /** Closes the port: listening stops and every open connection is dropped. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    this.#mode = undefined;
    this.#sessions.clear();
    this.#lastClientAt = Number.NEGATIVE_INFINITY;
    if (server === undefined) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    await closed;
  }

  #send(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': String(Buffer.byteLength(body)), ...extra });
    res.end(body);
  }

  #html(res: ServerResponse, status: number, body: string, extra: Record<string, string> = {}): void {
    this.#send(res, status, 'text/html; charset=utf-8', body, extra);
  }

  #json(res: ServerResponse, status: number, body: unknown): void {
    this.#send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(body)}\n`);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://device').pathname;
    const method = req.method ?? 'GET';
    if (method === 'GET' && path === '/static/setup.css') return this.#send(res, 200, 'text/css; charset=utf-8', SETUP_CSS, { 'cache-control': 'max-age=3600' });
    if (method === 'GET' && path === '/static/setup.js') return this.#send(res, 200, 'text/javascript; charset=utf-8', SETUP_JS, { 'cache-control': 'max-age=3600' });
    if (this.#mode === 'setup') return this.#setup(req, res, method, path);
    return this.#control(req, res, method, path);
  }

  // ------------------------------------------------------------ setup mode

  #session(req: IncomingMessage): { token: string; csrf: string } | undefined {
    const token = cookie(req, 'gc_session');
    const s = token === undefined ? undefined : this.#sessions.get(token);
    const now = this.deps.scheduler.now();
    if (token === undefined || s === undefined || now - s.seen > SESSION_IDLE_MS) return undefined;
    s.seen = now;
    this.#touch();
    return { token, csrf: s.csrf };
  }

  #touch(): void {
    const was = this.clientAttached;
    this.#lastClientAt = this.deps.scheduler.now();
    if (!was) this.deps.onClientChange();
  }

  async #setup(req: IncomingMessage, res: ServerResponse, method: string, path: string): Promise<void> {
    const client = req.socket.remoteAddress ?? 'unknown';
    const serial = this.deps.label.serial;
    if (method === 'GET' && path === '/') {
      const s = this.#session(req);
      if (s === undefined) return this.#html(res, 200, loginPage(serial, {}));
      return this.#html(res, 200, setupPage(this.deps.facts(), this.deps.initialValues(), [], s.csrf));
    }
    if (method === 'POST' && path === '/login') {
      const wait = this.#limiter.wait(client);
      if (wait > 0) return this.#html(res, 429, loginPage(serial, { error: `Too many failed attempts. Try again in ${Math.ceil(wait / 1000)} seconds.` }), { 'retry-after': String(Math.ceil(wait / 1000)) });
      const form = new URLSearchParams(await readBody(req));
      const ok = secretMatches(form.get('setupPassword') ?? undefined, this.deps.label.setupPassword) && secretMatches(form.get('applicationKey') ?? undefined, this.deps.label.applicationKey);
      if (!ok) {
        this.#limiter.fail(client);
        this.deps.log.warn('setup sign-in refused', { client });
        return this.#html(res, 401, loginPage(serial, { error: 'The setup password or the application key is not right. Both are on the device label.' }));
      }
      this.#limiter.succeed(client);
      const token = randomBytes(32).toString('base64url');
      this.#sessions.set(token, { csrf: randomBytes(24).toString('base64url'), seen: this.deps.scheduler.now() });
      this.#touch();
      this.deps.log.info('setup sign-in', { client });
      res.writeHead(303, { ...SECURITY_HEADERS, location: '/', 'set-cookie': `gc_session=${token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${SESSION_IDLE_MS / 1000}` });
      return void res.end();
    }
    if (method === 'POST' && (path === '/setup' || path === '/logout')) {
      const s = this.#session(req);
      if (s === undefined) return this.#html(res, 401, loginPage(serial, { error: 'Your session ended. Sign in again.' }), { connection: 'close' });
      const form = new URLSearchParams(await readBody(req));
      if (!secretMatches(form.get('csrf') ?? undefined, s.csrf)) return this.#html(res, 403, loginPage(serial, { error: 'The form expired. Sign in again.' }));
      if (path === '/logout') {
        this.#sessions.delete(s.token);
        res.writeHead(303, { ...SECURITY_HEADERS, location: '/', 'set-cookie': 'gc_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0' });
        return void res.end();
      }
      const values: FormValues = {};
      for (const f of FIELDS) {
        const v = form.get(f);
        if (v !== null) values[f] = v;
      }
      const r = this.deps.applySetup(values);
      if (!r.ok) {
        this.deps.log.info('setup form refused', { problems: r.problems.map((p) => p.field) });
        return this.#html(res, 400, setupPage(this.deps.facts(), values, r.problems, s.csrf));
      }
      res.once('finish', () => this.deps.afterSaved());
      return this.#html(res, 200, savedPage(serial, r.mode), { connection: 'close' });
    }
    return this.#html(res, 404, '<!doctype html><title>Not found</title><p>Not found. <a href="/">Setup</a></p>');
  }

  // ------------------------------------------------------------ web-server mode

  #keyAccepted(client: string, presented: string | undefined): 'ok' | 'refused' | 'locked' {
    if (this.#limiter.wait(client) > 0) return 'locked';
    if (secretMatches(presented, this.deps.label.applicationKey)) {
      this.#limiter.succeed(client);
      return 'ok';
    }
    this.#limiter.fail(client);
    this.deps.log.warn('application key refused', { client });
    return 'refused';
  }

  async #control(req: IncomingMessage, res: ServerResponse, method: string, path: string): Promise<void> {
    const client = req.socket.remoteAddress ?? 'unknown';
    const serial = this.deps.label.serial;
    if (method === 'GET' && path === '/') return this.#html(res, 200, controlPage(serial, this.deps.relayState()));
    if (method === 'POST' && path === '/control') {
      const form = new URLSearchParams(await readBody(req));
      const verdict = this.#keyAccepted(client, form.get('applicationKey') ?? undefined);
      if (verdict !== 'ok') return this.#html(res, verdict === 'locked' ? 429 : 401, controlPage(serial, this.deps.relayState(), { ok: false, text: verdict === 'locked' ? 'Too many wrong keys. Wait and try again.' : 'The application key is not right.' }));
      const name = COMMANDS.find((c) => c === form.get('action'));
      if (name === undefined) return this.#html(res, 400, controlPage(serial, this.deps.relayState(), { ok: false, text: 'Choose Activate, On or Off.' }));
      const r = this.deps.command(name, 'web');
      return this.#html(res, r.ok ? 200 : 409, controlPage(serial, this.deps.relayState(), r.ok ? { ok: true, text: `${name}: done.` } : { ok: false, text: r.message }));
    }
    const api = /^\/api\/(status|commands\/([A-Za-z]+))$/.exec(path);
    if (api !== null) {
      const auth = req.headers.authorization;
      const verdict = this.#keyAccepted(client, auth?.startsWith('Bearer ') === true ? auth.slice(7) : undefined);
      if (verdict !== 'ok') return this.#json(res, verdict === 'locked' ? 429 : 401, { error: verdict === 'locked' ? 'TooManyAttempts' : 'Unauthorized' });
      if (api[1] === 'status') return method === 'GET' ? this.#json(res, 200, this.deps.status()) : this.#json(res, 405, { error: 'MethodNotAllowed' });
      if (method !== 'POST') return this.#json(res, 405, { error: 'MethodNotAllowed' });
      const name = COMMANDS.find((c) => c === api[2]);
      if (name === undefined) return this.#json(res, 404, { error: 'UnknownCommand', commands: COMMANDS });
      const r = this.deps.command(name, 'web');
      return this.#json(res, r.ok ? 200 : 409, r.ok ? r.result : { error: 'CommandRefused', message: r.message });
    }
    return this.#json(res, 404, { error: 'NotFound' });
  }
}
