/**
 * Runs jobs (issue 18 item 1), on every node:
 * - **Which node**: a due job (unfinished, start time passed) is taken by the node that claims its
 *   lease first (a conditional UPDATE; `leaseMs`, renewed before each batch). A node that stops
 *   gives its leases up, so a restart resumes at once; a node that dies loses them when they lapse.
 *   Nodes look every `pollMs`, and when a job is created (`jobs.changed`), which starts `settleMs`
 *   (a second) after its creation at the earliest.
 * - **Where the devices are**: each device's part goes through the services that already reach
 *   it wherever it is connected: a twin update through the twin service (its desired-property
 *   notification goes over the bus to the node holding the device's session), a direct method
 *   through the method service (a bus request answered by the holding node). Offline devices fail
 *   a method job's part with DeviceNotOnline (after `connectTimeoutInSeconds`, when given).
 * - **Durable**: the query condition is evaluated once, into one `device_jobs` row per device;
 *   then batches of `batchSize` pending rows are done and their outcomes written in one
 *   transaction. After a crash the batch in flight is done again (at least once).
 * - **Batched**: a twin update's batch is one read of its twins and one write transaction
 *   (TwinService.patchDevices), its results one more; a method batch calls all its devices at once,
 *   as each waits for its device. A condition without WHERE takes the ids straight from the registry.
 * - **Paced by CPU**: after each batch the runner pauses so that the process CPU a twin batch took
 *   (`process.cpuUsage`, not its wall time, which grows with the live traffic interleaved and with
 *   other processes on the machine; a method batch: its wall time, as it holds a call to each device
 *   that long) is at most `duty` of the time, and so that it does no more than
 *   `maxRate` devices a second over the run; at most `maxConcurrent` jobs run per node, so a fleet-wide job
 *   cannot starve live traffic.
 * - **Ends**: `completed` when every device was done (some may have failed: see its statistics),
 *   `failed` when `maxExecutionTimeInSeconds` after its start time passed first (the rest
 *   `canceled`), `cancelled` when cancelled (the node running it stops before its next batch).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock } from '../../core/clock.js';
import { HubError } from '../../core/errors.js';
import type { JsonObject } from '../../core/json.js';
import type { DeviceJobResult, JobRecord, JobStore, TwinStore } from '../../store/ports.js';
import { SUBJECTS, type HubBus } from '../../bus/subjects.js';
import type { BusSubscription } from '../../bus/bus.js';
import type { SourceEventSink } from '../../routing/routed-events.js';
import { deviceJobLifecycleEvent } from '../../routing/source-events.js';
import type { MethodCall, MethodService } from '../methods/method-service.js';
import { matches } from '../query/index.js';
import { renderTwin } from '../twins/twin-document.js';
import type { TwinService } from '../twins/twin-service.js';
import { parseCondition, renderDeviceJob } from './job-input.js';

export interface RunnerOptions {
  pollMs: number;
  leaseMs: number;
  /** Devices per batch of a twin update. */
  batchSize: number;
  /** Devices per batch of a direct method (called all at once). */
  methodBatchSize: number;
  maxConcurrent: number;
  /** The share of CPU a running job may take (0-1]: after a batch that took c of CPU, it pauses c·(1-duty)/duty. */
  duty: number;
  /**
   * A new job waits this long before it starts, as Azure's take a moment: a device that subscribed
   * to its method just before the job was created (Microsoft's e2e test does) is listening by then.
   */
  settleMs: number;
  /** At most this many devices a second per job, however fast batches go. */
  maxRate: number;
}

export const DEFAULT_RUNNER_OPTIONS: RunnerOptions = { pollMs: 1000, leaseMs: 15_000, batchSize: 200, methodBatchSize: 100, maxConcurrent: 2, duty: 0.5, settleMs: 1000, maxRate: 2500 };

const SCAN_BATCH = 500;
const STOP_WAIT_MS = 3000;

function failure(err: unknown): JsonObject {
  if (err instanceof HubError) return { code: err.code, description: err.message };
  return { code: 'ServerError', description: 'The operation failed inside the hub.' };
}

export class JobRunner {
  readonly #owner = randomUUID();
  readonly #active = new Map<string, Promise<void>>();
  readonly #cancelled = new Set<string>();
  #subs: BusSubscription[] = [];
  #timer: NodeJS.Timeout | undefined;
  #polling = false;
  #again = false;
  #stopped = false;
  #events: SourceEventSink | undefined;

  constructor(
    private readonly store: { jobs: JobStore } & TwinStore,
    private readonly twins: TwinService,
    private readonly methods: MethodService,
    private readonly bus: HubBus,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly opts: RunnerOptions = DEFAULT_RUNNER_OPTIONS,
  ) {}

  /** Device job lifecycle events for routes on DeviceJobLifecycleEvents (routing/routed-events.ts). */
  routeEventsTo(events: SourceEventSink): void {
    this.#events = events;
  }

  start(): void {
    this.#subs.push(
      this.bus.subscribe(SUBJECTS.jobsChanged, (c) => {
        if (c.change === 'cancelled') this.#cancelled.add(c.id);
        else setTimeout(() => this.#poll(), this.opts.settleMs + 50).unref();
      }),
    );
    this.#timer = setInterval(() => this.#poll(), this.opts.pollMs);
    this.#timer.unref();
    this.#poll();
  }

  /**
   * Stops and gives the leases up. A batch in flight is not recorded (the next run does it again),
   * so devices whose sessions close with the hub are not counted as failed; a batch still waiting
   * for devices after `STOP_WAIT_MS` is left behind.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const s of this.#subs) s.unsubscribe();
    this.#subs = [];
    clearInterval(this.#timer);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([...this.#active.values()]), new Promise((r) => (timer = setTimeout(r, STOP_WAIT_MS)))]);
    clearTimeout(timer);
    await Promise.all([...this.#active.keys()].map((id) => this.store.jobs.release(id, this.#owner).catch(() => undefined)));
  }

  #poll(): void {
    if (this.#stopped) return;
    if (this.#polling) {
      this.#again = true;
      return;
    }
    this.#polling = true;
    void this.#claimDue()
      .catch((err: unknown) => this.logger.error({ err, event: 'jobs.poll-failed' }, 'looking for due jobs failed'))
      .finally(() => {
        this.#polling = false;
        if (this.#again) {
          this.#again = false;
          this.#poll();
        }
      });
  }

  async #claimDue(): Promise<void> {
    const free = this.opts.maxConcurrent - this.#active.size;
    if (free <= 0) return;
    const now = this.clock.now();
    const due = await this.store.jobs.due(now, this.#owner, free + this.#active.size);
    for (const job of due) {
      if (this.#stopped || this.#active.size >= this.opts.maxConcurrent) return;
      if (this.#active.has(job.jobId) || Date.parse(job.createdTime) > now - this.opts.settleMs) continue;
      if (!(await this.store.jobs.claim(job.jobId, this.#owner, now, now + this.opts.leaseMs))) continue;
      const run = this.#run(job)
        .catch((err: unknown) => this.logger.error({ err, event: 'jobs.run-failed', jobId: job.jobId }, 'running a job failed; another poll resumes it'))
        .finally(() => {
          this.#active.delete(job.jobId);
          this.#poll();
        });
      this.#active.set(job.jobId, run);
    }
  }

  async #run(job: JobRecord): Promise<void> {
    const id = job.jobId;
    const log = this.logger.child({ jobId: id });
    const deadline = Date.parse(job.startTime) + job.maxExecutionTimeInSeconds * 1000;
    let release = true;
    try {
      if (job.status !== 'running') await this.store.jobs.setStatus(id, 'running');
      if (!job.expanded && !(await this.#expand(job))) return;
      log.info({ event: 'jobs.started', type: job.type }, 'job running');
      // Rows before the cursor were done by this run; a new run (a restart, another node) starts from the first.
      let cursor = '';
      // When the next batch may start at maxRate: a twin batch that starts late (the event loop was
      // busy with live traffic) takes the devices it is late by too, up to a second's worth and four
      // batches, so the rate is kept over the run without more CPU per device.
      let slot = performance.now();
      for (;;) {
        if (this.#stopped) return;
        const now = this.clock.now();
        const current = await this.store.jobs.get(id);
        if (current === undefined || this.#cancelled.has(id) || !['queued', 'scheduled', 'running'].includes(current.status)) {
          release = false;
          return; // cancelled (or finished) elsewhere
        }
        if (now > deadline) {
          await this.store.jobs.finish(id, 'failed', this.#now(), `The job did not finish within maxExecutionTimeInSeconds (${job.maxExecutionTimeInSeconds} s) of its start time.`);
          log.warn({ event: 'jobs.timed-out' }, 'job ran out of time');
          release = false;
          return;
        }
        if (!(await this.store.jobs.claim(id, this.#owner, now, now + this.opts.leaseMs))) {
          release = false;
          return; // another node holds it (our lease lapsed)
        }
        const ids = await this.store.jobs.nextDevices(id, this.#batchSize(job, performance.now() - slot), cursor);
        if (ids.length === 0) {
          await this.store.jobs.finish(id, 'completed', this.#now(), null);
          log.info({ event: 'jobs.completed' }, 'job completed');
          release = false;
          return;
        }
        const started = performance.now();
        const cpu0 = process.cpuUsage();
        // A twin batch is done and recorded at once: its rows go from pending to their outcome. A
        // method batch waits for devices, for seconds maybe: its rows are running meanwhile.
        if (job.type === 'scheduleDeviceMethod') await this.store.jobs.markRunning(id, ids, this.#now());
        const results = await this.#batch(job, ids);
        if (this.#stopped) return;
        await this.store.jobs.recordResults(id, results, this.#now());
        cursor = ids[ids.length - 1] ?? cursor;
        this.#emit(job, results);
        // A method batch is as dear as it is long (it holds a call to each device that long); a twin batch as its CPU.
        const cpu = process.cpuUsage(cpu0);
        const spentMs = job.type === 'scheduleDeviceMethod' ? performance.now() - started : (cpu.user + cpu.system) / 1000;
        slot = Math.max(slot, started - 1000) + (ids.length / this.opts.maxRate) * 1000;
        const pause = Math.max((spentMs * (1 - this.opts.duty)) / this.opts.duty, slot - performance.now());
        if (pause > 0) await new Promise((r) => setTimeout(r, pause));
      }
    } finally {
      if (release) await this.store.jobs.release(id, this.#owner).catch(() => undefined);
      this.#cancelled.delete(id);
    }
  }

  #batchSize(job: JobRecord, lateMs: number): number {
    if (job.type === 'scheduleDeviceMethod') return this.opts.methodBatchSize;
    const behind = Math.floor((Math.max(0, lateMs) * this.opts.maxRate) / 1000);
    return Math.min(4 * this.opts.batchSize, this.opts.batchSize + behind);
  }

  /** Evaluates the query condition once over every device twin: one pending row per match. False when stopped first. */
  async #expand(job: JobRecord): Promise<boolean> {
    const query = parseCondition(job.queryCondition);
    const at = this.#now();
    if (query.where === undefined) return this.#expandAll(job, at);
    let after: { deviceId: string; moduleId: string } | undefined;
    for (;;) {
      if (this.#stopped) return false;
      const batch = await this.store.scanTwins(after === undefined ? { kind: 'devices', limit: SCAN_BATCH } : { kind: 'devices', after, limit: SCAN_BATCH });
      const ids = batch.filter((e) => matches(query.where, renderTwin(e.twin, e.device))).map((e) => e.twin.deviceId);
      const last = batch.length < SCAN_BATCH;
      await this.store.jobs.addDevices(job, ids, at, last);
      if (last) return true;
      const end = batch[batch.length - 1];
      after = end === undefined ? undefined : { deviceId: end.twin.deviceId, moduleId: '' };
      await new Promise((r) => setImmediate(r));
    }
  }

  /** Every device (no WHERE): the ids straight from the registry, without reading or rendering twins. */
  async #expandAll(job: JobRecord, at: string): Promise<boolean> {
    let after = '';
    for (;;) {
      if (this.#stopped) return false;
      const last = await this.store.jobs.addRegistryDevices(job, after, SCAN_BATCH, at);
      if (last === undefined) {
        await this.store.jobs.addDevices(job, [], at, true);
        return true;
      }
      after = last;
      await new Promise((r) => setImmediate(r));
    }
  }

  async #batch(job: JobRecord, ids: readonly string[]): Promise<DeviceJobResult[]> {
    if (job.type === 'scheduleUpdateTwin') return this.#twinBatch(job, ids);
    // Methods: the whole batch at once, as each waits for its device.
    return Promise.all(ids.map((d) => this.#one(job, d)));
  }

  /** A twin update over a batch: one read and one write transaction for all its twins (TwinService.patchDevices). */
  async #twinBatch(job: JobRecord, ids: readonly string[]): Promise<DeviceJobResult[]> {
    const startTimeUtc = this.#now();
    let failed = new Map<string, unknown>();
    if (job.updateTwin !== null && Object.keys(job.updateTwin).length > 0) {
      try {
        failed = await this.twins.patchDevices(ids, job.updateTwin);
      } catch (err) {
        failed = new Map(ids.map((d) => [d, err]));
      }
    }
    const endTimeUtc = this.#now();
    return ids.map((deviceId) => {
      const err = failed.get(deviceId);
      return failed.has(deviceId)
        ? { deviceId, status: 'failed', startTimeUtc, endTimeUtc, outcome: null, error: failure(err) }
        : { deviceId, status: 'completed', startTimeUtc, endTimeUtc, outcome: null, error: null };
    });
  }

  /** One device's direct method. */
  async #one(job: JobRecord, deviceId: string): Promise<DeviceJobResult> {
    const startTimeUtc = this.#now();
    try {
      const r = await this.methods.invoke(deviceId, null, job.cloudToDeviceMethod as unknown as MethodCall);
      const outcome = { deviceMethodResponse: { status: r.status, payload: r.payload } };
      return { deviceId, status: 'completed', startTimeUtc, endTimeUtc: this.#now(), outcome, error: null };
    } catch (err) {
      return { deviceId, status: 'failed', startTimeUtc, endTimeUtc: this.#now(), outcome: null, error: failure(err) };
    }
  }

  #emit(job: JobRecord, results: readonly DeviceJobResult[]): void {
    const events = this.#events;
    if (events === undefined || !events.wants('DeviceJobLifecycleEvents')) return;
    for (const r of results) {
      const row = renderDeviceJob({
        jobId: job.jobId,
        deviceId: r.deviceId,
        jobType: job.type,
        status: r.status,
        createdDateTimeUtc: job.createdTime,
        startTimeUtc: r.startTimeUtc,
        endTimeUtc: r.endTimeUtc,
        lastUpdatedDateTimeUtc: r.endTimeUtc,
        outcome: r.outcome,
        error: r.error,
      });
      const ctx = { hubName: events.hubName, deviceId: r.deviceId, moduleId: null, now: r.endTimeUtc };
      events.emit('DeviceJobLifecycleEvents', () => deviceJobLifecycleEvent(ctx, r.status === 'completed' ? 'deviceJobCompleted' : 'deviceJobFailed', row));
    }
  }

  #now(): string {
    return new Date(this.clock.now()).toISOString();
  }
}
