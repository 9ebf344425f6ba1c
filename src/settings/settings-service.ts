/**
 * Reading and changing the hub settings. A change is a JSON merge patch on the current settings,
 * validated whole, refused under a stale etag, and either previewed (`dryRun`: what it would cut
 * off) or stored and applied at once: by this node's access gate before the caller hears back,
 * and on the bus (`settings.changed`, the whole document) by every node's gate, C2D defaults and
 * audit log.
 *
 * Guard rails: turning local auth off with no enabled Owner operator, or an IP filter that
 * rejects the caller's own address, would lock the administrators out; both are refused unless
 * `force` is given. TLS 1.0 and 1.1 need `allowLegacyTls` and are logged as a warning.
 */
import { HubError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { MetaStore, PolicyStore } from '../store/ports.js';
import { SUBJECTS, type HubBus } from '../bus/subjects.js';
import type { EnrollmentService } from '../dps/enrollment-service.js';
import { redactSecrets, type SecurityEvents } from '../core/security-events.js';
import type { AccessGate } from '../access/gate.js';
import { IpFilter, normalizeAddress } from '../access/ip-filter.js';
import type { OperatorService } from '../access/operators.js';
import { bodyOf, mergePatch, parseSettingsBody, tlsRank, type HubSettings, type HubSettingsBody } from '../core/settings.js';
import { readSettings, writeSettings } from './settings-store.js';

export interface SettingsChangeRequest {
  patch: unknown;
  ifMatch?: string | undefined;
  dryRun?: boolean;
  force?: boolean;
  allowLegacyTls?: boolean;
  /** `policy:<name>`, `operator:<id>`. */
  actor: string;
  /** The caller's address, when the change came over the network (lock-out check). */
  remote?: string | undefined;
}

export interface SettingsImpact {
  /** Live device and module sessions the change closes. */
  sessions: Array<{ deviceId: string; moduleId: string | null; remote: string | undefined; reason: string }>;
  /** Shared access policies that stop working. */
  policies: string[];
  /** Enrollments whose devices could no longer provision (symmetric keys under disableDeviceSAS). */
  enrollments: Array<{ kind: 'individual' | 'group'; id: string; reason: string }>;
  warnings: string[];
}

export interface SettingsChangeResult {
  dryRun: boolean;
  settings: HubSettings | HubSettingsBody;
  impact: SettingsImpact;
  applied?: { sessionsClosed: number; socketsClosed: number };
}

/** Where the service says that settings took effect on this node (the security log). */
export interface SettingsLog {
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
}

export class SettingsService {
  #current: HubSettings | undefined;
  #writes: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: MetaStore & PolicyStore,
    private readonly clock: Clock,
    private readonly events: SecurityEvents,
    private readonly bus: HubBus,
    private readonly log: SettingsLog,
  ) {
    // Another node changed them: this node's gate applies them too (its own change is applied already).
    bus.subscribe(SUBJECTS.busResync, () => this.refresh());
    bus.subscribe(SUBJECTS.settingsChanged, ({ settings, previousVersion }, meta) => {
      log.info({ event: 'settings.applied', version: settings.version, by: settings.updatedBy, previousVersion, node: meta.node }, 'hub settings applied');
      if (tlsRank(settings.minTlsVersion) < 1.2) log.warn({ event: 'settings.legacy-tls', minTlsVersion: settings.minTlsVersion }, 'TLS below 1.2 is allowed');
      if (meta.local || this.#current === undefined || settings.version <= this.#current.version) return;
      this.#current = settings;
      this.#deps?.gate.apply(settings);
    });
  }

  async load(): Promise<HubSettings> {
    this.#current = await readSettings(this.store);
    return this.#current;
  }

  get current(): HubSettings {
    if (this.#current === undefined) throw new Error('settings not loaded');
    return this.#current;
  }

  /** Needs the gate, operators and enrollments for the impact and lock-out checks. */
  bind(deps: { gate: AccessGate; operators: OperatorService; enrollments: EnrollmentService }): void {
    this.#deps = deps;
  }

  #deps: { gate: AccessGate; operators: OperatorService; enrollments: EnrollmentService } | undefined;

  change(req: SettingsChangeRequest): Promise<SettingsChangeResult> {
    const run = this.#writes.then(async () => {
      try {
        return await this.#change(req);
      } catch (err) {
        if (!(err instanceof HubError && err.code === 'PreconditionFailed')) throw err;
        // Another node changed them: take theirs in; a patch with no If-Match applies on top of it.
        await this.#refresh();
        if (req.ifMatch !== undefined) throw err;
        return this.#change(req);
      }
    });
    this.#writes = run.catch(() => undefined);
    return run;
  }

  /** Re-reads the stored settings and applies them when another node changed them. */
  refresh(): Promise<void> {
    const run = this.#writes.then(() => this.#refresh());
    this.#writes = run.catch(() => undefined);
    return run;
  }

  async #refresh(): Promise<void> {
    const previous = this.current;
    const stored = await readSettings(this.store);
    if (stored.etag === previous.etag) return;
    this.#current = stored;
    this.#deps?.gate.apply(stored);
    // What else follows the settings on this node (and any node that missed them) hears it on the bus.
    this.bus.publish(SUBJECTS.settingsChanged, { settings: stored, previousVersion: previous.version });
  }

  async #change(req: SettingsChangeRequest): Promise<SettingsChangeResult> {
    const deps = this.#deps;
    if (deps === undefined) throw new Error('settings service not bound');
    const previous = this.current;
    if (req.patch === null || typeof req.patch !== 'object' || Array.isArray(req.patch)) throw new HubError('ArgumentInvalid', 'The settings patch must be a JSON object.');
    const { version: _v, etag: _e, updatedAt: _u, updatedBy: _b, ...patch } = req.patch as Record<string, unknown>;
    const next = parseSettingsBody(mergePatch(structuredClone(bodyOf(previous)), patch));
    if (req.ifMatch !== undefined && req.ifMatch !== '*' && req.ifMatch.replace(/^W\//, '').replace(/"/g, '') !== previous.etag) {
      throw new HubError('PreconditionFailed', `The settings changed (etag ${previous.etag}); read them again.`);
    }
    const warnings: string[] = [];
    if (tlsRank(next.minTlsVersion) < 1.2) {
      if (req.allowLegacyTls !== true) throw new HubError('ArgumentInvalid', `minTlsVersion ${next.minTlsVersion} is deprecated and insecure; pass allowLegacyTls to set it anyway.`);
      warnings.push(`minTlsVersion ${next.minTlsVersion} allows TLS versions with known weaknesses; use 1.2 or 1.3`);
    }
    const impact = await this.#impact(previous, next, warnings);
    const lockouts = this.#lockouts(next, req, deps.operators);
    if (lockouts.length > 0 && req.force !== true && req.dryRun !== true) throw new HubError('SettingsLockout', `${lockouts.join('; ')}. Pass force to apply anyway.`);
    warnings.push(...lockouts);
    if (req.dryRun === true) return { dryRun: true, settings: next, impact };

    const stored = await writeSettings(this.store, next, previous, req.actor, this.clock.now());
    this.#current = stored;
    const applied = deps.gate.apply(stored);
    this.bus.publish(SUBJECTS.settingsChanged, { settings: stored, previousVersion: previous.version });
    this.events.emit({
      type: 'change',
      at: this.clock.now(),
      actor: req.actor,
      action: 'settings.update',
      target: 'settings',
      before: redactSecrets(bodyOf(previous)),
      after: redactSecrets(next),
      ...(req.remote === undefined ? {} : { remote: req.remote }),
    });
    return { dryRun: false, settings: stored, impact, applied };
  }

  #lockouts(next: HubSettingsBody, req: SettingsChangeRequest, operators: OperatorService): string[] {
    const out: string[] = [];
    if (next.disableLocalAuth && !operators.hasEnabledOwner()) out.push('disableLocalAuth with no enabled operator holding the Owner role would leave no way to administer the hub');
    if (req.remote !== undefined && req.remote !== '' && !new IpFilter(next.ipFilter).check(req.remote).allowed) {
      out.push(`the IP filter would reject your own address ${normalizeAddress(req.remote)}`);
    }
    return out;
  }

  async #impact(previous: HubSettings, next: HubSettingsBody, warnings: string[]): Promise<SettingsImpact> {
    const deps = this.#deps;
    if (deps === undefined) throw new Error('settings service not bound');
    const sessions = deps.gate.impact(next);
    const policies = next.disableLocalAuth && !previous.disableLocalAuth ? (await this.store.listPolicies()).map((p) => p.name) : [];
    const enrollments: SettingsImpact['enrollments'] = [];
    if (next.disableDeviceSAS && !previous.disableDeviceSAS) {
      const reason = 'symmetric-key attestation is refused while disableDeviceSAS is on';
      let continuation: string | undefined;
      do {
        const page = await deps.enrollments.queryIndividuals(100, continuation);
        for (const e of page.items) if (e.attestation.type === 'symmetricKey') enrollments.push({ kind: 'individual', id: e.registrationId, reason });
        continuation = page.continuation;
      } while (continuation !== undefined && enrollments.length < 1000);
      for (const g of await deps.enrollments.listGroups()) if (g.attestation.type === 'symmetricKey') enrollments.push({ kind: 'group', id: g.enrollmentGroupId, reason });
    }
    if (next.ipFilter.defaultAction === 'Accept' && next.ipFilter.rules.every((r) => r.action === 'Accept') && next.ipFilter.rules.length > 0) {
      warnings.push('every rule accepts and the default action is Accept: the filter refuses nothing');
    }
    return { sessions, policies, enrollments, warnings };
  }
}
