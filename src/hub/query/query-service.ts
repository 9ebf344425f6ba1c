/**
 * `POST /devices/query`: runs the query language over twins, page by page. Paging walks the twins
 * in key order and the continuation token is the key of the last row returned, bound to the query
 * text, so pages never overlap or skip and a token from another query is refused. A token is only
 * handed out when at least one more row exists (the SDK pages for as long as it gets one).
 * `FROM devices.jobs` walks the device-job rows (Azure's per-device job results) by device, then job.
 */
import { createHash } from 'node:crypto';
import { HubError } from '../../core/errors.js';
import type { JsonObject } from '../../core/json.js';
import type { JobStore, TwinStore } from '../../store/ports.js';
import { renderDeviceJob } from '../jobs/job-input.js';
import { renderTwin } from '../twins/twin-document.js';
import { Aggregator, isAggregate, matches, parseQuery, project } from './index.js';

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;
const SCAN_BATCH = 500;

export interface QueryPage {
  items: JsonObject[];
  continuation: string | undefined;
  itemType: 'twin' | 'deviceJob' | 'raw';
}

interface Cursor {
  deviceId: string;
  moduleId: string;
}

function queryTag(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 12);
}

function encodeToken(text: string, c: Cursor): string {
  return Buffer.from(JSON.stringify({ v: 1, q: queryTag(text), d: c.deviceId, m: c.moduleId })).toString('base64url');
}

function decodeToken(text: string, token: string): Cursor {
  try {
    const t = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { v?: unknown; q?: unknown; d?: unknown; m?: unknown };
    if (t.v === 1 && t.q === queryTag(text) && typeof t.d === 'string' && typeof t.m === 'string') {
      return { deviceId: t.d, moduleId: t.m };
    }
  } catch {
    // fall through
  }
  throw new HubError('ArgumentInvalid', 'The continuation token is invalid or belongs to another query.');
}

export class QueryService {
  constructor(private readonly store: TwinStore & { readonly jobs: Pick<JobStore, 'scanDeviceJobs'> }) {}

  async run(text: string, pageSize: number | undefined, continuation: string | undefined): Promise<QueryPage> {
    const query = parseQuery(text);
    const kind = query.source === 'devices' ? 'devices' : query.source === 'devices.jobs' ? 'jobs' : 'modules';
    const itemType = query.select.kind !== 'star' ? 'raw' : kind === 'jobs' ? 'deviceJob' : 'twin';

    if (isAggregate(query)) {
      const agg = new Aggregator(query);
      for await (const doc of this.#scan(kind, undefined)) if (matches(query.where, doc.doc)) agg.add(doc.doc);
      return { items: agg.results(), continuation: undefined, itemType };
    }

    const size = Math.min(pageSize ?? DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
    const start = continuation === undefined || continuation === '' ? undefined : decodeToken(text, continuation);
    const items: JsonObject[] = [];
    let last: Cursor | undefined;
    for await (const row of this.#scan(kind, start)) {
      if (!matches(query.where, row.doc)) continue;
      if (items.length === size) {
        // One more match exists beyond this page.
        return { items, continuation: last === undefined ? undefined : encodeToken(text, last), itemType };
      }
      items.push(project(query.select, row.doc));
      last = row.cursor;
    }
    return { items, continuation: undefined, itemType };
  }

  async *#scan(kind: 'devices' | 'modules' | 'jobs', after: Cursor | undefined): AsyncGenerator<{ doc: JsonObject; cursor: Cursor }> {
    let cursor = after;
    if (kind === 'jobs') {
      // The cursor's moduleId is the job id here.
      for (;;) {
        const batch = await this.store.jobs.scanDeviceJobs(cursor === undefined ? { limit: SCAN_BATCH } : { after: { deviceId: cursor.deviceId, jobId: cursor.moduleId }, limit: SCAN_BATCH });
        for (const d of batch) {
          cursor = { deviceId: d.deviceId, moduleId: d.jobId };
          yield { doc: renderDeviceJob(d), cursor };
        }
        if (batch.length < SCAN_BATCH) return;
      }
    }
    for (;;) {
      const batch = await this.store.scanTwins(cursor === undefined ? { kind, limit: SCAN_BATCH } : { kind, after: cursor, limit: SCAN_BATCH });
      for (const e of batch) {
        const c = { deviceId: e.twin.deviceId, moduleId: e.twin.moduleId ?? '' };
        yield { doc: renderTwin(e.twin, e.device, e.module), cursor: c };
        cursor = c;
      }
      if (batch.length < SCAN_BATCH) return;
    }
  }
}
