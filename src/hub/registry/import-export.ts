/**
 * Import and export of device identities in bulk [DOCS: Import and export IoT Hub device identities
 * in bulk]: `POST /jobs/create` with `type` `export` (every device, its keys unless
 * `excludeKeysInExport`, and its twin's tags and properties, one JSON object per line, to
 * `devices.txt` in the output container) or `import` (`devices.txt` of the input container, each
 * line an ExportImportDevice with its `importMode`, applied as the bulk registry API applies it, in
 * chunks of 100; the devices that failed listed in `importErrors.log` of the output container).
 * Containers are named by container SAS URIs.
 *
 * Neither side is held in memory: an export pages the registry (device and twin in one scan) and
 * stages `devices.txt` in blocks of 4 MiB, committed at the end; an import reads `devices.txt` as
 * it streams in, once to check every line is JSON (a bad line fails the job before any change, as
 * it did when the file was read whole), then again to apply it.
 *
 * A job's record is a shared counter (`registry-job:{id}`), so every node reads and cancels it.
 * The node running a job holds a lease in the record, renewed while it works; a node that stops
 * gives it up, one that dies loses it when it lapses, and then any node (the restarted one, or
 * another) takes the job over: an export starts again (its staged blocks are never committed), an
 * import goes on after the last chunk recorded, so at most one chunk of 100 lines is applied twice
 * (a `create` line of that chunk is then reported as DeviceAlreadyExists in importErrors.log).
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import { devicesTxtLine } from '../../core/devices-txt.js';
import { HubError } from '../../core/errors.js';
import { isJsonObject } from '../../core/json.js';
import type { CounterStore } from '../../store/counter-ports.js';
import type { Store } from '../../store/ports.js';
import { BlockBlobWriter, blobInContainer, readBlobLines } from '../files/container-sas.js';
import { renderTwin } from '../twins/twin-document.js';
import type { TwinService } from '../twins/twin-service.js';
import { applyBulk, MAX_BULK } from './bulk.js';
import { HUB_ACTOR, renderDevice, type Actor, type RegistryService } from './registry-service.js';

const PREFIX = 'registry-job:';
/** How long a finished job stays readable. */
const KEEP_MS = 30 * 24 * 3_600_000;
export const DEVICES_BLOB = 'devices.txt';
export const IMPORT_ERRORS_BLOB = 'importErrors.log';
const PAGE = 1000;

export type JobStatus = 'enqueued' | 'running' | 'completed' | 'failed' | 'cancelled';

export interface RegistryJob {
  jobId: string;
  type: 'import' | 'export';
  status: JobStatus;
  progress: number;
  startTimeUtc: string;
  endTimeUtc?: string;
  inputBlobContainerUri?: string;
  outputBlobContainerUri: string;
  excludeKeysInExport?: boolean;
  failureReason?: string;
}

/** What the record holds beyond Azure's job properties, so that another node can take the job over. */
interface JobRun {
  /** Who asked for it (the audit log's actor for an import's changes). */
  by: Actor;
  /** The node process running it, and until when (ms) its lease holds; 0 when given up. */
  owner?: string;
  leaseUntil?: number;
  /** Import: lines of devices.txt applied, and the importErrors.log blocks staged for them. */
  linesDone: number;
  errorBlocks: string[];
}

type StoredJob = RegistryJob & { run: JobRun };

export interface ImportExportOptions {
  /** How long a lease holds without renewal (ms); renewed every third of it. */
  leaseMs: number;
  /** How often a node looks for jobs whose lease lapsed (ms). */
  adoptMs: number;
  /** Bytes of devices.txt per staged block. */
  blockBytes: number;
}

export const DEFAULT_IMPORT_EXPORT_OPTIONS: ImportExportOptions = { leaseMs: 15_000, adoptMs: 5_000, blockBytes: 4 * 1024 * 1024 };

export interface ImportExportDeps {
  store: Pick<Store, 'scanTwins' | 'deviceStatistics'>;
  counters: CounterStore;
  registry: RegistryService;
  twins: TwinService;
  clock: Clock;
  /** The hub's CA, trusted beside Node's for the containers (the embedded store's certificate). */
  ca: string;
  onError(err: unknown, jobId: string): void;
  options?: Partial<ImportExportOptions>;
}

function publicView(job: StoredJob | RegistryJob): RegistryJob {
  const { run, ...rest } = job as StoredJob;
  void run;
  return rest;
}

const active = (j: RegistryJob) => j.status === 'enqueued' || j.status === 'running';

/** Why a job stopped working on this node before it finished. */
class Interrupted extends Error {}

export class ImportExportJobs {
  readonly #opts: ImportExportOptions;
  /** This process, as a lease owner. */
  readonly #owner = randomUUID();
  /** Jobs this node runs: their abort flags and completions. */
  readonly #running = new Map<string, { stop: boolean; done: Promise<void> }>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(private readonly deps: ImportExportDeps) {
    this.#opts = { ...DEFAULT_IMPORT_EXPORT_OPTIONS, ...deps.options };
  }

  /** Takes over the jobs whose node stopped or died: now, and every adoptMs. */
  start(): void {
    if (this.#timer !== undefined || this.#stopped) return;
    this.#timer = setInterval(() => void this.#adopt(), this.#opts.adoptMs);
    this.#timer.unref();
    void this.#adopt();
  }

  /** Stops taking jobs; the running ones stop after their current step and give their leases up. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    for (const r of this.#running.values()) r.stop = true;
    await Promise.allSettled([...this.#running.values()].map((r) => r.done));
  }

  async create(raw: unknown, by: Actor = HUB_ACTOR): Promise<RegistryJob> {
    if (!isJsonObject(raw)) throw new HubError('IotHubFormatError', 'The job must be a JSON object.');
    const type = raw.type;
    if (type !== 'import' && type !== 'export') throw new HubError('ArgumentInvalid', "A registry job's type is import or export.");
    if (raw.storageAuthenticationType !== undefined && raw.storageAuthenticationType !== 'keyBased') {
      throw new HubError('ArgumentInvalid', 'Only key-based (SAS URI) storage authentication is supported.');
    }
    const output = raw.outputBlobContainerUri;
    if (typeof output !== 'string' || output === '') throw new HubError('ArgumentInvalid', 'outputBlobContainerUri is required.');
    blobInContainer(output, DEVICES_BLOB);
    const job: StoredJob = {
      jobId: randomUUID(),
      type,
      status: 'enqueued',
      progress: 0,
      startTimeUtc: new Date(this.deps.clock.now()).toISOString(),
      outputBlobContainerUri: output,
      run: { by, linesDone: 0, errorBlocks: [] },
    };
    if (type === 'import') {
      const input = raw.inputBlobContainerUri;
      if (typeof input !== 'string' || input === '') throw new HubError('ArgumentInvalid', 'inputBlobContainerUri is required for an import.');
      blobInContainer(input, DEVICES_BLOB);
      job.inputBlobContainerUri = input;
    } else {
      job.excludeKeysInExport = raw.excludeKeysInExport === true || raw.excludeKeysInExport === 'true';
    }
    await this.#save(job);
    void this.#take(job.jobId);
    return publicView(job);
  }

  async get(jobId: string): Promise<RegistryJob> {
    const job = await this.#load(jobId);
    if (job === undefined) throw new HubError('ResourceNotFound', `No import or export job ${jobId.slice(0, 100)}.`);
    return publicView(job);
  }

  async list(): Promise<RegistryJob[]> {
    return (await this.#all()).map(publicView);
  }

  /** Stops a job that has not finished (it stops before its next chunk); a finished one stays as it is. */
  async cancel(jobId: string): Promise<RegistryJob> {
    const job = await this.#change(jobId, (j) => (active(j) ? { ...j, status: 'cancelled', endTimeUtc: new Date(this.deps.clock.now()).toISOString() } : j));
    if (job === undefined) throw new HubError('ResourceNotFound', `No import or export job ${jobId.slice(0, 100)}.`);
    return publicView(job);
  }

  async #all(): Promise<StoredJob[]> {
    const entries = await this.deps.counters.changedSince(PREFIX, 0, 1000);
    const now = this.deps.clock.now();
    return entries.filter((e) => e.value !== null && e.expiresAt > now).map((e) => JSON.parse(e.value as string) as StoredJob);
  }

  async #adopt(): Promise<void> {
    try {
      const now = this.deps.clock.now();
      for (const j of await this.#all()) {
        if (this.#stopped) return;
        if (active(j) && !this.#running.has(j.jobId) && (j.run?.leaseUntil ?? 0) <= now) await this.#take(j.jobId);
      }
    } catch (err) {
      this.deps.onError(err, '(adopt)');
    }
  }

  /** Claims the job's lease if nobody holds it, and runs it here. */
  async #take(jobId: string): Promise<void> {
    if (this.#stopped || this.#running.has(jobId)) return;
    const now = this.deps.clock.now();
    const claimed = await this.#change(jobId, (j) =>
      active(j) && (j.run?.leaseUntil ?? 0) <= now ? { ...j, status: 'running', run: { ...(j.run ?? { by: HUB_ACTOR, linesDone: 0, errorBlocks: [] }), owner: this.#owner, leaseUntil: now + this.#opts.leaseMs } } : j,
    ).catch((err: unknown) => this.deps.onError(err, jobId));
    if (claimed === undefined || claimed.run?.owner !== this.#owner || claimed.status !== 'running' || this.#running.has(jobId)) return;
    const state = { stop: false, done: Promise.resolve() };
    this.#running.set(jobId, state);
    state.done = this.#run(claimed, state).finally(() => this.#running.delete(jobId));
  }

  async #run(job: StoredJob, state: { stop: boolean }): Promise<void> {
    const renew = setInterval(() => void this.#checkpoint(job.jobId, state, {}).catch(() => undefined), Math.max(100, this.#opts.leaseMs / 3));
    renew.unref();
    let release = true;
    try {
      if (job.type === 'export') await this.#export(job, state);
      else await this.#import(job, state);
      const end = new Date(this.deps.clock.now()).toISOString();
      await this.#change(job.jobId, (j) => (j.status === 'running' && j.run?.owner === this.#owner ? { ...j, status: 'completed', progress: 100, endTimeUtc: end } : j));
      release = false;
    } catch (err) {
      if (err instanceof Interrupted) return;
      release = false;
      this.deps.onError(err, job.jobId);
      const reason = err instanceof Error ? err.message : String(err);
      const end = new Date(this.deps.clock.now()).toISOString();
      await this.#change(job.jobId, (j) => (j.run?.owner === this.#owner && active(j) ? { ...j, status: 'failed', failureReason: reason.slice(0, 500), endTimeUtc: end } : j)).catch((e: unknown) => this.deps.onError(e, job.jobId));
    } finally {
      clearInterval(renew);
      // Stopped before the end: the lease goes at once, so a restarted node goes on without waiting.
      if (release) {
        await this.#change(job.jobId, (j) => (j.run?.owner === this.#owner ? { ...j, run: { ...j.run, leaseUntil: 0 } } : j)).catch((e: unknown) => this.deps.onError(e, job.jobId));
      }
    }
  }

  /**
   * Renews the lease and records `patch` if the job is still this node's and still running;
   * throws Interrupted when it is not (cancelled, or taken over after the lease lapsed) or when
   * this node is stopping.
   */
  async #checkpoint(jobId: string, state: { stop: boolean }, patch: Partial<RegistryJob> & { run?: Partial<JobRun> }): Promise<void> {
    if (state.stop) throw new Interrupted();
    const now = this.deps.clock.now();
    const after = await this.#change(jobId, (j) =>
      j.status === 'running' && j.run?.owner === this.#owner ? { ...j, ...patch, run: { ...j.run, ...patch.run, leaseUntil: now + this.#opts.leaseMs } } : j,
    );
    if (after === undefined || after.status !== 'running' || after.run?.owner !== this.#owner || after.run.leaseUntil !== now + this.#opts.leaseMs) {
      state.stop = true;
      throw new Interrupted();
    }
  }

  async #export(job: StoredJob, state: { stop: boolean }): Promise<void> {
    const writer = new BlockBlobWriter(blobInContainer(job.outputBlobContainerUri, DEVICES_BLOB), this.deps.ca);
    const total = Math.max(1, (await this.deps.store.deviceStatistics()).total);
    const blocks: string[] = [];
    let pending: string[] = [];
    let pendingBytes = 0;
    const flush = async () => {
      if (pending.length === 0) return;
      blocks.push(await writer.stage(blocks.length, Buffer.from(pending.join(''), 'utf8')));
      pending = [];
      pendingBytes = 0;
    };
    let after: { deviceId: string; moduleId: string } | undefined;
    let done = 0;
    for (;;) {
      await this.#checkpoint(job.jobId, state, { progress: Math.min(99, Math.floor((done / total) * 100)) });
      const page = await this.deps.store.scanTwins(after === undefined ? { kind: 'devices', limit: PAGE } : { kind: 'devices', after, limit: PAGE });
      for (const { twin, device } of page) {
        const line = `${devicesTxtLine(renderDevice(device), renderTwin(twin, device), job.excludeKeysInExport === true)}\n`;
        pending.push(line);
        pendingBytes += Buffer.byteLength(line);
        if (pendingBytes >= this.#opts.blockBytes) await flush();
      }
      done += page.length;
      const last = page.at(-1);
      if (last === undefined || page.length < PAGE) break;
      after = { deviceId: last.device.deviceId, moduleId: '' };
    }
    await flush();
    await this.#checkpoint(job.jobId, state, {});
    await writer.commit(blocks);
  }

  async #import(job: StoredJob, state: { stop: boolean }): Promise<void> {
    const input = blobInContainer(job.inputBlobContainerUri ?? '', DEVICES_BLOB);
    // First pass: every line is JSON, or the job fails with nothing changed.
    const check = await readBlobLines(input, this.deps.ca);
    if (check === undefined) throw new HubError('ArgumentInvalid', `The input container has no ${DEVICES_BLOB}.`);
    let lineNo = 0;
    for await (const { line } of check.lines) {
      lineNo++;
      try {
        JSON.parse(line);
      } catch {
        throw new HubError('IotHubFormatError', `${DEVICES_BLOB} line ${lineNo} is not JSON.`);
      }
    }
    const read = await readBlobLines(input, this.deps.ca);
    if (read === undefined) throw new HubError('ArgumentInvalid', `The input container has no ${DEVICES_BLOB}.`);
    const errorsBlob = new BlockBlobWriter(blobInContainer(job.outputBlobContainerUri, IMPORT_ERRORS_BLOB), this.deps.ca);
    const errorBlocks = [...job.run.errorBlocks];
    let linesDone = job.run.linesDone;
    let seen = 0;
    let chunk: unknown[] = [];
    const apply = async (readSoFar: number) => {
      const result = await applyBulk(chunk, this.deps.registry, this.deps.twins, job.run.by);
      linesDone += chunk.length;
      chunk = [];
      if (result.errors.length > 0) {
        // Numbered by where the chunk starts: a chunk applied again after a takeover replaces its block.
        errorBlocks.push(await errorsBlob.stage(linesDone, Buffer.from(result.errors.map((e) => `${JSON.stringify(e)}\n`).join(''), 'utf8')));
      }
      const progress = Math.min(99, Math.floor((readSoFar / Math.max(1, read.length)) * 100));
      await this.#checkpoint(job.jobId, state, { progress, run: { linesDone, errorBlocks: [...new Set(errorBlocks)] } });
    };
    for await (const { line, read: readSoFar } of read.lines) {
      if (seen++ < linesDone) continue;
      chunk.push(JSON.parse(line) as unknown);
      if (chunk.length === MAX_BULK) await apply(readSoFar);
    }
    if (chunk.length > 0) await apply(read.length);
    const blocks = [...new Set(errorBlocks)];
    if (blocks.length > 0) await errorsBlob.commit(blocks);
  }

  #save(job: StoredJob): Promise<void> {
    const now = this.deps.clock.now();
    return this.deps.counters.update([PREFIX + job.jobId], now, () => ({ writes: new Map([[PREFIX + job.jobId, { value: JSON.stringify(job), expiresAt: now + KEEP_MS }]]), result: undefined }));
  }

  async #load(jobId: string): Promise<StoredJob | undefined> {
    return this.#change(jobId, (j) => j);
  }

  #change(jobId: string, f: (j: StoredJob) => StoredJob): Promise<StoredJob | undefined> {
    const key = PREFIX + jobId;
    const now = this.deps.clock.now();
    return this.deps.counters.update([key], now, (current) => {
      const raw = current.get(key);
      if (raw === undefined) return { writes: new Map(), result: undefined };
      const before = JSON.parse(raw) as StoredJob;
      const after = f(before);
      if (after === before) return { writes: new Map(), result: before };
      return { writes: new Map([[key, { value: JSON.stringify(after), expiresAt: now + KEEP_MS }]]), result: after };
    });
  }
}
