/**
 * The alert engine: rules (alert-rules.ts) evaluated over the SecurityEvents stream in sliding
 * windows, and over the certificate inventory on a schedule. Each (rule, key) is quiet or firing:
 * it fires once when its window count goes above the threshold, and resolves when the count is
 * back to at most the threshold (checked on every event and on a periodic tick, so a window that
 * merely ages out resolves too). A firing and its resolution each go to the rule's actions: the
 * log (warn / info) and a webhook (alert-notifier.ts); the history table keeps both and the delivery
 * outcome.
 *
 * Nothing here can hurt the hub: event handling is synchronous counting; store writes are queued
 * in order and their failures logged; deliveries run in the background (one alert's
 * notifications in order) and are aborted when the hub stops.
 *
 * Memory is bounded: a window keeps at most max(threshold + 1, cap) event times per key (cap
 * 100,000 for the hub-wide key, 1,000 per identity; the reported value saturates there), and a
 * per-identity rule tracks at most 10,000 identities at once (beyond that the oldest-tracked
 * quiet identity is forgotten).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { HubError } from '../core/errors.js';
import type { JsonObject } from '../core/json.js';
import type { AlertRecord, AlertRuleKind, AlertRuleRecord, AlertStore } from '../store/alert-ports.js';
import type { MetaStore } from '../store/ports.js';
import { type AlertPayload, DEFAULT_RULES, HUB_KEY, MAX_RULES, WINDOWED_KINDS, alertSummary, parseRuleInput, ruleRecord, validateRuleName } from './alert-rules.js';
import { TimeWindow } from './time-window.js';
import type { AlertSharing, RemoteCount } from './alert-sharing.js';

export type { AlertPayload } from './alert-rules.js';
import type { SecurityEvent, SecurityEvents } from '../core/security-events.js';
import type { DeliveryPolicy, FetchLike } from './webhook.js';
import { AlertNotifier } from './alert-notifier.js';

const DAY_MS = 86_400_000;
const HUB_KEY_CAP = 100_000;
const IDENTITY_KEY_CAP = 1_000;
const MAX_KEYS_PER_RULE = 10_000;
const HISTORY_RETENTION_MS = 90 * DAY_MS;
const PRUNE_EVERY_MS = 3_600_000;
const DEFAULTS_META_KEY = 'alerts.defaults-created';

/** Where certificateExpiry rules look. */
export interface CertificateInventory {
  /** CA certificates registered on the hub. */
  caCertificates(): Promise<ReadonlyArray<{ name: string; subject: string; expiry: string }>>;
  /** Certificates Gatehouse issued (revoked ones included; the engine skips them). */
  issuedCertificates(): Promise<ReadonlyArray<{ serial: string; caName: string; deviceId: string; notAfter: string; revokedAt: string | null }>>;
}

export interface AlertEngineOptions {
  store: AlertStore;
  meta: Pick<MetaStore, 'getMeta' | 'setMeta'>;
  events: SecurityEvents;
  certificates: CertificateInventory;
  clock: Clock;
  logger: Logger;
  /** The hub's name in notifications. */
  hub: string;
  /** Periodic evaluation of windows; 0: none (tests call evaluate()). Default 5 s. */
  tickMs?: number;
  /** Certificate expiry check; 0: only at start and on rule changes. Default 10 min. */
  certificateCheckMs?: number;
  delivery?: DeliveryPolicy;
  fetch?: FetchLike;
  /** The cluster's counts in every window, and one firing per alert (alert-sharing.ts). */
  sharing?: AlertSharing;
}

interface Firing {
  id: string;
  firedAt: number;
  value: number;
  details: JsonObject;
  /** Another node fired it (or the claim is still out): this node neither notifies nor resolves it. */
  follower?: boolean;
}

interface RuleState {
  rule: AlertRuleRecord;
  windows: Map<string, TimeWindow>;
  firing: Map<string, Firing>;
}

const iso = (ms: number) => new Date(ms).toISOString();

export class AlertEngine {
  readonly #o: AlertEngineOptions;
  readonly #rules = new Map<string, RuleState>();
  #writes: Promise<void> = Promise.resolve();
  readonly #notifier: AlertNotifier;
  #unsubscribe: (() => void) | undefined;
  #timers: NodeJS.Timeout[] = [];
  #certCheck: Promise<void> | undefined;
  #lastPrune = 0;
  #reloads: Promise<void> = Promise.resolve();
  #keyOverflowLogged = false;

  constructor(opts: AlertEngineOptions) {
    this.#o = opts;
    this.#notifier = new AlertNotifier({
      logger: opts.logger,
      now: () => opts.clock.now(),
      ...(opts.delivery === undefined ? {} : { delivery: opts.delivery }),
      ...(opts.fetch === undefined ? {} : { fetch: opts.fetch }),
      delivered: (id, state, at, result) => this.#write(id, () => opts.store.recordDelivery(id, result.attempts, { at, state, ...result })),
    });
  }

  // ---------------------------------------------------------------- lifecycle

  /** Creates the default rules on the first start, loads rules and open alerts, listens. */
  async start(): Promise<void> {
    const { store, meta, clock } = this.#o;
    if ((await meta.getMeta(DEFAULTS_META_KEY)) === undefined) {
      const now = iso(clock.now());
      for (const d of DEFAULT_RULES) await store.addRuleIfAbsent(ruleRecord(d.name, d.input, undefined, now));
      await meta.setMeta(DEFAULTS_META_KEY, now);
    }
    for (const rule of await store.listRules()) this.#rules.set(rule.name, { rule, windows: new Map(), firing: new Map() });
    // Alerts still open from before a restart: adopted, not fired again. A windowed one resolves
    // at the next evaluation unless new events keep it up.
    for (const a of await store.listAlerts({ state: 'fired', limit: 10_000 })) {
      const state = this.#rules.get(a.rule);
      if (state === undefined || !state.rule.enabled || state.rule.kind !== a.kind) {
        await store.resolveAlert(a.id, { value: a.value, resolvedAt: iso(clock.now()), summary: `${a.summary} (resolved: the rule no longer applies)` });
        continue;
      }
      state.firing.set(a.key, { id: a.id, firedAt: Date.parse(a.firedAt), value: a.value, details: a.details });
    }
    const local = this.#o.events.on((e) => this.#onEvent(e));
    const remote = this.#o.sharing?.onRemote((c) => this.#onRemote(c));
    const rules = this.#o.sharing?.onRuleChanged((name) => this.#reload(name));
    this.#unsubscribe = () => (local(), remote?.(), rules?.(), this.#o.sharing?.stop());
    const tickMs = this.#o.tickMs ?? 5000;
    if (tickMs > 0) this.#timers.push(setInterval(() => this.evaluate(), tickMs));
    const certMs = this.#o.certificateCheckMs ?? 600_000;
    // checkCertificates never rejects: a failed check is logged.
    if (certMs > 0) this.#timers.push(setInterval(() => void this.checkCertificates(), certMs));
    for (const t of this.#timers) t.unref();
    void this.checkCertificates();
  }

  /** Stops listening and ticking, aborts webhook retries, and waits for queued writes. Call before the store closes. */
  async stop(): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#notifier.stop();
    await this.#reloads;
    await this.#certCheck;
    await this.whenIdle();
  }

  /** Resolves once queued store writes and running deliveries are done (tests). */
  async whenIdle(): Promise<void> {
    for (;;) {
      const writes = this.#writes;
      const deliveries = this.#notifier.running;
      await Promise.all([writes, ...deliveries]);
      if (writes === this.#writes && this.#notifier.running.length === 0) return;
    }
  }

  // ---------------------------------------------------------------- rules (REST)

  async listRules(): Promise<AlertRuleRecord[]> {
    return this.#o.store.listRules();
  }

  /** Creates or replaces a rule from an operator's body; returns the rule before and after. */
  async putRule(name: string, body: unknown): Promise<{ before: AlertRuleRecord | undefined; after: AlertRuleRecord }> {
    validateRuleName(name);
    const input = parseRuleInput(body);
    const before = await this.#o.store.getRule(name);
    if (before === undefined && (await this.#o.store.listRules()).length >= MAX_RULES) {
      throw new HubError('IotHubQuotaExceeded', `The hub already has the maximum of ${MAX_RULES} alert rules.`);
    }
    const after = ruleRecord(name, input, before, iso(this.#o.clock.now()));
    await this.#o.store.putRule(after);
    this.#replaceRule(name, after);
    this.#o.sharing?.ruleChanged(name);
    return { before, after };
  }

  /** Deletes a rule (its open alerts resolve); ResourceNotFound when there is none. */
  async deleteRule(name: string): Promise<AlertRuleRecord> {
    validateRuleName(name);
    const before = await this.#o.store.getRule(name);
    if (before === undefined || !(await this.#o.store.deleteRule(name))) throw new HubError('ResourceNotFound', `No alert rule named '${name}'.`);
    this.#replaceRule(name, undefined);
    this.#o.sharing?.ruleChanged(name);
    return before;
  }

  /**
   * Another node changed the rule `name` (undefined: maybe any rule, the bus was away): read it
   * again from the store. Reloads run one after another, so an older read never lands last.
   */
  #reload(name: string | undefined): void {
    const { store, logger } = this.#o;
    this.#reloads = this.#reloads.then(async () => {
      if (this.#unsubscribe === undefined) return;
      if (name !== undefined) {
        this.#replaceRule(name, await store.getRule(name));
        return;
      }
      const stored = new Map((await store.listRules()).map((r) => [r.name, r]));
      for (const [n, s] of [...this.#rules]) if (!stored.has(n)) this.#replaceRule(n, undefined);
      for (const [n, r] of stored) if (this.#rules.get(n)?.rule.updated !== r.updated) this.#replaceRule(n, r);
    }).catch((err: unknown) => logger.warn({ err, event: 'alerts.reload-failed', rule: name }, 'could not reload an alert rule changed on another node'));
  }

  #replaceRule(name: string, rule: AlertRuleRecord | undefined): void {
    const old = this.#rules.get(name);
    const same =
      old !== undefined &&
      rule !== undefined &&
      rule.enabled &&
      old.rule.kind === rule.kind &&
      old.rule.scope === rule.scope &&
      (old.rule.reasons ?? []).join() === (rule.reasons ?? []).join() &&
      old.rule.days === rule.days &&
      old.rule.threshold === rule.threshold &&
      old.rule.windowSeconds === rule.windowSeconds;
    if (old !== undefined && !same) {
      // A different rule now: what the old one had open resolves (through the old actions).
      const why = rule === undefined ? 'rule deleted' : !rule.enabled ? 'rule disabled' : 'rule changed';
      for (const key of [...old.firing.keys()]) this.#resolve(old, key, old.firing.get(key)?.value ?? 0, why);
    }
    if (rule === undefined) {
      this.#rules.delete(name);
      return;
    }
    if (old !== undefined && same) {
      old.rule = rule; // same evaluation, new actions
      return;
    }
    this.#rules.set(name, { rule, windows: new Map(), firing: new Map() });
    // Never rejects (a failed check is logged); the rule's update does not wait for it.
    if (rule.kind === 'certificateExpiry' && rule.enabled && this.#unsubscribe !== undefined) void this.checkCertificates();
  }

  // ---------------------------------------------------------------- state (metrics, REST)

  /** Firing alerts per rule, every rule listed. */
  firingByRule(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [name, s] of this.#rules) out.set(name, s.firing.size);
    return out;
  }

  listAlerts(query: { state?: 'fired' | 'resolved'; rule?: string; limit: number }): Promise<AlertRecord[]> {
    return this.#o.store.listAlerts(query);
  }

  // ---------------------------------------------------------------- evaluation

  #onEvent(e: SecurityEvent): void {
    if (e.type === 'auth') {
      if (e.outcome !== 'failure') return;
      for (const s of this.#rules.values()) {
        if (s.rule.kind !== 'authFailures' || !s.rule.enabled) continue;
        if (s.rule.reasons !== null && !s.rule.reasons.includes(e.reasonCode ?? 'other')) continue;
        const key = s.rule.scope === 'device' ? `${e.subject}:${e.identity === '' ? '(none)' : e.identity}` : HUB_KEY;
        this.#count(s, key, 1, { subject: e.subject, identity: e.identity, reason: e.reasonCode ?? 'other', protocol: e.protocol, remote: e.remote });
      }
    } else if (e.type === 'c2d') {
      if (e.outcome !== 'dead-lettered') return;
      for (const s of this.#rules.values()) {
        if (s.rule.kind === 'c2dDeadLetters' && s.rule.enabled) this.#count(s, HUB_KEY, e.count, { lastDeviceId: e.deviceId });
      }
    } else if (e.type === 'session') {
      if (e.state !== 'disconnected') return;
      for (const s of this.#rules.values()) {
        if (s.rule.kind === 'disconnectStorm' && s.rule.enabled) this.#count(s, HUB_KEY, 1, { lastDeviceId: e.deviceId, lastProtocol: e.protocol });
      }
    }
  }

  /** Events another node counted: into the same windows, without publishing them again. */
  #onRemote(c: RemoteCount): void {
    const s = this.#rules.get(c.rule);
    if (s === undefined || !s.rule.enabled || !WINDOWED_KINDS.has(s.rule.kind) || !(c.n > 0)) return;
    this.#count(s, c.key, c.n, c.details, Math.min(c.at, this.#o.clock.now()));
  }

  #count(s: RuleState, key: string, n: number, details: JsonObject, remoteAt?: number): void {
    const threshold = s.rule.threshold ?? 0;
    const windowMs = (s.rule.windowSeconds ?? 60) * 1000;
    const now = remoteAt ?? this.#o.clock.now();
    if (remoteAt === undefined) this.#o.sharing?.counted(s.rule.name, key, n, now, details);
    let w = s.windows.get(key);
    if (w === undefined) {
      if (s.windows.size >= MAX_KEYS_PER_RULE && !this.#makeRoom(s)) return;
      w = new TimeWindow();
      s.windows.set(key, w);
    }
    w.add(now, n, Math.max(threshold + 1, key === HUB_KEY ? HUB_KEY_CAP : IDENTITY_KEY_CAP));
    const value = w.count(this.#o.clock.now(), windowMs);
    if (value > threshold && !s.firing.has(key)) this.#fire(s, key, value, details);
  }

  /**
   * Makes room in a full rule by forgetting its oldest-tracked key that is not firing (the tick
   * forgets idle keys anyway); false when every key is firing (the new key is not tracked).
   */
  #makeRoom(s: RuleState): boolean {
    for (const k of s.windows.keys()) {
      if (s.firing.has(k)) continue;
      s.windows.delete(k);
      return true;
    }
    if (!this.#keyOverflowLogged) {
      this.#keyOverflowLogged = true;
      this.#o.logger.warn({ event: 'alerts.keys-full', rule: s.rule.name, keys: MAX_KEYS_PER_RULE }, 'alert rule tracks the maximum number of keys; new keys are not counted');
    }
    return false;
  }

  /** Resolves windows that aged back to the threshold, forgets idle keys, prunes old history. Runs on the tick. */
  evaluate(): void {
    const now = this.#o.clock.now();
    for (const s of this.#rules.values()) {
      if (!WINDOWED_KINDS.has(s.rule.kind)) continue;
      const threshold = s.rule.threshold ?? 0;
      const windowMs = (s.rule.windowSeconds ?? 60) * 1000;
      for (const [key, w] of s.windows) {
        const value = w.count(now, windowMs);
        const firing = s.firing.has(key);
        if (firing && value <= threshold) this.#resolve(s, key, value);
        if (value === 0 && !s.firing.has(key)) s.windows.delete(key);
      }
      // Adopted after a restart, with no events since: the window is empty.
      for (const key of [...s.firing.keys()]) if (!s.windows.has(key)) this.#resolve(s, key, 0);
    }
    if (now - this.#lastPrune >= PRUNE_EVERY_MS) {
      this.#lastPrune = now;
      this.#write('prune', async () => {
        const n = await this.#o.store.pruneResolved(iso(now - HISTORY_RETENTION_MS));
        if (n > 0) this.#o.logger.info({ event: 'alerts.pruned', alerts: n }, 'pruned old resolved alerts');
      });
    }
  }

  /** Evaluates every certificateExpiry rule against the registered CA certificates and the issued certificates. */
  checkCertificates(): Promise<void> {
    this.#certCheck ??= this.#checkCertificates()
      .catch((err: unknown) => this.#o.logger.warn({ err, event: 'alerts.certificate-check-failed' }, 'certificate expiry check failed'))
      .finally(() => {
        this.#certCheck = undefined;
      });
    return this.#certCheck;
  }

  async #checkCertificates(): Promise<void> {
    const rules = [...this.#rules.values()].filter((s) => s.rule.kind === 'certificateExpiry' && s.rule.enabled);
    if (rules.length === 0) return;
    const cas = await this.#o.certificates.caCertificates();
    const issued = await this.#o.certificates.issuedCertificates();
    // A device's older certificates are superseded by its newest one (renewal); revoked ones are out.
    const newest = new Map<string, (typeof issued)[number]>();
    for (const c of issued) {
      if (c.revokedAt !== null) continue;
      const cur = newest.get(c.deviceId);
      if (cur === undefined || Date.parse(c.notAfter) > Date.parse(cur.notAfter)) newest.set(c.deviceId, c);
    }
    const now = this.#o.clock.now();
    const certs = [
      ...cas.map((c) => ({ key: `ca:${c.name}`, notAfter: c.expiry, details: { type: 'ca', name: c.name, subject: c.subject, notAfter: c.expiry } as JsonObject })),
      ...[...newest.values()].map((c) => ({
        key: `issued:${c.serial}`,
        notAfter: c.notAfter,
        details: { type: 'device', serial: c.serial, deviceId: c.deviceId, caName: c.caName, notAfter: c.notAfter } as JsonObject,
      })),
    ];
    for (const s of rules) {
      if (this.#rules.get(s.rule.name) !== s) continue; // replaced while we read
      const limitMs = (s.rule.days ?? 30) * DAY_MS;
      const expiring = new Set<string>();
      for (const c of certs) {
        const left = Date.parse(c.notAfter) - now;
        if (!(left < limitMs)) continue;
        expiring.add(c.key);
        if (!s.firing.has(c.key)) this.#fire(s, c.key, Math.floor(left / DAY_MS), c.details);
      }
      for (const key of [...s.firing.keys()]) if (!expiring.has(key)) this.#resolve(s, key, 0);
    }
  }

  // ---------------------------------------------------------------- fire / resolve

  #fire(s: RuleState, key: string, value: number, details: JsonObject): void {
    const now = this.#o.clock.now();
    const firing: Firing = { id: randomUUID(), firedAt: now, value, details };
    s.firing.set(key, firing);
    const sharing = this.#o.sharing;
    if (sharing?.claims !== true || !WINDOWED_KINDS.has(s.rule.kind)) return this.#fired(s, key, firing);
    // In a cluster another node may cross the same threshold now: the store picks one to fire.
    firing.follower = true;
    // Never rejects: a failed claim is logged, and this node stays a follower.
    void sharing.claim(s.rule.name, key, firing.id, 2 * (s.rule.windowSeconds ?? 60) * 1000).then(
      (winner) => {
        if (winner !== firing.id || s.firing.get(key) !== firing) return;
        firing.follower = false;
        this.#fired(s, key, firing);
      },
      (err: unknown) => this.#o.logger.warn({ err, event: 'alerts.claim-failed', rule: s.rule.name }, 'could not claim an alert firing; another node may fire it'),
    );
  }

  #fired(s: RuleState, key: string, firing: Firing): void {
    const { firedAt: now, value, details } = firing;
    const payload = this.#payload(s.rule, key, firing, 'fired', value, undefined);
    const record: AlertRecord = {
      id: firing.id,
      rule: s.rule.name,
      kind: s.rule.kind,
      key,
      state: 'fired',
      value,
      threshold: payload.alert.threshold,
      windowSeconds: s.rule.windowSeconds,
      firedAt: iso(now),
      resolvedAt: null,
      summary: payload.alert.summary,
      details,
      deliveries: 0,
      lastDelivery: null,
    };
    this.#write(firing.id, () => this.#o.store.insertAlert(record));
    this.#notifier.notify(s.rule, payload);
  }

  #resolve(s: RuleState, key: string, value: number, why?: string): void {
    const firing = s.firing.get(key);
    if (firing === undefined) return;
    s.firing.delete(key);
    // The node that fired it resolves it; a follower only forgets it.
    if (firing.follower === true) return;
    // A release that fails leaves the claim to lapse after twice the window.
    if (this.#o.sharing?.claims === true) void this.#o.sharing.release(s.rule.name, key, firing.id).catch(() => undefined);
    const now = this.#o.clock.now();
    const payload = this.#payload(s.rule, key, firing, 'resolved', value, now, why);
    this.#write(firing.id, async () => {
      await this.#o.store.resolveAlert(firing.id, { value, resolvedAt: iso(now), summary: payload.alert.summary });
    });
    this.#notifier.notify(s.rule, payload);
  }

  #payload(rule: AlertRuleRecord, key: string, f: Firing, state: 'fired' | 'resolved', value: number, resolvedAt: number | undefined, why?: string): AlertPayload {
    const threshold = rule.kind === 'certificateExpiry' ? (rule.days ?? 0) : (rule.threshold ?? 0);
    let summary = alertSummary(rule, key, state, value, f.details);
    if (why !== undefined) summary = `${summary} (${why})`;
    return {
      alert: {
        id: f.id,
        rule: rule.name,
        kind: rule.kind,
        key,
        state,
        value,
        threshold,
        windowSeconds: rule.windowSeconds,
        firedAt: iso(f.firedAt),
        ...(resolvedAt === undefined ? {} : { resolvedAt: iso(resolvedAt) }),
        hub: this.#o.hub,
        summary,
        details: f.details,
      },
    };
  }

  /** Store writes, one after another in the order they were made; a failure is logged, never thrown. */
  #write(what: string, fn: () => Promise<unknown>): void {
    this.#writes = this.#writes.then(fn).then(
      () => undefined,
      (err: unknown) => this.#o.logger.error({ err, event: 'alerts.store-failed', alert: what }, 'could not record an alert'),
    );
  }
}
