/**
 * Import and export of device identities in bulk [DOCS: Import and export IoT Hub device identities
 * in bulk]: `POST /jobs/create` with `type` `export` (every device, its keys unless
 * `excludeKeysInExport`, and its twin's tags and properties, one JSON object per line, to
 * `devices.txt` in the output container) or `import` (`devices.txt` of the input container, each
 * line an ExportImportDevice with its `importMode`, applied as the bulk registry API applies it, in
 * chunks of 100; the devices that failed listed in `importErrors.log` of the output container).
 * Containers are named by container SAS URIs. A job runs on the node that took it; its record is a
 * shared counter (`registry-job:{id}`), so every node reads and cancels it.
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import { HubError } from '../../core/errors.js';
import { isJsonObject, type JsonObject } from '../../core/json.js';
import type { CounterStore } from '../../store/counter-ports.js';
import type { Store } from '../../store/ports.js';
import { blobInContainer, readBlob, writeBlob } from '../files/container-sas.js';
import type { TwinService } from '../twins/twin-service.js';
import { applyBulk, MAX_BULK } from './bulk.js';
import { HUB_ACTOR, renderDevice, type Actor, type RegistryService } from './registry-service.js';

const PREFIX = 'registry-job:';
/** How long a finished job stays readable. */
const KEEP_MS = 30 * 24 * 3_600_000;
export const DEVICES_BLOB = 'devices.txt';
export const IMPORT_ERRORS_BLOB = 'importErrors.log';

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

export interface ImportExportDeps {
  store: Pick<Store, 'listDevices'>;
  counters: CounterStore;
  registry: RegistryService;
  twins: TwinService;
  clock: Clock;
  /** The hub's CA, trusted beside Node's for the containers (the embedded store's certificate). */
  ca: string;
  onError(err: unknown, jobId: string): void;
}

function withoutMeta(v: unknown): JsonObject {
  if (!isJsonObject(v)) return {};
  return Object.fromEntries(Object.entries(v).filter(([k]) => !k.startsWith('$')));
}

export class ImportExportJobs {
  constructor(private readonly deps: ImportExportDeps) {}

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
    const job: RegistryJob = { jobId: randomUUID(), type, status: 'enqueued', progress: 0, startTimeUtc: new Date(this.deps.clock.now()).toISOString(), outputBlobContainerUri: output };
    if (type === 'import') {
      const input = raw.inputBlobContainerUri;
      if (typeof input !== 'string' || input === '') throw new HubError('ArgumentInvalid', 'inputBlobContainerUri is required for an import.');
      blobInContainer(input, DEVICES_BLOB);
      job.inputBlobContainerUri = input;
    } else {
      job.excludeKeysInExport = raw.excludeKeysInExport === true || raw.excludeKeysInExport === 'true';
    }
    await this.#save(job);
    void this.#run(job, by);
    return job;
  }

  async get(jobId: string): Promise<RegistryJob> {
    const job = await this.#load(jobId);
    if (job === undefined) throw new HubError('ResourceNotFound', `No import or export job ${jobId.slice(0, 100)}.`);
    return job;
  }

  async list(): Promise<RegistryJob[]> {
    const entries = await this.deps.counters.changedSince(PREFIX, 0, 1000);
    return entries.filter((e) => e.value !== null && e.expiresAt > this.deps.clock.now()).map((e) => JSON.parse(e.value as string) as RegistryJob);
  }

  /** Stops a job that has not finished (it stops before its next chunk); a finished one stays as it is. */
  async cancel(jobId: string): Promise<RegistryJob> {
    const job = await this.#change(jobId, (j) => (j.status === 'enqueued' || j.status === 'running' ? { ...j, status: 'cancelled', endTimeUtc: new Date(this.deps.clock.now()).toISOString() } : j));
    if (job === undefined) throw new HubError('ResourceNotFound', `No import or export job ${jobId.slice(0, 100)}.`);
    return job;
  }

  async #run(job: RegistryJob, by: Actor): Promise<void> {
    try {
      if ((await this.#change(job.jobId, (j) => (j.status === 'enqueued' ? { ...j, status: 'running' } : j)))?.status !== 'running') return;
      if (job.type === 'export') await this.#export(job);
      else await this.#import(job, by);
      await this.#change(job.jobId, (j) => (j.status === 'running' ? { ...j, status: 'completed', progress: 100, endTimeUtc: new Date(this.deps.clock.now()).toISOString() } : j));
    } catch (err) {
      this.deps.onError(err, job.jobId);
      const reason = err instanceof HubError || err instanceof Error ? err.message : String(err);
      await this.#change(job.jobId, (j) => ({ ...j, status: 'failed', failureReason: reason.slice(0, 500), endTimeUtc: new Date(this.deps.clock.now()).toISOString() })).catch((e: unknown) =>
        this.deps.onError(e, job.jobId),
      );
    }
  }

  async #export(job: RegistryJob): Promise<void> {
    const lines: string[] = [];
    let after: string | undefined;
    for (;;) {
      if ((await this.#load(job.jobId))?.status !== 'running') return;
      const page = await this.deps.store.listDevices({ ...(after === undefined ? {} : { after }), limit: 1000 });
      for (const d of page) {
        const rendered = renderDevice(d);
        const twin = await this.deps.twins.get(d.deviceId, null);
        const auth = rendered.authentication as JsonObject;
        if (job.excludeKeysInExport === true && isJsonObject(auth.symmetricKey)) auth.symmetricKey = { primaryKey: null, secondaryKey: null };
        const props = isJsonObject(twin.properties) ? twin.properties : {};
        lines.push(
          JSON.stringify({
            id: d.deviceId,
            eTag: d.etag,
            status: d.status,
            statusReason: d.statusReason,
            authentication: auth,
            twinETag: twin.etag,
            tags: isJsonObject(twin.tags) ? twin.tags : {},
            properties: { desired: withoutMeta(props.desired), reported: withoutMeta(props.reported) },
            capabilities: rendered.capabilities,
            ...(d.deviceScope === null ? {} : { deviceScope: d.deviceScope }),
          }),
        );
      }
      after = page.at(-1)?.deviceId;
      if (page.length < 1000) break;
    }
    await writeBlob(blobInContainer(job.outputBlobContainerUri, DEVICES_BLOB), Buffer.from(lines.map((l) => `${l}\n`).join(''), 'utf8'), this.deps.ca);
  }

  async #import(job: RegistryJob, by: Actor): Promise<void> {
    const text = await readBlob(blobInContainer(job.inputBlobContainerUri ?? '', DEVICES_BLOB), this.deps.ca);
    if (text === undefined) throw new HubError('ArgumentInvalid', `The input container has no ${DEVICES_BLOB}.`);
    const entries = text
      .toString('utf8')
      .split(/\r?\n/)
      .filter((l) => l.trim() !== '')
      .map((l, i) => {
        try {
          return JSON.parse(l) as unknown;
        } catch {
          throw new HubError('IotHubFormatError', `${DEVICES_BLOB} line ${i + 1} is not JSON.`);
        }
      });
    const errors: string[] = [];
    for (let i = 0; i < entries.length; i += MAX_BULK) {
      if ((await this.#load(job.jobId))?.status !== 'running') return;
      const result = await applyBulk(entries.slice(i, i + MAX_BULK), this.deps.registry, this.deps.twins, by);
      for (const e of result.errors) errors.push(JSON.stringify(e));
      const progress = Math.floor(((i + MAX_BULK) / entries.length) * 100);
      await this.#change(job.jobId, (j) => (j.status === 'running' ? { ...j, progress: Math.min(99, progress) } : j));
    }
    if (errors.length > 0) await writeBlob(blobInContainer(job.outputBlobContainerUri, IMPORT_ERRORS_BLOB), Buffer.from(errors.map((l) => `${l}\n`).join(''), 'utf8'), this.deps.ca);
  }

  #save(job: RegistryJob): Promise<void> {
    const now = this.deps.clock.now();
    return this.deps.counters.update([PREFIX + job.jobId], now, () => ({ writes: new Map([[PREFIX + job.jobId, { value: JSON.stringify(job), expiresAt: now + KEEP_MS }]]), result: undefined }));
  }

  async #load(jobId: string): Promise<RegistryJob | undefined> {
    return this.#change(jobId, (j) => j);
  }

  #change(jobId: string, f: (j: RegistryJob) => RegistryJob): Promise<RegistryJob | undefined> {
    const key = PREFIX + jobId;
    const now = this.deps.clock.now();
    return this.deps.counters.update([key], now, (current) => {
      const raw = current.get(key);
      if (raw === undefined) return { writes: new Map(), result: undefined };
      const before = JSON.parse(raw) as RegistryJob;
      const after = f(before);
      if (after === before) return { writes: new Map(), result: before };
      return { writes: new Map([[key, { value: JSON.stringify(after), expiresAt: now + KEEP_MS }]]), result: after };
    });
  }
}
