/**
 * What a `PUT /jobs/v2/{id}` body may say, checked once at creation (Azure's JobRequest as the
 * azure-iothub JobClient and `az iot hub job create` send it), and the documents the REST API
 * answers with (Azure's JobResponse and the `devices.jobs` rows).
 */
import { HubError } from '../../core/errors.js';
import { printable } from '../../core/ids.js';
import { isJsonObject, type JsonObject } from '../../core/json.js';
import type { DeviceJobRecord, DeviceJobStatistics, JobRecord, JobStatus, JobType } from '../../store/job-ports.js';
import { parseMethodCall } from '../methods/method-service.js';
import { isAggregate, parseQuery, type ParsedQuery } from '../query/index.js';
import { validatePatch } from '../twins/twin-patch.js';

export const JOB_TYPES: readonly JobType[] = ['scheduleUpdateTwin', 'scheduleDeviceMethod'];
export const JOB_STATUSES: readonly JobStatus[] = ['queued', 'scheduled', 'running', 'completed', 'failed', 'cancelled'];
/** The SDK's default (defaultMaxExecutionTimeInSeconds). */
export const DEFAULT_MAX_EXECUTION_S = 3600;
/** Unfinished jobs a hub holds at most (JobQuotaExceeded beyond). */
export const MAX_ACTIVE_JOBS = 100;

/** Job ids: the identity registry's id rules (the SDKs use UUIDs). */
const JOB_ID = /^[A-Za-z0-9\-.+%_#*?!(),=@$':;]{1,128}$/;

function invalid(message: string): HubError {
  return new HubError('ArgumentInvalid', message);
}

export function checkJobId(id: string): void {
  if (!JOB_ID.test(id)) throw invalid(`The job id '${printable(id.slice(0, 140))}' is invalid: use 1-128 letters, digits and -.+%_#*?!(),=@$':;.`);
}

/**
 * The query condition as a query over device twins: a WHERE condition (the service prefixes
 * `SELECT * FROM devices WHERE`, as Azure does), `*` for every device, or a whole
 * `SELECT * FROM devices WHERE ...`.
 */
export function parseCondition(condition: string): ParsedQuery {
  const cond = condition.trim();
  if (cond === '') throw invalid('queryCondition is empty; use * for every device.');
  const text = /^SELECT\s/i.test(cond) ? cond : cond === '*' ? 'SELECT * FROM devices' : `SELECT * FROM devices WHERE ${cond}`;
  let q: ParsedQuery;
  try {
    q = parseQuery(text);
  } catch (err) {
    throw invalid(`queryCondition is not a valid condition: ${(err as Error).message}`);
  }
  if (q.source !== 'devices' || isAggregate(q)) throw invalid('queryCondition must select devices (FROM devices), without COUNT or GROUP BY.');
  return q;
}

/**
 * The twin patch of a scheduleUpdateTwin job: tags and desired properties. `etag` may only be `*`
 * (a job always forces, as az says), `deviceId` is ignored, reported properties must be empty.
 * Empty sections are dropped, so `{"tags": {}, "properties": {"desired": {}}}` changes nothing.
 */
export function parseTwinPatch(v: unknown): JsonObject {
  if (!isJsonObject(v)) throw invalid('updateTwin must be a JSON object with tags and/or properties.desired.');
  if (v.etag !== undefined && v.etag !== null && v.etag !== '*') throw invalid("updateTwin.etag may only be '*': a job updates whatever version each twin has.");
  const out: JsonObject = {};
  if (v.tags !== undefined && v.tags !== null) {
    const tags = validatePatch('tags', v.tags);
    if (Object.keys(tags).length > 0) out.tags = tags;
  }
  const props = v.properties;
  if (props !== undefined && props !== null) {
    if (!isJsonObject(props)) throw invalid('updateTwin.properties must be a JSON object.');
    const reported = props.reported;
    if (reported !== undefined && reported !== null && !(isJsonObject(reported) && Object.keys(reported).length === 0)) {
      throw invalid('updateTwin cannot set reported properties: they belong to the device.');
    }
    if (props.desired !== undefined && props.desired !== null) {
      const desired = validatePatch('properties.desired', props.desired);
      if (Object.keys(desired).length > 0) out.properties = { desired };
    }
  }
  return out;
}

function startOf(v: unknown, now: number): string {
  if (v === undefined || v === null || v === '') return new Date(now).toISOString();
  const ms = typeof v === 'string' ? Date.parse(v) : NaN;
  if (!Number.isFinite(ms)) throw invalid('startTime must be an ISO-8601 date and time.');
  return new Date(ms).toISOString();
}

/** A new job from a PUT body; `now` in ms. */
export function jobFromBody(id: string, body: unknown, now: number): JobRecord {
  checkJobId(id);
  if (!isJsonObject(body)) throw invalid('The job must be a JSON object.');
  if (body.jobId !== undefined && body.jobId !== null && body.jobId !== id) throw invalid(`The body's jobId '${printable(String(body.jobId))}' differs from the id in the path '${printable(id)}'.`);
  const type = body.type;
  if (type !== 'scheduleUpdateTwin' && type !== 'scheduleDeviceMethod') throw invalid(`type must be ${JOB_TYPES.join(' or ')}.`);
  if (typeof body.queryCondition !== 'string') throw invalid('queryCondition is missing: a condition on device twins, or * for every device.');
  parseCondition(body.queryCondition);
  const max = body.maxExecutionTimeInSeconds;
  if (max !== undefined && max !== null && (typeof max !== 'number' || !Number.isInteger(max) || max < 1 || max > 2_147_483_647)) {
    throw invalid('maxExecutionTimeInSeconds must be a whole number of seconds, at least 1.');
  }
  let updateTwin: JsonObject | null = null;
  let cloudToDeviceMethod: JsonObject | null = null;
  if (type === 'scheduleUpdateTwin') updateTwin = parseTwinPatch(body.updateTwin);
  else {
    if (!isJsonObject(body.cloudToDeviceMethod)) throw invalid('cloudToDeviceMethod is missing: {methodName, payload, responseTimeoutInSeconds, connectTimeoutInSeconds}.');
    cloudToDeviceMethod = { ...parseMethodCall(body.cloudToDeviceMethod) };
  }
  const createdTime = new Date(now).toISOString();
  return {
    jobId: id,
    type,
    queryCondition: body.queryCondition,
    updateTwin,
    cloudToDeviceMethod,
    maxExecutionTimeInSeconds: typeof max === 'number' ? max : DEFAULT_MAX_EXECUTION_S,
    status: 'queued',
    createdTime,
    startTime: startOf(body.startTime, now),
    endTime: null,
    failureReason: null,
    statusMessage: null,
    expanded: false,
  };
}

/** Azure's JobResponse. A queued job whose start time is ahead is `scheduled`. */
export function renderJob(job: JobRecord, stats: DeviceJobStatistics, now: number): JsonObject {
  const status = job.status === 'queued' && Date.parse(job.startTime) > now ? 'scheduled' : job.status;
  const doc: JsonObject = {
    jobId: job.jobId,
    queryCondition: job.queryCondition,
    createdTime: job.createdTime,
    startTime: job.startTime,
    ...(job.endTime === null ? {} : { endTime: job.endTime }),
    maxExecutionTimeInSeconds: job.maxExecutionTimeInSeconds,
    type: job.type,
    ...(job.cloudToDeviceMethod === null ? {} : { cloudToDeviceMethod: job.cloudToDeviceMethod }),
    ...(job.updateTwin === null ? {} : { updateTwin: job.updateTwin }),
    status,
    ...(job.failureReason === null ? {} : { failureReason: job.failureReason }),
    ...(job.statusMessage === null ? {} : { statusMessage: job.statusMessage }),
    deviceJobStatistics: { ...stats },
  };
  return doc;
}

/** A `devices.jobs` row as Azure's query returns it. */
export function renderDeviceJob(d: DeviceJobRecord): JsonObject {
  return {
    deviceId: d.deviceId,
    jobId: d.jobId,
    jobType: d.jobType,
    status: d.status,
    startTimeUtc: d.startTimeUtc,
    endTimeUtc: d.endTimeUtc,
    createdDateTimeUtc: d.createdDateTimeUtc,
    lastUpdatedDateTimeUtc: d.lastUpdatedDateTimeUtc,
    outcome: d.outcome ?? { deviceMethodResponse: null },
    ...(d.error === null ? {} : { error: d.error }),
  };
}
