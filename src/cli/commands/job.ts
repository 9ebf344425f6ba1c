/**
 * `gatehouse job create|show|list|cancel`, as `az iot hub job`: scheduled twin updates and direct
 * methods over the devices a query condition selects. create takes az's flags (`--job-type
 * scheduleUpdateTwin --twin-patch JSON|FILE` or `scheduleDeviceMethod --mn NAME [--mp JSON|FILE]`,
 * `-q CONDITION`, `--start-time`, `--ttl`) and, like az, `--wait` polls until the job ends.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { usage } from '../errors.js';
import { print } from '../output.js';
import { encodeId, type RestClient } from '../rest-client.js';
import { alias, boolFlag, connectionOptions, intInRange, jsonObjectOption, jsonOrFile, withClient, type ConnOpts } from './common.js';

const JOB_TYPES = ['scheduleUpdateTwin', 'scheduleDeviceMethod'] as const;
const JOB_STATUSES = ['queued', 'scheduled', 'running', 'completed', 'failed', 'cancelled'] as const;
const COLUMNS = ['jobId', 'type', 'status', 'startTime', 'endTime', 'deviceCount', 'succeededCount', 'failedCount', 'pendingCount'];

type Job = Record<string, unknown> & { status?: string; deviceJobStatistics?: Record<string, number> };

function row(j: Job): Record<string, unknown> {
  const s = j.deviceJobStatistics ?? {};
  return { jobId: j.jobId, type: j.type, status: j.status, startTime: j.startTime, endTime: j.endTime, deviceCount: s.deviceCount, succeededCount: s.succeededCount, failedCount: s.failedCount, pendingCount: s.pendingCount };
}

function isoTime(v: string): string {
  const ms = Date.parse(v);
  if (!Number.isFinite(ms)) throw new InvalidArgumentError('expected an ISO 8601 date and time');
  return new Date(ms).toISOString();
}

const idOption = (cmd: Command) => cmd.requiredOption('--job-id <id>', 'the job id');

async function get(c: RestClient, id: string): Promise<Job> {
  return (await c.call('GET', `/jobs/v2/${encodeId(id)}`)).body as Job;
}

interface CreateOpts extends ConnOpts {
  jobId: string;
  jobType: (typeof JOB_TYPES)[number];
  queryCondition?: string;
  startTime?: string;
  ttl: number;
  twinPatch?: string;
  methodName?: string;
  methodPayload?: string;
  methodConnectTimeout: number;
  methodResponseTimeout: number;
  wait?: boolean;
  pollInterval: number;
  pollDuration: number;
}

function createBody(o: CreateOpts): Record<string, unknown> {
  if (o.queryCondition === undefined) throw usage(`--query-condition is required for ${o.jobType}: a condition on device twins (the hub prefixes "SELECT * FROM devices WHERE "), or * for every device`, 'ArgumentInvalid');
  const body: Record<string, unknown> = { jobId: o.jobId, type: o.jobType, queryCondition: o.queryCondition, maxExecutionTimeInSeconds: o.ttl };
  if (o.startTime !== undefined) body.startTime = o.startTime;
  if (o.jobType === 'scheduleUpdateTwin') {
    if (o.twinPatch === undefined) throw usage('scheduleUpdateTwin needs --twin-patch', 'ArgumentInvalid');
    // As az sends it: a job is a forced update.
    body.updateTwin = { ...jsonObjectOption(o.twinPatch, '--twin-patch'), etag: '*' };
  } else {
    if (o.methodName === undefined) throw usage('scheduleDeviceMethod needs --method-name', 'ArgumentInvalid');
    body.cloudToDeviceMethod = {
      methodName: o.methodName,
      payload: o.methodPayload === undefined ? null : jsonOrFile(o.methodPayload, '--method-payload'),
      connectTimeoutInSeconds: o.methodConnectTimeout,
      responseTimeoutInSeconds: o.methodResponseTimeout,
    };
  }
  return body;
}

export function registerJob(program: Command): void {
  const cmd = program.command('job').description('jobs: scheduled twin updates and direct methods over many devices (az iot hub job)');

  const create = idOption(cmd.command('create').description('schedule a job'))
    .addOption(new Option('--jt, --job-type <type>', 'what the job does').choices(JOB_TYPES).makeOptionMandatory())
    .option('-q, --query-condition <condition>', "which devices: a condition on device twins (deviceId IN ['a', 'b'], tags.site = 'north'), * for all")
    .option('--start-time <time>', 'when to start, ISO 8601 (default: now) (also --start)', isoTime)
    .option('--ttl <seconds>', 'the longest the job may run, in seconds', intInRange(1, 2147483647), 3600)
    .option('--twin-patch <json|file>', 'scheduleUpdateTwin: the patch, {"tags": {...}, "properties": {"desired": {...}}} (also --patch)')
    .option('--mn, --method-name <name>', 'scheduleDeviceMethod: the method to call')
    .option('--mp, --method-payload <json|file>', 'scheduleDeviceMethod: its payload')
    .option('--mct, --method-connect-timeout <seconds>', 'seconds to wait for each device to connect (0-300)', intInRange(0, 300), 30)
    .option('--mrt, --method-response-timeout <seconds>', "seconds to wait for each device's answer (5-300)", intInRange(5, 300), 30)
    .option('-w, --wait [bool]', 'wait until the job completed, failed or was cancelled, and print it then', boolFlag)
    .option('--poll-interval <seconds>', 'with --wait: seconds between looks (also --interval)', intInRange(1, 3600), 10)
    .option('--poll-duration <seconds>', 'with --wait: give up after this many seconds (also --duration)', intInRange(1, 86400), 600);
  alias(create, '--start <time>', 'startTime', { parse: isoTime });
  alias(create, '--patch <json|file>', 'twinPatch');
  alias(create, '--interval <seconds>', 'pollInterval', { parse: intInRange(1, 3600) });
  alias(create, '--duration <seconds>', 'pollDuration', { parse: intInRange(1, 86400) });
  connectionOptions(create).action(async (o: CreateOpts) => {
    const body = createBody(o);
    await withClient(o, async (c) => {
      let job = (await c.call('PUT', `/jobs/v2/${encodeId(o.jobId)}`, body)).body as Job;
      if (o.wait === true) {
        const end = Date.now() + o.pollDuration * 1000;
        while (!['completed', 'failed', 'cancelled'].includes(String(job.status)) && Date.now() < end) {
          await new Promise((r) => setTimeout(r, Math.min(o.pollInterval * 1000, Math.max(0, end - Date.now()))));
          job = await get(c, o.jobId);
        }
      }
      print(o.output === 'table' ? [row(job)] : job, o.output, COLUMNS);
    });
  });

  connectionOptions(idOption(cmd.command('show').description('show a job: status, times, device statistics'))).action(async (o: ConnOpts & { jobId: string }) => {
    await withClient(o, async (c) => {
      const j = await get(c, o.jobId);
      print(o.output === 'table' ? [row(j)] : j, o.output, COLUMNS);
    });
  });

  const list = cmd
    .command('list')
    .description('list jobs, oldest first')
    .addOption(new Option('--jt, --job-type <type>', 'only jobs of this type').choices(JOB_TYPES))
    .addOption(new Option('--js, --job-status <status>', 'only jobs in this status').choices(JOB_STATUSES))
    .option('--top <n>', 'at most this many', intInRange(1, 100000));
  connectionOptions(list).action(async (o: ConnOpts & { jobType?: string; jobStatus?: string; top?: number }) => {
    await withClient(o, async (c) => {
      const params = [o.jobType === undefined ? '' : `jobType=${o.jobType}`, o.jobStatus === undefined ? '' : `jobStatus=${o.jobStatus}`].filter((p) => p !== '');
      const path = `/jobs/v2/query${params.length === 0 ? '' : `?${params.join('&')}`}`;
      const all: Job[] = [];
      let continuation: string | undefined;
      do {
        const r = await c.call('GET', path, undefined, continuation === undefined ? {} : { 'x-ms-continuation': continuation });
        all.push(...(r.body as Job[]));
        const next = r.headers['x-ms-continuation'];
        continuation = typeof next === 'string' && next !== '' ? next : undefined;
      } while (continuation !== undefined && (o.top === undefined || all.length < o.top));
      const jobs = o.top === undefined ? all : all.slice(0, o.top);
      print(o.output === 'table' ? jobs.map(row) : jobs, o.output, COLUMNS);
    });
  });

  connectionOptions(idOption(cmd.command('cancel').description('cancel a job: devices not done yet are not done'))).action(async (o: ConnOpts & { jobId: string }) => {
    await withClient(o, async (c) => {
      const j = (await c.call('POST', `/jobs/v2/${encodeId(o.jobId)}/cancel`)).body as Job;
      print(o.output === 'table' ? [row(j)] : j, o.output, COLUMNS);
    });
  });
}
