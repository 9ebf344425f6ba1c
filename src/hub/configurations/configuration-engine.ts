/**
 * Applies automatic configurations to twins and counts their metrics (issue 18 item 2), as Azure's
 * "automatic device management" describes it:
 * - A twin is targeted by every configuration of its kind (device content: device twins; module
 *   content: module twins) whose target condition it matches. Of those the highest priority wins
 *   (equal priorities: the later created; then the greater id, so every node picks the same); the
 *   winner's content is merged into the twin's desired properties and the twin's `configurations`
 *   section says `{ <id>: { status: 'Applied' } }` for it and `'Targeted'` for the others.
 *   A twin that stops being targeted keeps the desired values it was given (Gatehouse does not
 *   guess which of them someone else relies on); only its `configurations` entry goes.
 * - IoT Edge deployments (`modulesContent`) are stored and their targeted count kept; applying
 *   them needs an Edge runtime, which Gatehouse does not have.
 *
 * When: a full pass over every twin shortly after a configuration is created, changed or deleted
 * (on the node that wrote it, told through `configurations.changed`), then every `intervalMs`
 * (5 minutes, Azure's interval; a node skips its turn when another node's pass is that recent);
 * and, between passes, each twin this node changes (tags, reported or desired properties: the
 * local `twin.changed`) is re-evaluated about a second later, so a tag set by an operator brings a
 * device into scope without waiting for the pass. System and custom metrics are counted by the
 * full pass only, like Azure's.
 *
 * Bounded: a pass reads twins in batches of `batchSize`, writes at most one twin at a time (each
 * a compare-and-swap through the twin service, retried on a concurrent write), and pauses between
 * batches for as long as the batch took (at least `pauseMs`), so a fleet-wide configuration takes
 * at most about half of the node's time and trickles in beside live traffic instead of taking the
 * store over. Twin changes waiting for re-evaluation are capped at
 * `maxPending`; beyond it the next full pass catches up.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../core/clock.js';
import { HubError } from '../../core/errors.js';
import type { JsonObject } from '../../core/json.js';
import type { ConfigurationResults, ConfigurationStore, StoredConfiguration, TwinStore } from '../../store/ports.js';
import { SUBJECTS, type HubBus } from '../../bus/subjects.js';
import type { BusSubscription } from '../../bus/bus.js';
import { matches, type ParsedQuery } from '../query/index.js';
import { renderTwin } from '../twins/twin-document.js';
import type { TwinService } from '../twins/twin-service.js';
import { contentKind, desiredPatchOf, parseMetric, parseTarget, twinSource, type ContentKind } from './configuration-input.js';

export interface EngineOptions {
  intervalMs: number;
  batchSize: number;
  pauseMs: number;
  /** Delay between a change and the pass or re-evaluation it causes (changes in a burst share one). */
  debounceMs: number;
  maxPending: number;
}

export const DEFAULT_ENGINE_OPTIONS: EngineOptions = { intervalMs: 300_000, batchSize: 100, pauseMs: 20, debounceMs: 1000, maxPending: 10_000 };

interface Compiled {
  id: string;
  priority: number;
  created: string;
  kind: ContentKind;
  source: 'devices' | 'devices.modules';
  /** undefined: targets no twin. */
  target: ParsedQuery | undefined;
  desired: JsonObject | undefined;
  metrics: Array<{ name: string; query: ParsedQuery }>;
}

interface Decision {
  configurations: JsonObject;
  desired: JsonObject | undefined;
  targeted: string[];
  winner: string | undefined;
}

function compile(s: StoredConfiguration): Compiled | undefined {
  const c = s.record;
  try {
    const kind = contentKind(c.content);
    const inner = c.content[kind] as JsonObject;
    return {
      id: c.id,
      priority: c.priority,
      created: c.createdTimeUtc,
      kind,
      source: twinSource(c.content),
      target: parseTarget(c.targetCondition, c.content),
      desired: kind === 'modulesContent' ? undefined : desiredPatchOf(inner),
      metrics: Object.entries(c.metricQueries).map(([name, text]) => ({ name, query: parseMetric(name, text) })),
    };
  } catch {
    return undefined; // checked when stored; a rule change since then leaves it inert rather than stopping the others
  }
}

/** Higher priority first; equal priorities: the later created, then the greater id. */
function beats(a: Compiled, b: Compiled): boolean {
  if (a.priority !== b.priority) return a.priority > b.priority;
  if (a.created !== b.created) return a.created > b.created;
  return a.id > b.id;
}

/** What the configurations make of one twin document. */
export function decide(configs: readonly Compiled[], doc: JsonObject, source: 'devices' | 'devices.modules'): Decision {
  let winner: Compiled | undefined;
  const targeted: string[] = [];
  for (const c of configs) {
    if (c.source !== source || c.kind === 'modulesContent' || c.target === undefined || !matches(c.target.where, doc)) continue;
    targeted.push(c.id);
    if (winner === undefined || beats(c, winner)) winner = c;
  }
  const configurations: JsonObject = {};
  for (const id of targeted.sort()) configurations[id] = { status: id === winner?.id ? 'Applied' : 'Targeted' };
  return { configurations, desired: winner?.desired, targeted, winner: winner?.id };
}

export class ConfigurationEngine {
  #configs: Compiled[] = [];
  #loaded = false;
  #subs: BusSubscription[] = [];
  #timer: NodeJS.Timeout | undefined;
  #passTimer: NodeJS.Timeout | undefined;
  #pendingTimer: NodeJS.Timeout | undefined;
  #pending = new Set<string>();
  /** Twins this engine wrote since the last flush: their own `twin.changed` needs no re-evaluation. */
  #ownWrites = new Set<string>();
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;

  constructor(
    private readonly store: { configurations: ConfigurationStore } & TwinStore,
    private readonly twins: TwinService,
    private readonly bus: HubBus,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly opts: EngineOptions = DEFAULT_ENGINE_OPTIONS,
  ) {}

  async start(): Promise<void> {
    await this.#reload();
    this.#subs.push(
      this.bus.subscribe(SUBJECTS.configurationsChanged, async (_c, meta) => {
        await this.#reload();
        if (meta.local) this.#schedulePass();
      }),
      this.bus.subscribe(SUBJECTS.twinChanged, (t, meta) => {
        if (meta.local) this.#twinChanged(t.deviceId, t.moduleId);
      }),
      this.bus.subscribe(SUBJECTS.twinsChanged, ({ twins }, meta) => {
        if (meta.local) for (const t of twins) this.#twinChanged(t.deviceId, t.moduleId);
      }),
      this.bus.subscribe(SUBJECTS.busResync, () => this.#reload()),
    );
    this.#timer = setInterval(() => void this.#periodic(), this.opts.intervalMs);
    this.#timer.unref();
    // A node starting up takes its turn if no node ran a pass lately (configurations changed while the hub was down).
    void this.#periodic();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const s of this.#subs) s.unsubscribe();
    this.#subs = [];
    clearInterval(this.#timer);
    clearTimeout(this.#passTimer);
    clearTimeout(this.#pendingTimer);
    await this.#running?.catch(() => undefined);
  }

  /** Runs a full pass now (and waits for it): evaluation, application and metrics. */
  async runPass(): Promise<void> {
    if (this.#running !== undefined) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      try {
        do {
          this.#again = false;
          await this.#pass();
        } while (this.#again && !this.#stopped);
      } finally {
        this.#running = undefined;
      }
    })();
    return this.#running;
  }

  async #reload(): Promise<void> {
    const all = await this.store.configurations.list();
    this.#configs = all.map(compile).filter((c): c is Compiled => c !== undefined);
    this.#loaded = true;
  }

  #schedulePass(): void {
    if (this.#stopped) return;
    clearTimeout(this.#passTimer);
    this.#passTimer = setTimeout(() => void this.runPass().catch((err: unknown) => this.logger.error({ err, event: 'configurations.pass-failed' }, 'configuration pass failed')), this.opts.debounceMs);
    this.#passTimer.unref();
  }

  async #periodic(): Promise<void> {
    try {
      const all = await this.store.configurations.list();
      if (all.length === 0) return;
      const newest = Math.max(...all.map((c) => c.resultsAt));
      if (this.clock.now() - newest < this.opts.intervalMs * 0.9) return;
      await this.runPass();
    } catch (err) {
      this.logger.error({ err, event: 'configurations.pass-failed' }, 'configuration pass failed');
    }
  }

  #twinChanged(deviceId: string, moduleId: string | null): void {
    if (this.#stopped || !this.#loaded || this.#configs.length === 0) return;
    if (this.#pending.size >= this.opts.maxPending) return; // the next full pass catches up
    this.#pending.add(JSON.stringify([deviceId, moduleId]));
    if (this.#pendingTimer !== undefined) return;
    this.#pendingTimer = setTimeout(() => {
      this.#pendingTimer = undefined;
      void this.#flushPending();
    }, this.opts.debounceMs);
    this.#pendingTimer.unref();
  }

  async #flushPending(): Promise<void> {
    const own = this.#ownWrites;
    this.#ownWrites = new Set();
    const keys = [...this.#pending].filter((k) => !own.has(k));
    this.#pending.clear();
    let batchStarted = performance.now();
    for (const [i, key] of keys.entries()) {
      if (this.#stopped) return;
      if (i > 0 && i % this.opts.batchSize === 0) {
        await new Promise((r) => setTimeout(r, Math.max(this.opts.pauseMs, performance.now() - batchStarted)));
        batchStarted = performance.now();
      }
      const [deviceId, moduleId] = JSON.parse(key) as [string, string | null];
      try {
        await this.#apply(deviceId, moduleId);
      } catch (err) {
        if (!(err instanceof HubError && (err.code === 'DeviceNotFound' || err.code === 'ModuleNotFound'))) {
          this.logger.warn({ err, event: 'configurations.apply-failed', deviceId, moduleId }, 'applying configurations to a twin failed');
        }
      }
    }
  }

  /** Re-evaluates one twin; returns the document after any write. */
  async #apply(deviceId: string, moduleId: string | null): Promise<JsonObject> {
    const source = moduleId === null ? 'devices' : 'devices.modules';
    const configs = this.#configs;
    const before = { etag: '' };
    const doc = await this.twins.applyConfigurations(deviceId, moduleId, (d) => {
      before.etag = String(d.etag);
      return decide(configs, d, source);
    });
    if (doc.etag !== before.etag) this.#ownWrites.add(JSON.stringify([deviceId, moduleId]));
    return doc;
  }

  async #pass(): Promise<void> {
    await this.#reload();
    const configs = this.#configs;
    const results = new Map<string, ConfigurationResults>(configs.map((c) => [c.id, { system: { targetedCount: 0, appliedCount: 0 }, custom: Object.fromEntries(c.metrics.map((m) => [m.name, 0])) }]));
    const started = this.clock.now();
    let writes = 0;
    for (const source of ['devices', 'devices.modules'] as const) {
      if (!configs.some((c) => c.source === source || c.metrics.some((m) => m.query.source === source))) continue;
      let after: { deviceId: string; moduleId: string } | undefined;
      for (;;) {
        if (this.#stopped) return;
        const kind = source === 'devices' ? 'devices' : 'modules';
        const batchStarted = performance.now();
        const batch = await this.store.scanTwins(after === undefined ? { kind, limit: this.opts.batchSize } : { kind, after, limit: this.opts.batchSize });
        for (const e of batch) {
          let doc = renderTwin(e.twin, e.device, e.module);
          const d = decide(configs, doc, source);
          if (JSON.stringify(d.configurations) !== JSON.stringify(e.twin.configurations ?? {}) || needsDesired(e.twin.desired, d.desired)) {
            try {
              doc = await this.#apply(e.twin.deviceId, e.twin.moduleId);
              writes++;
            } catch (err) {
              if (!(err instanceof HubError && (err.code === 'DeviceNotFound' || err.code === 'ModuleNotFound'))) {
                this.logger.warn({ err, event: 'configurations.apply-failed', deviceId: e.twin.deviceId, moduleId: e.twin.moduleId }, 'applying configurations to a twin failed');
              }
              continue;
            }
          }
          this.#count(configs, results, doc, source);
        }
        if (batch.length < this.opts.batchSize) break;
        const last = batch[batch.length - 1];
        after = last === undefined ? undefined : { deviceId: last.twin.deviceId, moduleId: last.twin.moduleId ?? '' };
        // At least as long as the batch took: the pass never holds the event loop and the store more than half the time.
        await new Promise((r) => setTimeout(r, Math.max(this.opts.pauseMs, performance.now() - batchStarted)));
      }
    }
    const at = this.clock.now();
    for (const [id, r] of results) await this.store.configurations.putResults(id, r, at);
    this.logger.info({ event: 'configurations.pass', configurations: configs.length, writes, ms: at - started }, 'configurations evaluated');
  }

  #count(configs: readonly Compiled[], results: Map<string, ConfigurationResults>, doc: JsonObject, source: 'devices' | 'devices.modules'): void {
    const section = (doc.configurations ?? {}) as JsonObject;
    for (const c of configs) {
      const r = results.get(c.id);
      if (r === undefined) continue;
      if (c.source === source && c.target !== undefined && matches(c.target.where, doc)) {
        r.system.targetedCount = (r.system.targetedCount ?? 0) + 1;
        const status = (section[c.id] as JsonObject | undefined)?.status;
        if (status === 'Applied') r.system.appliedCount = (r.system.appliedCount ?? 0) + 1;
      }
      for (const m of c.metrics) {
        if (m.query.source === source && matches(m.query.where, doc)) r.custom[m.name] = (r.custom[m.name] ?? 0) + 1;
      }
    }
  }
}

/** Would merging `patch` change `desired`? (Leaves compared as JSON, as the twin merge does.) */
function needsDesired(desired: JsonObject, patch: JsonObject | undefined): boolean {
  if (patch === undefined) return false;
  for (const [k, v] of Object.entries(patch)) {
    const cur = desired[k];
    if (v === null) {
      if (cur !== undefined) return true;
    } else if (typeof v === 'object' && !Array.isArray(v)) {
      if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return true;
      if (needsDesired(cur, v)) return true;
    } else if (JSON.stringify(cur) !== JSON.stringify(v)) {
      return true;
    }
  }
  return false;
}
