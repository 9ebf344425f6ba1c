/**
 * The bus on NATS core (@nats-io/transport-node): what lets several Gatehouse nodes act as one.
 * Subjects and queue groups map one to one; request/reply uses NATS's muxed inbox, and "no
 * responders" comes from the server (headers), so a request to a device nobody holds fails at once
 * instead of waiting for its timeout.
 *
 * Once connected it reconnects forever, with a capped exponential backoff and jitter, and logs each
 * disconnect and reconnect with the server's host:port only. Subscriptions are restored by the
 * client; a message published while disconnected may be lost (at most once, like everything on
 * NATS core), which is why no message carries state that is not in the store first.
 */
import {
  connect,
  credsAuthenticator,
  errors,
  type ConnectionOptions,
  type NatsConnection,
  type Subscription,
} from '@nats-io/transport-node';
import {
  BusClosedError,
  BusNoRespondersError,
  BusPayloadTooLargeError,
  BusTimeoutError,
  checkSubject,
  type Bus,
  type BusHandler,
  type BusSubscription,
  type SubscribeOptions,
} from '../bus.js';
import { parseNatsUrl, readCredsFile } from './nats-options.js';

export interface NatsBusOptions {
  nodeId: string;
  url: string;
  /** A NATS credentials file (JWT + seed). */
  credsFile?: string;
  /** PEM CA bundle for a tls:// server whose certificate no public CA issued. */
  caFile?: string;
  /** Milliseconds to wait for the first connection. */
  connectTimeoutMs?: number;
  onHandlerError?: (err: unknown, subject: string) => void;
  /** After a reconnect (subscriptions restored): what was published meanwhile may be lost. */
  onReconnect?: () => void;
  /** Connection events for the log: never a credential, only host:port. */
  log?: (fields: { event: string; server?: string; attempt?: number; err?: string }, msg: string) => void;
}

const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 10_000;

/** Where and how to reach NATS: the URL (credentials in it or a creds file) and TLS trust. */
export type NatsConnectOptions = Pick<NatsBusOptions, 'url' | 'credsFile' | 'caFile' | 'connectTimeoutMs'> & {
  /** Names the connection on the server (monitoring shows it). */
  name: string;
};

/**
 * Connects with the capped backoff every Gatehouse NATS connection uses, or throws an Error that
 * names the server and not the credentials. `onReset` is told how to reset the backoff (after a
 * reconnect).
 */
export async function connectNats(opts: NatsConnectOptions, onReset?: (reset: () => void) => void): Promise<NatsConnection> {
  const target = parseNatsUrl(opts.url);
  let attempt = 0;
  onReset?.(() => (attempt = 0));
  const options: ConnectionOptions = {
    servers: target.server,
    name: opts.name,
    timeout: opts.connectTimeoutMs ?? 5000,
    maxReconnectAttempts: -1,
    reconnect: true,
    // Capped exponential backoff: 250 ms, 500 ms, ... 10 s; reset by a reconnect.
    reconnectDelayHandler: () => Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt++, 10)),
    reconnectJitter: 100,
    reconnectJitterTLS: 1000,
    ...(target.user === undefined ? {} : { user: target.user, pass: target.pass }),
    ...(target.token === undefined ? {} : { token: target.token }),
    ...(opts.credsFile === undefined ? {} : { authenticator: credsAuthenticator(readCredsFile(opts.credsFile)) }),
    ...(target.tls ? { tls: opts.caFile === undefined ? {} : { caFile: opts.caFile } } : {}),
  };
  try {
    return await connect(options);
  } catch (err) {
    const e = err as Error;
    throw new Error(`NATS at ${target.tls ? 'tls' : 'nats'}://${target.server} refused or did not answer: ${e.message}`);
  }
}

/** Connects, or throws an Error that names the server and not the credentials. */
export async function connectNatsBus(opts: NatsBusOptions): Promise<NatsBus> {
  let reset = () => undefined as unknown;
  const nc = await connectNats({ ...opts, name: `gatehouse:${opts.nodeId}` }, (r) => (reset = r));
  return new NatsBus(nc, opts, () => void reset());
}

export class NatsBus implements Bus {
  readonly kind = 'nats' as const;
  readonly nodeId: string;
  readonly closed: Promise<void>;
  readonly #nc: NatsConnection;
  readonly #subs = new Set<Subscription>();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #onHandlerError: (err: unknown, subject: string) => void;
  #state: 'open' | 'draining' | 'closed' = 'open';

  constructor(nc: NatsConnection, opts: NatsBusOptions, resetBackoff: () => void) {
    this.#nc = nc;
    this.nodeId = opts.nodeId;
    this.#onHandlerError = opts.onHandlerError ?? (() => undefined);
    this.closed = nc.closed().then(() => {
      this.#state = 'closed';
    });
    const log = opts.log ?? (() => undefined);
    void (async () => {
      let attempt = 0;
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') log({ event: 'bus.disconnected', server: s.server }, 'lost the connection to NATS; reconnecting');
        else if (s.type === 'reconnecting') attempt++;
        else if (s.type === 'reconnect') {
          log({ event: 'bus.reconnected', server: s.server, attempt }, 'reconnected to NATS');
          attempt = 0;
          resetBackoff();
          opts.onReconnect?.();
        } else if (s.type === 'error') log({ event: 'bus.error', err: s.error.message }, 'NATS reported an error');
        else if (s.type === 'ldm') log({ event: 'bus.lame-duck', server: s.server }, 'the NATS server is shutting down (lame duck mode)');
      }
    })().catch(() => undefined);
  }

  get maxPayload(): number {
    return this.#nc.info?.max_payload ?? 1024 * 1024;
  }

  publish(subject: string, data: Uint8Array): void {
    this.#check(subject, data, false);
    this.#nc.publish(subject, data);
  }

  subscribe(subject: string, handler: BusHandler, opts: SubscribeOptions = {}): BusSubscription {
    if (this.#state !== 'open') throw new BusClosedError();
    checkSubject(subject, true);
    const sub = this.#nc.subscribe(subject, {
      ...(opts.queue === undefined ? {} : { queue: opts.queue }),
      callback: (err, msg) => {
        if (err !== null) {
          this.#onHandlerError(err, subject);
          return;
        }
        let result: void | Promise<void>;
        try {
          result = handler({
            subject: msg.subject,
            data: msg.data,
            respond: (answer) => {
              if (msg.reply === undefined || msg.reply === '') return false;
              if (answer.byteLength > this.maxPayload) throw new BusPayloadTooLargeError(answer.byteLength, this.maxPayload);
              return msg.respond(answer);
            },
          });
        } catch (e) {
          this.#onHandlerError(e, msg.subject);
          return;
        }
        if (result instanceof Promise) {
          const p = result.catch((e: unknown) => this.#onHandlerError(e, msg.subject)).finally(() => this.#inFlight.delete(p));
          this.#inFlight.add(p);
        }
      },
    });
    this.#subs.add(sub);
    return {
      unsubscribe: () => {
        this.#subs.delete(sub);
        if (!sub.isClosed()) sub.unsubscribe();
      },
    };
  }

  async request(subject: string, data: Uint8Array, opts: { timeoutMs: number }): Promise<Uint8Array> {
    this.#check(subject, data, false);
    try {
      const m = await this.#nc.request(subject, data, { timeout: opts.timeoutMs });
      return m.data;
    } catch (err) {
      if (err instanceof errors.RequestError && err.isNoResponders()) throw new BusNoRespondersError(subject);
      if (err instanceof errors.NoRespondersError) throw new BusNoRespondersError(subject);
      if (err instanceof errors.TimeoutError || (err instanceof Error && err.cause instanceof errors.TimeoutError)) throw new BusTimeoutError(subject, opts.timeoutMs);
      const cause = err instanceof Error ? err.cause : undefined;
      const closed = [err, cause].some((e) => e instanceof errors.ClosedConnectionError || e instanceof errors.DrainingConnectionError);
      if (closed || this.#state === 'closed' || this.#nc.isClosed()) throw new BusClosedError();
      throw err;
    }
  }

  async flush(): Promise<void> {
    if (this.#state === 'closed') throw new BusClosedError();
    await this.#nc.flush();
  }

  async drain(): Promise<void> {
    if (this.#state !== 'open') return this.closed;
    this.#state = 'draining';
    await this.#nc.drain().catch(() => undefined);
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    return this.closed;
  }

  async close(): Promise<void> {
    if (this.#state !== 'closed') {
      this.#state = 'closed';
      await this.#nc.close().catch(() => undefined);
    }
    return this.closed;
  }

  #check(subject: string, data: Uint8Array, wildcards: boolean): void {
    if (this.#state === 'closed' || this.#nc.isClosed()) throw new BusClosedError();
    checkSubject(subject, wildcards);
    if (data.byteLength > this.maxPayload) throw new BusPayloadTooLargeError(data.byteLength, this.maxPayload);
  }
}
