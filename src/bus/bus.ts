/**
 * The bus port: how the hub's parts (and, in a cluster, its nodes) tell each other what happened.
 * Control messages only (identity changed, certificate revoked, C2D enqueued, a method request
 * for the node holding a device, ...); device messages go to the event log, not here.
 *
 * Semantics are NATS core's, so the in-process bus and the NATS bus pass one conformance suite
 * (bus.case.ts):
 * - subjects are dot-separated tokens; a subscription may use `*` (exactly one token) and `>`
 *   (one or more trailing tokens);
 * - delivery is at most once, in publish order per subject from one publisher, asynchronous (a
 *   handler never runs inside `publish`);
 * - subscribers with the same queue group on the same subject share the messages: each message
 *   goes to exactly one of them (and to every plain subscriber);
 * - `request` sends to one responder and waits for its answer: `BusNoRespondersError` at once
 *   when nobody listens, `BusTimeoutError` when nobody answered in time;
 * - a handler that throws (or rejects) is reported to `onHandlerError` and the bus carries on.
 *
 * Payloads are bytes here; subjects.ts encodes them (JSON) and ties each subject to its type.
 */

export type BusHandler = (msg: BusMessage) => void | Promise<void>;

export interface BusMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  /** Answers a request; false when the message was not a request (nobody waits for an answer). */
  respond(data: Uint8Array): boolean;
}

export interface BusSubscription {
  /** Stops delivery; messages already on their way may still arrive until the call returns. */
  unsubscribe(): void;
}

export interface SubscribeOptions {
  /** Queue group: each message goes to one member of the group. */
  queue?: string;
}

export interface Bus {
  /** This node's id (same across restarts), carried in payloads that a remote node acts on. */
  readonly nodeId: string;
  /** 'local' (in-process) or 'nats'. */
  readonly kind: 'local' | 'nats';
  /** Largest payload in bytes; a bigger one is refused with `BusPayloadTooLargeError`. */
  readonly maxPayload: number;
  publish(subject: string, data: Uint8Array): void;
  subscribe(subject: string, handler: BusHandler, opts?: SubscribeOptions): BusSubscription;
  request(subject: string, data: Uint8Array, opts: { timeoutMs: number }): Promise<Uint8Array>;
  /** Resolves once everything published so far has left this process (NATS: the server has it). */
  flush(): Promise<void>;
  /** Stops taking new messages, lets handlers in flight finish, then closes. */
  drain(): Promise<void>;
  /** Closes at once: pending requests fail with `BusClosedError`, publishing throws it. */
  close(): Promise<void>;
  /** Resolves when the bus has closed (by close, drain, or for good after a failure). */
  readonly closed: Promise<void>;
}

export class BusError extends Error {
  constructor(
    readonly code: 'NoResponders' | 'Timeout' | 'Closed' | 'PayloadTooLarge' | 'InvalidSubject',
    message: string,
  ) {
    super(message);
    this.name = `Bus${code}Error`;
  }
}

export class BusNoRespondersError extends BusError {
  constructor(subject: string) {
    super('NoResponders', `no responders on ${subject}`);
  }
}

export class BusTimeoutError extends BusError {
  constructor(subject: string, timeoutMs: number) {
    super('Timeout', `no answer on ${subject} within ${timeoutMs} ms`);
  }
}

export class BusClosedError extends BusError {
  constructor() {
    super('Closed', 'the bus is closed');
  }
}

export class BusPayloadTooLargeError extends BusError {
  constructor(bytes: number, max: number) {
    super('PayloadTooLarge', `a bus payload of ${bytes} bytes exceeds the ${max}-byte maximum`);
  }
}

export class BusSubjectError extends BusError {
  constructor(subject: string, why: string) {
    super('InvalidSubject', `invalid bus subject '${subject}': ${why}`);
  }
}

/** NATS's default max_payload (1 MiB); the local bus holds to the same so a payload that fits one fits both. */
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/**
 * Checks a subject as NATS does: non-empty tokens without whitespace; `*` and `>` only as whole
 * tokens, `>` only last, and neither in a subject one publishes to.
 */
export function checkSubject(subject: string, wildcards: boolean): string[] {
  if (subject === '') throw new BusSubjectError(subject, 'empty');
  const tokens = subject.split('.');
  tokens.forEach((t, i) => {
    if (t === '') throw new BusSubjectError(subject, 'empty token');
    if (/\s/.test(t)) throw new BusSubjectError(subject, 'whitespace');
    if (t === '*' || t === '>') {
      if (!wildcards) throw new BusSubjectError(subject, 'wildcards only in subscriptions');
      if (t === '>' && i !== tokens.length - 1) throw new BusSubjectError(subject, "'>' must be the last token");
    } else if (t.includes('*') || t.includes('>')) {
      throw new BusSubjectError(subject, 'a wildcard must be a whole token');
    }
  });
  return tokens;
}

/**
 * One subject token from any string (a device id, a node id): device ids may hold `.` `*` `>` and
 * spaces, which mean something in a subject, so those and anything outside a safe set are
 * %-encoded. Injective, so two ids never share a subject.
 */
export function subjectToken(value: string): string {
  if (value === '') return '%';
  return value.replace(/[^A-Za-z0-9_\-:@!$'(),;=+~]/gu, (c) =>
    [...Buffer.from(c)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
}
