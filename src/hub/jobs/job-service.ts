/**
 * Jobs, management side: Azure's `/jobs/v2/{id}` (schedule a twin update or a direct method over
 * the devices a query condition selects; read; cancel) and `GET /jobs/v2/query` (by type and
 * status, paged). Running them is the runner's (job-runner.ts), told through the bus (`jobs.changed`).
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import { HubError } from '../../core/errors.js';
import type { JsonObject } from '../../core/json.js';
import { type JobRecord, type JobStatus, type JobStore, type JobType } from '../../store/job-ports.js';
import { SUBJECTS, type HubBus } from '../../bus/subjects.js';
import { JOB_STATUSES, JOB_TYPES, MAX_ACTIVE_JOBS, jobFromBody, renderJob } from './job-input.js';

export const DEFAULT_JOB_PAGE = 100;
export const MAX_JOB_PAGE = 1000;

export interface JobPage {
  items: JsonObject[];
  continuation: string | undefined;
}

interface Cursor {
  createdTime: string;
  jobId: string;
}

function filterTag(type: string | undefined, status: string | undefined): string {
  return createHash('sha256').update(`${type ?? ''}\n${status ?? ''}`).digest('base64url').slice(0, 12);
}

export class JobService {
  constructor(
    private readonly store: JobStore,
    private readonly clock: Clock,
    private readonly bus: HubBus,
    private readonly limit = MAX_ACTIVE_JOBS,
  ) {}

  /** Creates the job: answered `queued`, as Azure answers a new job whatever its start time. */
  async create(id: string, body: unknown): Promise<JsonObject> {
    const now = this.clock.now();
    const job = jobFromBody(id, body, now);
    await this.store.insert(job, this.limit);
    this.bus.publish(SUBJECTS.jobsChanged, { id, change: 'created' });
    return { ...renderJob(job, { deviceCount: 0, failedCount: 0, succeededCount: 0, runningCount: 0, pendingCount: 0 }, now), status: 'queued' };
  }

  /** The job's type, for the right a caller needs (twin updates: RegistryWrite; methods: ServiceConnect). */
  async typeOf(id: string): Promise<JobType> {
    return (await this.#load(id)).type;
  }

  async get(id: string): Promise<JsonObject> {
    return this.#render(await this.#load(id));
  }

  /** Cancels an unfinished job (its pending devices are not done); a finished one is answered as it is. */
  async cancel(id: string): Promise<JsonObject> {
    await this.#load(id);
    const at = new Date(this.clock.now()).toISOString();
    if (await this.store.finish(id, 'cancelled', at, null)) this.bus.publish(SUBJECTS.jobsChanged, { id, change: 'cancelled' });
    return this.#render(await this.#load(id));
  }

  /** `GET /jobs/v2/query?jobType=&jobStatus=`: oldest first; the token is bound to the filters. */
  async query(type: string | undefined, status: string | undefined, pageSize: number | undefined, continuation: string | undefined): Promise<JobPage> {
    if (type !== undefined && !(JOB_TYPES as readonly string[]).includes(type)) throw new HubError('ArgumentInvalid', `jobType must be ${JOB_TYPES.join(' or ')}.`);
    if (status !== undefined && !(JOB_STATUSES as readonly string[]).includes(status)) throw new HubError('ArgumentInvalid', `jobStatus must be one of ${JOB_STATUSES.join(', ')}.`);
    const size = Math.min(pageSize ?? DEFAULT_JOB_PAGE, MAX_JOB_PAGE);
    const after = continuation === undefined || continuation === '' ? undefined : decodeToken(filterTag(type, status), continuation);
    // `scheduled` is a queued job whose start time is ahead: read queued ones and keep the right half.
    const stored = status === 'scheduled' || status === 'queued' ? 'queued' : (status as JobStatus | undefined);
    const now = this.clock.now();
    const items: JsonObject[] = [];
    let cursor = after;
    let last: Cursor | undefined;
    for (;;) {
      const batch = await this.store.list({ ...(type === undefined ? {} : { type: type as JobType }), ...(stored === undefined ? {} : { status: stored }), ...(cursor === undefined ? {} : { after: cursor }), limit: size + 1 });
      for (const job of batch) {
        const doc = await this.#render(job, now);
        cursor = { createdTime: job.createdTime, jobId: job.jobId };
        if (status !== undefined && doc.status !== status) continue;
        if (items.length === size) return { items, continuation: last === undefined ? undefined : encodeToken(filterTag(type, status), last) };
        items.push(doc);
        last = cursor;
      }
      if (batch.length < size + 1) return { items, continuation: undefined };
    }
  }

  async #render(job: JobRecord, now = this.clock.now()): Promise<JsonObject> {
    return renderJob(job, await this.store.statistics(job.jobId), now);
  }

  async #load(id: string): Promise<JobRecord> {
    const job = await this.store.get(id);
    if (job === undefined) throw new HubError('JobNotFound', `Job ${id} not found.`);
    return job;
  }
}

function encodeToken(tag: string, c: Cursor): string {
  return Buffer.from(JSON.stringify({ v: 1, f: tag, c: c.createdTime, j: c.jobId })).toString('base64url');
}

function decodeToken(tag: string, token: string): Cursor {
  try {
    const t = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { v?: unknown; f?: unknown; c?: unknown; j?: unknown };
    if (t.v === 1 && t.f === tag && typeof t.c === 'string' && typeof t.j === 'string') return { createdTime: t.c, jobId: t.j };
  } catch {
    // fall through
  }
  throw new HubError('ArgumentInvalid', 'The continuation token is invalid or belongs to another query.');
}
