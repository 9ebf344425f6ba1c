/**
 * Live device sessions on this node: one per identity (a new CONNECT takes over the old one,
 * wire doc §3.1), found by identity for C2D, direct methods and desired-property pushes, and
 * dropped at once when the registry changes the identity (disable, delete, re-key).
 */
import type { JsonObject, JsonValue } from '../core/json.js';

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

export class ConnectionRegistry {
  readonly #sessions = new Map<string, LiveSession>();
  readonly #waiters = new Map<string, Set<Waiter>>();

  /** Registers a session; returns the one it replaces (the caller closes it). */
  register(session: LiveSession): LiveSession | undefined {
    const key = identityKey(session.deviceId, session.moduleId);
    const previous = this.#sessions.get(key);
    this.#sessions.set(key, session);
    this.changed(session);
    return previous === session ? undefined : previous;
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

  /** Removes the session if it is still the registered one. */
  unregister(session: LiveSession): boolean {
    const key = identityKey(session.deviceId, session.moduleId);
    if (this.#sessions.get(key) !== session) return false;
    this.#sessions.delete(key);
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
        this.#sessions.delete(key);
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
      this.#sessions.delete(key);
      s.close(reason);
      n++;
    }
    return n;
  }

  dropModule(deviceId: string, moduleId: string, reason: string): boolean {
    const s = this.get(deviceId, moduleId);
    if (s === undefined) return false;
    this.#sessions.delete(identityKey(deviceId, moduleId));
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
    for (const s of this.#sessions.values()) s.close(reason);
    this.#sessions.clear();
  }
}
