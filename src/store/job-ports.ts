/**
 * Jobs (issue 18 item 1; Azure's `/jobs/v2/{id}`): a twin update or a direct method run over the
 * devices a query condition selects, scheduled, paced, and resumed after a restart. A job row says
 * what to do and how far it got; one device-job row per targeted device says how it went there
 * (Azure's `devices.jobs`). The node running a job holds it under a lease, renewed as it goes, so a
 * job whose node died is taken over when the lease lapses.
 */
import type { JsonObject } from '../core/json.js';

export type JobType = 'scheduleUpdateTwin' | 'scheduleDeviceMethod';
export type JobStatus = 'queued' | 'scheduled' | 'running' | 'completed' | 'failed' | 'cancelled';
/** Azure's DeviceJobStatus values. */
export type DeviceJobStatus = 'pending' | 'running' | 'completed' | 'failed' | 'canceled';

export interface JobRecord {
  jobId: string;
  type: JobType;
  queryCondition: string;
  /** scheduleUpdateTwin: the patch (`tags`, `properties.desired`). */
  updateTwin: JsonObject | null;
  /** scheduleDeviceMethod: methodName, payload, responseTimeoutInSeconds, connectTimeoutInSeconds. */
  cloudToDeviceMethod: JsonObject | null;
  maxExecutionTimeInSeconds: number;
  status: JobStatus;
  createdTime: string;
  /** When it is to start (as asked; ISO-8601). */
  startTime: string;
  /** When it finished, once it has. */
  endTime: string | null;
  failureReason: string | null;
  statusMessage: string | null;
  /** True once the device-job rows exist (the query condition was evaluated). */
  expanded: boolean;
}

export interface DeviceJobRecord {
  jobId: string;
  deviceId: string;
  jobType: JobType;
  status: DeviceJobStatus;
  createdDateTimeUtc: string;
  startTimeUtc: string | null;
  endTimeUtc: string | null;
  lastUpdatedDateTimeUtc: string;
  /** `{ deviceMethodResponse: { status, payload } }` for a method that was answered. */
  outcome: JsonObject | null;
  /** `{ code, description }` when it failed. */
  error: JsonObject | null;
}

export interface DeviceJobStatistics {
  deviceCount: number;
  failedCount: number;
  succeededCount: number;
  runningCount: number;
  pendingCount: number;
}

/** One device's result, written by the runner. */
export interface DeviceJobResult {
  deviceId: string;
  status: 'completed' | 'failed';
  startTimeUtc: string;
  endTimeUtc: string;
  outcome: JsonObject | null;
  error: JsonObject | null;
}

export interface JobStore {
  /** JobAlreadyExists when the id is taken; JobQuotaExceeded when `maxActive` unfinished jobs exist (one transaction). */
  insert(job: JobRecord, maxActive: number): Promise<void>;
  get(jobId: string): Promise<JobRecord | undefined>;
  /** Jobs ordered by creation then id, strictly after the cursor; optional type and status filters. */
  list(opts: { type?: JobType; status?: JobStatus; after?: { createdTime: string; jobId: string }; limit: number }): Promise<JobRecord[]>;
  statistics(jobId: string): Promise<DeviceJobStatistics>;
  /**
   * Sets the status (and end time, failure reason) unless the job already finished; a finishing
   * status also cancels (`canceled`) the device jobs still pending. False when the job was finished or gone.
   */
  finish(jobId: string, status: 'completed' | 'failed' | 'cancelled', at: string, failureReason: string | null): Promise<boolean>;
  /** Moves an unfinished job to `queued|scheduled|running` (no-op when finished). */
  setStatus(jobId: string, status: 'queued' | 'scheduled' | 'running'): Promise<void>;
  /**
   * Unfinished jobs due by `nowMs` that no live lease holds (or `owner` holds), oldest first. The
   * caller claims each with claim().
   */
  due(nowMs: number, owner: string, limit: number): Promise<JobRecord[]>;
  /** Takes or renews the lease: true when `owner` holds the job until `untilMs` (it was free, lapsed, or ours). */
  claim(jobId: string, owner: string, nowMs: number, untilMs: number): Promise<boolean>;
  /** Gives the lease up (a stopping node), so another node or the next start resumes at once. */
  release(jobId: string, owner: string): Promise<void>;
  /** The device-job rows for `deviceIds` as pending (existing rows stay as they are); then, when `last`, marks the job expanded. */
  addDevices(job: JobRecord, deviceIds: readonly string[], at: string, last: boolean): Promise<void>;
  /**
   * A query condition without WHERE (every device): pending rows for up to `limit` devices of the
   * registry with ids after `after` (idempotent, like addDevices). Returns the last id added, or
   * undefined when there were none (then the caller marks the job expanded with addDevices(…, [], …, true)).
   */
  addRegistryDevices(job: JobRecord, after: string, limit: number, at: string): Promise<string | undefined>;
  /**
   * Up to `limit` device ids still to do (pending or left running by a crash), by id, after `after`
   * (a runner passes the last id of its previous batch, so it never walks the rows it has done; '' from the start).
   */
  nextDevices(jobId: string, limit: number, after?: string): Promise<string[]>;
  /** Marks a batch's pending rows `running` (with their start time) before it is done. */
  markRunning(jobId: string, deviceIds: readonly string[], at: string): Promise<void>;
  /** Writes the outcomes of one batch, in one transaction. */
  recordResults(jobId: string, results: readonly DeviceJobResult[], at: string): Promise<void>;
  /** Device-job rows ordered by (deviceId, jobId), strictly after the cursor (`devices.jobs` queries). */
  scanDeviceJobs(opts: { after?: { deviceId: string; jobId: string }; limit: number }): Promise<DeviceJobRecord[]>;
}
