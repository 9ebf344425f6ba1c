/**
 * Live device sessions on this node: one per identity (a new CONNECT takes over the old one,
 * wire doc §3.1), found by identity for C2D, direct methods and desired-property pushes, and
 * dropped at once when the registry changes the identity (disable, delete, re-key; session-guard.ts).
 *
 * On the bus: a session that registers announces its claim (`session.claimed`), and a claim from
 * another node closes this node's session for the same identity (one connection per identity in
 * the cluster); while it holds an identity, this node answers the method requests for it
 * (`method.request.<device>.<module>`); C2D mail and desired-property patches for an identity held
 * here reach its session (`c2d.enqueued`, `twin.desired.changed`), whichever node they came from.
 */
import { randomUUID } from 'node:crypto';
import type { BusSubscription } from '../bus/bus.js';
import { SUBJECTS, type HubBus, type MethodReply, type MethodRequest } from '../bus/subjects.js';
import type { JsonObject, JsonValue } from '../core/json.js';
import type { MessageTally } from '../core/tally.js';
import type { SourceEventSink } from '../routing/routed-events.js';
import { connectionSequenceNumber, connectionStateEvent, preciseNowMs } from '../routing/source-events.js';

export interface LiveSession {
  readonly deviceId: string;
  readonly moduleId: string | null;
  /** Lower-case hex serial of the client certificate the session authenticated with, if any. */
  readonly certificateSerial?: string | undefined;
  /** Upper-case hex SHA-1 and SHA-256 of that certificate. */
  readonly certificateThumbprints?: readonly string[] | undefined;
  /** Where the session comes from, its TLS version and how it authenticated (hub settings apply to these; metrics count by them). */
  readonly remoteAddress?: string | undefined;
  readonly tlsVersion?: string | undefined;
  readonly authMethod?: string | undefined;
  readonly policyName?: string | undefined;
  /** keyFingerprint of the device or module key a SAS session proved (src/auth/sas.ts). */
  readonly keyFingerprint?: string | undefined;
  /** Transport (mqtt, mqtt-ws, ...), for metrics. */
  readonly protocol?: string | undefined;
  /** Closes the connection; `reason` goes to the log. */
  close(reason: string): void;
  /** Pushes a desired-properties patch when the device listens for them; true when it went out. */
  pushDesired(patch: JsonObject): boolean;
  /** Sends a method request; false when the device has not subscribed to methods. */
  sendMethodRequest(name: string, payload: JsonValue, requestId: string): boolean;
  /** New C2D mail for this device. */
  notifyC2d(): void;
  /** True once the device has subscribed to direct methods. */
  acceptsMethods(): boolean;
}

export function identityKey(deviceId: string, moduleId: string | null): string {
  return moduleId === null ? deviceId : `${deviceId}/${moduleId}`;
}

interface Waiter {
  ready: (session: LiveSession) => boolean;
  done: (session: LiveSession) => void;
}

/** Answers a method request for an identity this node holds (MethodService). */
export type MethodResponder = (request: MethodRequest) => Promise<MethodReply>;

export class ConnectionTable {
  readonly #sessions = new Map<string, LiveSession>();
  readonly #waiters = new Map<string, Set<Waiter>>();
  /** Per identity held here: the method-request subscription and the id of the claim this node announced. */
  readonly #held = new Map<string, { methods: BusSubscription; claim: string; at: number }>();
  /** Sessions this registry dropped (a change ended them) that have not yet unregistered. */
  readonly #dropped = new WeakSet<LiveSession>();
  /** One handler for every held identity's method subscription (the request names its device): not a closure per session. */
  readonly #serveMethod: MethodResponder = (r) => this.#methods(r);
  #methods: MethodResponder = async (r) => ({ error: { code: 'DeviceNotOnline', message: `Device ${identityKey(r.deviceId, r.moduleId)} is not online.` } });

  #events: SourceEventSink | undefined;
  #eventCount = 0;

  /** Connection state events for routes on DeviceConnectionStateEvents (routing/routed-events.ts). */
  routeEventsTo(events: SourceEventSink): void {
    this.#events = events;
  }

  #connectionState(session: LiveSession, opType: 'deviceConnected' | 'deviceDisconnected'): void {
    const events = this.#events;
    if (events === undefined) return;
    const now = preciseNowMs();
    const seq = connectionSequenceNumber(now, this.#eventCount++);
    events.emit('DeviceConnectionStateEvents', () => connectionStateEvent({ hubName: events.hubName, deviceId: session.deviceId, moduleId: session.moduleId, now: new Date(Math.floor(now)).toISOString() }, opType, seq));
  }

  constructor(
    private readonly bus: HubBus,
    private readonly tally: MessageTally,
  ) {
    bus.subscribe(SUBJECTS.sessionClaimed, (claim, meta) => {
      if (meta.local) return;
      // Another node took this identity: ours goes if it is the older session. Two claims can
      // cross on the wire; the later (then the greater node id) wins on both nodes.
      const key = identityKey(claim.deviceId, claim.moduleId);
      const s = this.#sessions.get(key);
      const ours = this.#held.get(key);
      if (s === undefined) return;
      if (ours !== undefined && (ours.at > claim.at || (ours.at === claim.at && bus.nodeId > meta.node))) return;
      this.#forget(key);
      s.close(`session taken over on node ${meta.node}`);
    });
    bus.subscribe(SUBJECTS.c2dEnqueued, (mail) => this.get(mail.deviceId, null)?.notifyC2d());
    // Mail and claims announced while the bus was away may be lost: every session looks at its
    // queue again, and every identity held here is claimed again (the older session still yields).
    bus.subscribe(SUBJECTS.busResync, () => {
      for (const [key, s] of this.#sessions) {
        s.notifyC2d();
        const held = this.#held.get(key);
        if (held !== undefined) this.bus.publish(SUBJECTS.sessionClaimed, { deviceId: s.deviceId, moduleId: s.moduleId, sessionId: held.claim, protocol: s.protocol ?? 'unknown', at: held.at });
      }
    });
    bus.subscribe(SUBJECTS.desiredChanged, (change) => {
      if (this.get(change.deviceId, change.moduleId)?.pushDesired(change.patch) === true) this.tally.twinOut++;
    });
    bus.subscribe(SUBJECTS.twinsChanged, ({ twins }) => {
      for (const t of twins) if (t.desired !== undefined && this.get(t.deviceId, t.moduleId)?.pushDesired(t.desired) === true) this.tally.twinOut++;
    });
  }

  /** Who answers the method requests for the identities held here. */
  serveMethods(responder: MethodResponder): void {
    this.#methods = responder;
  }

  /** Registers a session; returns the one it replaces (the caller closes it). */
  register(session: LiveSession): LiveSession | undefined {
    const key = identityKey(session.deviceId, session.moduleId);
    const previous = this.#sessions.get(key);
    this.#sessions.set(key, session);
    if (previous !== session) {
      this.#claim(key, session);
      // A takeover too (here, or of a session on another node, which then reports nothing): the
      // identity stays connected, and a new deviceConnected with a greater sequence number tells
      // a consumer it reconnected, as Azure's "same event, different sequence number" does.
      this.#connectionState(session, 'deviceConnected');
    }
    this.changed(session);
    return previous === session ? undefined : previous;
  }

  #claim(key: string, session: LiveSession): void {
    const claim = randomUUID();
    const at = Date.now();
    let held = this.#held.get(key);
    if (held === undefined) {
      const methods = this.bus.serve(SUBJECTS.methodRequest, this.#serveMethod, { queue: 'holder' }, session.deviceId, session.moduleId);
      held = { methods, claim, at };
      this.#held.set(key, held);
    } else Object.assign(held, { claim, at });
    this.bus.publish(SUBJECTS.sessionClaimed, { deviceId: session.deviceId, moduleId: session.moduleId, sessionId: claim, protocol: session.protocol ?? 'unknown', at });
  }

  /** The identity is no longer held here. */
  #forget(key: string): void {
    this.#sessions.delete(key);
    const held = this.#held.get(key);
    if (held === undefined) return;
    this.#held.delete(key);
    held.methods.unsubscribe();
  }

  /** A session's abilities changed (e.g. it subscribed): wake whoever waits for them. */
  changed(session: LiveSession): void {
    const key = identityKey(session.deviceId, session.moduleId);
    const waiters = this.#waiters.get(key);
    if (waiters === undefined || this.#sessions.get(key) !== session) return;
    for (const w of [...waiters]) {
      if (w.ready(session)) {
        waiters.delete(w);
        w.done(session);
      }
    }
    if (waiters.size === 0) this.#waiters.delete(key);
  }

  /**
   * Removes the session if it is still the registered one. True also for a session this registry
   * dropped, unless a new one took the identity since: its end is the identity's disconnect.
   */
  unregister(session: LiveSession): boolean {
    const key = identityKey(session.deviceId, session.moduleId);
    if (this.#dropped.has(session)) {
      this.#dropped.delete(session);
      if (this.#sessions.has(key)) return false;
      this.#connectionState(session, 'deviceDisconnected');
      return true;
    }
    if (this.#sessions.get(key) !== session) return false;
    this.#forget(key);
    this.#connectionState(session, 'deviceDisconnected');
    return true;
  }

  get(deviceId: string, moduleId: string | null): LiveSession | undefined {
    return this.#sessions.get(identityKey(deviceId, moduleId));
  }

  /**
   * Resolves with the identity's session once it is connected and `ready` holds, or with
   * whatever is there (possibly undefined) after `timeoutMs`.
   */
  waitFor(deviceId: string, moduleId: string | null, timeoutMs: number, ready: (s: LiveSession) => boolean = () => true): Promise<LiveSession | undefined> {
    const now = this.get(deviceId, moduleId);
    if ((now !== undefined && ready(now)) || timeoutMs <= 0) return Promise.resolve(now);
    const key = identityKey(deviceId, moduleId);
    return new Promise((resolve) => {
      let set = this.#waiters.get(key);
      if (set === undefined) {
        set = new Set();
        this.#waiters.set(key, set);
      }
      const waiter: Waiter = {
        ready,
        done: (s) => {
          clearTimeout(timer);
          resolve(s);
        },
      };
      const timer = setTimeout(() => {
        set?.delete(waiter);
        resolve(this.get(deviceId, moduleId));
      }, timeoutMs);
      set.add(waiter);
    });
  }

  /** Drops every session of a device (its own and its modules'). */
  dropDevice(deviceId: string, reason: string): number {
    let n = 0;
    for (const [key, s] of this.#sessions) {
      if (s.deviceId === deviceId) {
        this.#forget(key);
        this.#dropped.add(s);
        s.close(reason);
        n++;
      }
    }
    return n;
  }

  /** Drops every session the predicate selects (e.g. by certificate serial on revocation). */
  dropWhere(predicate: (session: LiveSession) => boolean, reason: string): number {
    let n = 0;
    for (const [key, s] of this.#sessions) {
      if (!predicate(s)) continue;
      this.#forget(key);
      this.#dropped.add(s);
      s.close(reason);
      n++;
    }
    return n;
  }

  dropModule(deviceId: string, moduleId: string, reason: string): boolean {
    const s = this.get(deviceId, moduleId);
    if (s === undefined) return false;
    this.#forget(identityKey(deviceId, moduleId));
    this.#dropped.add(s);
    s.close(reason);
    return true;
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** The live sessions, for counting at a metrics scrape (do not register or drop while iterating). */
  sessions(): IterableIterator<LiveSession> {
    return this.#sessions.values();
  }

  closeAll(reason: string): void {
    for (const [key, s] of [...this.#sessions]) {
      this.#forget(key);
      s.close(reason);
    }
  }
}
