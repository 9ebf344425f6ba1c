/**
 * The in-process bus: the embedded default, one node, no NATS. Same semantics as NATS core (see
 * ../bus.ts): handlers run on a later microtask, never inside `publish`, so a part cannot come to
 * depend on a synchronous call that a cluster could not give it.
 *
 * Exact subjects are found in a map (the per-device method subjects make many of them); wildcard
 * subscriptions are few and matched token by token.
 */
import {
  BusClosedError,
  BusNoRespondersError,
  BusPayloadTooLargeError,
  BusTimeoutError,
  checkSubject,
  DEFAULT_MAX_PAYLOAD,
  type Bus,
  type BusHandler,
  type BusMessage,
  type BusSubscription,
  type SubscribeOptions,
} from '../bus.js';

export interface LocalBusOptions {
  nodeId: string;
  /** A handler threw or rejected: the bus carries on; this says so (to the log). */
  onHandlerError?: (err: unknown, subject: string) => void;
  maxPayload?: number;
}

/**
 * A subscription is its own handle: every device holding a session subscribes to its method
 * subject, so a closure and a handle object per subscription were part of each idle device's cost.
 */
class Sub implements BusSubscription {
  active = true;

  constructor(
    readonly pattern: string,
    /** Set for wildcard patterns. */
    readonly tokens: string[] | undefined,
    readonly queue: string | undefined,
    readonly handler: BusHandler,
    readonly remove: (sub: Sub) => void,
  ) {}

  unsubscribe(): void {
    this.remove(this);
  }
}

function matches(tokens: string[], subject: string[]): boolean {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t === '>') return subject.length > i;
    if (i >= subject.length) return false;
    if (t !== '*' && t !== subject[i]) return false;
  }
  return tokens.length === subject.length;
}

export class LocalBus implements Bus {
  readonly kind = 'local' as const;
  readonly nodeId: string;
  readonly maxPayload: number;
  readonly closed: Promise<void>;
  /** By exact subject: the one subscription, or a set when there are more (most subjects have one). */
  readonly #exact = new Map<string, Sub | Set<Sub>>();
  readonly #wildcard = new Set<Sub>();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #pendingRequests = new Set<(err: Error) => void>();
  readonly #onHandlerError: (err: unknown, subject: string) => void;
  #state: 'open' | 'draining' | 'closed' = 'open';
  #resolveClosed!: () => void;
  #rr = 0;
  readonly #removeSub = (sub: Sub): void => this.#remove(sub);

  constructor(opts: LocalBusOptions) {
    this.nodeId = opts.nodeId;
    this.maxPayload = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    this.#onHandlerError = opts.onHandlerError ?? (() => undefined);
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  publish(subject: string, data: Uint8Array): void {
    this.#send(subject, data, undefined);
  }

  subscribe(subject: string, handler: BusHandler, opts: SubscribeOptions = {}): BusSubscription {
    if (this.#state !== 'open') throw new BusClosedError();
    const tokens = checkSubject(subject, true);
    const wild = tokens.includes('*') || tokens.includes('>');
    const sub = new Sub(subject, wild ? tokens : undefined, opts.queue, handler, this.#removeSub);
    if (wild) this.#wildcard.add(sub);
    else {
      const held = this.#exact.get(subject);
      if (held === undefined) this.#exact.set(subject, sub);
      else if (held instanceof Set) held.add(sub);
      else this.#exact.set(subject, new Set([held, sub]));
    }
    return sub;
  }

  request(subject: string, data: Uint8Array, opts: { timeoutMs: number }): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#pendingRequests.delete(fail);
        reject(err);
      };
      const timer = setTimeout(() => fail(new BusTimeoutError(subject, opts.timeoutMs)), opts.timeoutMs);
      this.#pendingRequests.add(fail);
      const reply = (answer: Uint8Array) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#pendingRequests.delete(fail);
        resolve(answer);
      };
      try {
        // NATS answers "no responders" at once; so do we, on a later tick like any answer.
        if (this.#send(subject, data, reply) === 0) queueMicrotask(() => fail(new BusNoRespondersError(subject)));
      } catch (err) {
        fail(err as Error);
      }
    });
  }

  async flush(): Promise<void> {
    if (this.#state === 'closed') throw new BusClosedError();
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  async drain(): Promise<void> {
    if (this.#state !== 'open') return this.closed;
    this.#state = 'draining';
    this.#exact.clear();
    this.#wildcard.clear();
    // Let queued deliveries start, then wait for every handler in flight.
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    this.#shut();
    return this.closed;
  }

  async close(): Promise<void> {
    if (this.#state !== 'closed') this.#shut();
    return this.closed;
  }

  #shut(): void {
    this.#state = 'closed';
    this.#exact.clear();
    this.#wildcard.clear();
    for (const fail of [...this.#pendingRequests]) fail(new BusClosedError());
    this.#resolveClosed();
  }

  #remove(sub: Sub): void {
    sub.active = false;
    if (sub.tokens !== undefined) this.#wildcard.delete(sub);
    else {
      const held = this.#exact.get(sub.pattern);
      if (held === sub) this.#exact.delete(sub.pattern);
      else if (held instanceof Set) {
        held.delete(sub);
        if (held.size === 0) this.#exact.delete(sub.pattern);
      }
    }
  }

  /** Delivers to every matching plain subscriber and one member of each queue group; returns how many. */
  #send(subject: string, data: Uint8Array, reply: ((answer: Uint8Array) => void) | undefined): number {
    if (this.#state === 'closed') throw new BusClosedError();
    const tokens = checkSubject(subject, false);
    if (data.byteLength > this.maxPayload) throw new BusPayloadTooLargeError(data.byteLength, this.maxPayload);
    if (this.#state === 'draining') return 0;
    const targets: Sub[] = [];
    const groups = new Map<string, Sub[]>();
    const consider = (s: Sub) => {
      if (s.queue === undefined) targets.push(s);
      else {
        const key = `${s.pattern}\u0000${s.queue}`;
        const g = groups.get(key);
        if (g === undefined) groups.set(key, [s]);
        else g.push(s);
      }
    };
    const exact = this.#exact.get(subject);
    if (exact instanceof Set) for (const s of exact) consider(s);
    else if (exact !== undefined) consider(exact);
    for (const s of this.#wildcard) if (s.tokens !== undefined && matches(s.tokens, tokens)) consider(s);
    for (const members of groups.values()) targets.push(members[this.#rr++ % members.length] as Sub);
    if (targets.length === 0) return 0;
    const message: BusMessage = {
      subject,
      data,
      respond: (answer) => {
        if (reply === undefined) return false;
        if (this.#state === 'closed') throw new BusClosedError();
        if (answer.byteLength > this.maxPayload) throw new BusPayloadTooLargeError(answer.byteLength, this.maxPayload);
        queueMicrotask(() => reply(answer));
        return true;
      },
    };
    for (const s of targets) queueMicrotask(() => this.#deliver(s, message));
    return targets.length;
  }

  #deliver(sub: Sub, message: BusMessage): void {
    if (!sub.active || this.#state === 'closed') return;
    let result: void | Promise<void>;
    try {
      result = sub.handler(message);
    } catch (err) {
      this.#onHandlerError(err, message.subject);
      return;
    }
    if (result instanceof Promise) {
      const p = result.catch((err: unknown) => this.#onHandlerError(err, message.subject)).finally(() => this.#inFlight.delete(p));
      this.#inFlight.add(p);
    }
  }
}
