/**
 * Every bus subject, named once, with its payload type; `HubBus` publishes and subscribes only
 * through these, so a payload cannot mismatch its subject. docs/cluster.md ("The bus") has the
 * table of who publishes and who subscribes.
 *
 * Encoding is JSON: every payload here is small, plain data (ids, versions, a twin patch, a method
 * payload that is JSON already), any node or tool (`nats sub`) can read it, and the in-process bus
 * encodes too, so a payload that would not survive the wire (a Date, a Map, undefined in an array)
 * fails on one node exactly as it would in a cluster.
 *
 * Every message travels in an envelope with the publishing node's id, so a subscriber can tell
 * its own node's news (already acted on) from another node's.
 */
import type { JsonObject, JsonValue } from '../core/json.js';
import type { HubSettings } from '../core/settings.js';
import { BusClosedError, subjectToken, type Bus, type BusHandler, type BusSubscription, type SubscribeOptions } from './bus.js';

/**
 * An identity changed. `credentialsOrStatus`: live sessions must go (disabled, re-keyed,
 * re-thumbprinted). `keepThumbprints`: the change only swapped the X.509 thumbprints of an enabled
 * self-signed identity; sessions whose certificate is still listed stay.
 */
export type IdentityChanged =
  | { kind: 'device-updated'; deviceId: string; credentialsOrStatus: boolean; keepThumbprints?: string[] }
  | { kind: 'device-deleted'; deviceId: string }
  | { kind: 'module-updated'; deviceId: string; moduleId: string; credentialsOrStatus: boolean }
  | { kind: 'module-deleted'; deviceId: string; moduleId: string };

export interface CertificatesRevoked {
  /** Serials as the authority normalizes them, with the SHA-256 thumbprint (upper-case hex) and the issuing CA of each. */
  certificates: Array<{ serial: string; thumbprintSha256: string; caName: string }>;
}

export interface SettingsChanged {
  /** The whole stored document (no secrets in it): every node applies it as is. */
  settings: HubSettings;
  previousVersion: number;
}

export interface PolicyChanged {
  name: string;
  change: 'created' | 'updated' | 'deleted' | 'keys-renewed';
  /** Set when sessions authenticated with this policy must go: why (for their log). */
  dropSessions?: string;
}

export interface OperatorsChanged {
  what: 'operator' | 'role-assignment';
  id: string;
}

/** Why a device has mail: a new message, one abandoned, or one whose delivery lock lapsed. */
export type C2dMailCause = 'sent' | 'abandoned' | 'released';

export interface C2dEnqueued {
  deviceId: string;
  cause: C2dMailCause;
}

export interface DesiredChanged {
  deviceId: string;
  moduleId: string | null;
  /** The patch as applied, with `$version`, as a device receives it. */
  patch: JsonObject;
}

/** The routing document changed (decision 0006): every node reads it again from the store and recompiles. */
export interface RoutingChanged {
  etag: string;
  version: number;
}

/** A twin changed (tags, desired or reported): routing's `$twin` cache forgets it. */
export interface TwinChanged {
  deviceId: string;
  moduleId: string | null;
}

/**
 * Many twins written at once (a twin-update job's batch, TwinService.patchDevices): for each entry
 * what `twin.changed` says, and for one with `desired` what `twin.desired.changed` says, in one
 * message instead of one or two per twin.
 */
export interface TwinsChanged {
  twins: Array<{ deviceId: string; moduleId: string | null; desired?: JsonObject }>;
}

/** An automatic configuration was created, changed or deleted (hub/configurations/): every node reads the list again. */
export interface ConfigurationsChanged {
  id: string;
  change: 'created' | 'updated' | 'deleted';
}

/** A job was created or cancelled (hub/jobs/): every node's job runner looks for due jobs, and stops a cancelled one it runs. */
export interface JobsChanged {
  id: string;
  change: 'created' | 'cancelled';
}

export interface LogAppended {
  /** The partition and the last sequence number committed there by the append. */
  partition: number;
  lastSequenceNumber: number;
}

/**
 * This node's NATS connection came back: what it was told while away may be lost (NATS core keeps
 * nothing for a subscriber that is not there), so every node that hears this reads again from the
 * store what notifications would have told it: settings, operators, policies, its sessions'
 * identities and C2D mail, live readers' events; and re-announces the sessions it holds.
 */
/** Events one node counted toward windowed alert rules since its last batch (alerts/alert-sharing.ts). */
export interface AlertsCounted {
  counts: Array<{ rule: string; key: string; n: number; at: number; details: JsonObject }>;
}

/** An operator created, changed or deleted an alert rule (alerts/alerts.ts): every other node reloads it from the store. */
export interface AlertRuleChanged {
  name: string;
}

/** An Event Hubs epoch receiver claimed a partition of a consumer group (protocol/amqp/eventhub-claims.ts). */
export interface EventHubReceiverClaimed {
  /** `{consumer group, lower case}|{partition}`. */
  key: string;
  epoch: number;
  /** Grows with every claim of the key: receivers holding an older one close. */
  generation: number;
}

export interface BusResync {
  reason: 'reconnected';
}

export interface SessionClaimed {
  deviceId: string;
  moduleId: string | null;
  /** A per-session id, so the claiming node can tell its own claim from an older one. */
  sessionId: string;
  protocol: string;
  /** When the session registered (ms since epoch): of two claims crossing on the wire, the later one wins. */
  at: number;
}

export interface MethodRequest {
  deviceId: string;
  moduleId: string | null;
  methodName: string;
  payload: JsonValue;
  /** How long the holding node waits for the device to subscribe to methods, then for its answer. */
  connectTimeoutMs: number;
  responseTimeoutMs: number;
}

/** `error.code` is a HubError code (DeviceNotOnline, GatewayTimeout, ...). */
export type MethodReply = { status: number; payload: JsonValue } | { error: { code: string; message: string } };

/** A subject carrying `T`, with the tokens after its name built from `A`. */
export interface Subject<T, A extends unknown[] = []> {
  readonly name: string;
  readonly tokens: (...args: A) => string[];
  /** Only for typing: never set. */
  readonly _payload?: T;
}

/** A request subject: `Q` asked, `R` answered. */
export interface RequestSubject<Q, R, A extends unknown[] = []> extends Subject<Q, A> {
  readonly _reply?: R;
}

const subject = <T, A extends unknown[] = []>(name: string, tokens?: (...args: A) => string[]): Subject<T, A> => ({ name, tokens: tokens ?? (() => []) });

export const SUBJECTS = {
  /** registry -> sessions (drop), C2D (forget a deleted device's queue). */
  identityChanged: subject<IdentityChanged>('identity.changed'),
  /** certificate authority -> revocation check (cache), sessions (drop). */
  certificatesRevoked: subject<CertificatesRevoked>('certificate.revoked'),
  /** settings -> every node's gate, audit log, C2D defaults. */
  settingsChanged: subject<SettingsChanged>('settings.changed'),
  /** policies -> policy cache (invalidate), sessions (drop policy-SAS ones). */
  policyChanged: subject<PolicyChanged>('policy.changed'),
  /** operators and role assignments -> every node's operator cache (reload). */
  operatorsChanged: subject<OperatorsChanged>('operators.changed'),
  /** C2D -> the delivery loop of the session holding the device (wake-up). */
  c2dEnqueued: subject<C2dEnqueued>('c2d.enqueued'),
  /** twins -> the session holding the device (push the patch). */
  desiredChanged: subject<DesiredChanged>('twin.desired.changed'),
  /** twins (any write) -> every node's routing twin cache (forget the twin). */
  twinChanged: subject<TwinChanged>('twin.changed'),
  /** twins (a job's batch) -> what twin.changed and twin.desired.changed reach, for many twins in one message. */
  twinsChanged: subject<TwinsChanged>('twins.changed'),
  /** routing service -> every node's router and dispatchers (read the document again, recompile). */
  routingChanged: subject<RoutingChanged>('routing.changed'),
  /** configuration service -> every node's configuration engine (reload the list; the writing node re-evaluates the fleet). */
  configurationsChanged: subject<ConfigurationsChanged>('configurations.changed'),
  /** job service -> every node's job runner (start a due job now; stop a cancelled one). */
  jobsChanged: subject<JobsChanged>('jobs.changed'),
  /** SQL event log -> other nodes' live readers of that partition (wake-up; the records are in the log). */
  logAppended: subject<LogAppended>('log.appended'),
  /** connection table -> every other node (close your session for this identity). */
  sessionClaimed: subject<SessionClaimed>('session.claimed'),
  /** alert engine -> every other node's alert engine (adds them to its windows). */
  alertsCounted: subject<AlertsCounted>('alerts.counted'),
  /** alert rules REST -> every other node's alert engine (reload the rule from the store). */
  alertRuleChanged: subject<AlertRuleChanged>('alerts.rule.changed'),
  /** Event Hubs endpoint -> every other node's endpoint (close that partition's older receivers: amqp:link:stolen). */
  eventHubReceiverClaimed: subject<EventHubReceiverClaimed>('eventhub.receiver.claimed'),
  /** a node's bus -> every node (read again what a notification would have said). */
  busResync: subject<BusResync>('bus.resync'),
  /** methods -> the node holding the identity's session, which subscribes while it holds it. */
  methodRequest: {
    name: 'method.request',
    tokens: (deviceId: string, moduleId: string | null) => [subjectToken(deviceId), moduleId === null ? '$device' : subjectToken(moduleId)],
  } as RequestSubject<MethodRequest, MethodReply, [string, string | null]>,
} as const;

export interface Envelope<T> {
  /** The publishing node's id. */
  node: string;
  data: T;
}

export type Handler<T> = (data: T, meta: { node: string; local: boolean }) => void | Promise<void>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The hub's typed face of the bus: subjects live under `<prefix>.`, which names the hub (its id in
 * the store), so two hubs sharing one NATS never hear each other.
 */
export class HubBus {
  /**
   * One bus handler per serving function, shared by all its subscriptions: the hub serves each
   * held device's method subject with the same function, and a wrapper per device was part of
   * every idle device's memory.
   */
  readonly #responders = new WeakMap<(data: unknown, meta: { node: string }) => Promise<unknown>, BusHandler>();

  constructor(
    readonly bus: Bus,
    readonly prefix: string,
  ) {}

  get nodeId(): string {
    return this.bus.nodeId;
  }

  #subject<A extends unknown[]>(s: Subject<unknown, A>, args: A): string {
    return [this.prefix, s.name, ...s.tokens(...args)].join('.');
  }

  #encode<T>(data: T): Uint8Array {
    const env: Envelope<T> = { node: this.bus.nodeId, data };
    return encoder.encode(JSON.stringify(env));
  }

  #decode<T>(bytes: Uint8Array): Envelope<T> {
    return JSON.parse(decoder.decode(bytes)) as Envelope<T>;
  }

  publish<T>(s: Subject<T>, data: T): void;
  publish<T, A extends unknown[]>(s: Subject<T, A>, data: T, ...args: A): void;
  publish<T, A extends unknown[]>(s: Subject<T, A>, data: T, ...args: A): void {
    try {
      this.bus.publish(this.#subject(s, args), this.#encode(data));
    } catch (err) {
      // A notification after the bus closed (the node is stopping) is dropped, as NATS core
      // drops one nobody hears: what it tells of is in the store already.
      if (!(err instanceof BusClosedError)) throw err;
    }
  }

  subscribe<T>(s: Subject<T>, handler: Handler<T>, opts?: SubscribeOptions): BusSubscription {
    return this.bus.subscribe(
      this.#subject(s, [] as unknown as []),
      (msg) => {
        const env = this.#decode<T>(msg.data);
        return handler(env.data, { node: env.node, local: env.node === this.bus.nodeId });
      },
      opts,
    );
  }

  /** Asks whoever serves the subject; rejects with BusNoRespondersError or BusTimeoutError. */
  async request<Q, R, A extends unknown[]>(s: RequestSubject<Q, R, A>, data: Q, timeoutMs: number, ...args: A): Promise<R> {
    const answer = await this.bus.request(this.#subject(s, args), this.#encode(data), { timeoutMs });
    return this.#decode<R>(answer).data;
  }

  /** Answers requests on the subject until unsubscribed; a handler that throws leaves the asker to time out. */
  serve<Q, R, A extends unknown[]>(s: RequestSubject<Q, R, A>, handler: (data: Q, meta: { node: string }) => Promise<R>, opts: SubscribeOptions, ...args: A): BusSubscription {
    return this.bus.subscribe(this.#subject(s, args), this.#responder(handler as (data: unknown, meta: { node: string }) => Promise<unknown>), opts);
  }

  /** The bus handler that answers requests with `handler` (made once per serving function). */
  #responder(handler: (data: unknown, meta: { node: string }) => Promise<unknown>): BusHandler {
    let wrapped = this.#responders.get(handler);
    if (wrapped === undefined) {
      wrapped = async (msg) => {
        const env = this.#decode<unknown>(msg.data);
        const reply = await handler(env.data, { node: env.node });
        msg.respond(this.#encode(reply));
      };
      this.#responders.set(handler, wrapped);
    }
    return wrapped;
  }
}
