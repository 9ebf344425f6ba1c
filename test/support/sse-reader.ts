/**
 * A reader of `GET /events` on one node, as a back end would hold it: every event's id (the
 * stream's position after it) and its data, parsed, as they arrive.
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { generateSasToken } from '../../src/auth/sas.js';

export interface StreamedRecord {
  id: string;
  deviceId: string;
  partition: number;
  sequenceNumber: number;
  offset: string;
  payload: unknown;
  systemProperties: Record<string, string>;
}

export interface EventReader {
  records: StreamedRecord[];
  /** Resolves once the hub has answered and the stream has begun: from then on nothing is missed. */
  opened: Promise<void>;
  /** Resolves when the stream ends. */
  ended: Promise<void>;
  close(): void;
}

export interface ReaderTarget {
  /** The node's address; the TLS name and the SAS resource are `hostname`. */
  address: string;
  hostname: string;
  ownerKey: string;
  caFile: string;
}

/** `query` is the query string after `/events?` (from, deviceId); `lastEventId` is sent as Last-Event-ID. */
export function openEventReader(t: ReaderTarget, query: string, lastEventId?: string): EventReader {
  const token = generateSasToken({ resource: t.hostname, key: t.ownerKey, keyName: 'iothubowner', expiry: Math.floor(Date.now() / 1000) + 3600 });
  let endedResolve!: () => void;
  const r: EventReader = { records: [], opened: Promise.resolve(), ended: new Promise((res) => (endedResolve = res)), close: () => undefined };
  r.opened = new Promise((resolve, reject) => {
    const req = request(
      {
        host: t.address,
        servername: t.hostname,
        port: 443,
        path: `/events?${query}`,
        headers: { authorization: token, host: t.hostname, ...(lastEventId === undefined ? {} : { 'last-event-id': lastEventId }) },
        ca: readFileSync(t.caFile),
      },
      (res) => {
        if (res.statusCode !== 200) {
          // What the hub said goes into the failure: a refused reader names its reason.
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk.slice(0, 2000 - body.length)));
          res.on('end', () => {
            endedResolve();
            reject(new Error(`GET /events?${query}${lastEventId === undefined ? '' : ` (Last-Event-ID ${lastEventId})`} answered ${res.statusCode}: ${body}`));
          });
          return;
        }
        res.setEncoding('utf8');
        let text = '';
        res.on('close', endedResolve);
        res.on('data', (chunk: string) => {
          // The first bytes are the stream's opening comment, written once the positions are settled.
          resolve();
          text += chunk;
          const blocks = text.split('\n\n');
          text = blocks.pop() ?? '';
          for (const b of blocks) {
            const lines = b.split('\n');
            const data = lines.find((l) => l.startsWith('data: '));
            const id = lines.find((l) => l.startsWith('id: '));
            if (data === undefined || id === undefined) continue;
            r.records.push({ id: id.slice(4), ...(JSON.parse(data.slice(6)) as Omit<StreamedRecord, 'id'>) });
          }
        });
      },
    );
    req.on('error', (err) => {
      endedResolve();
      reject(err);
    });
    req.end();
    r.close = () => req.destroy();
  });
  return r;
}

/** Everything the log holds, read with `from=earliest` until `quietMs` pass without a new record. */
export async function readWholeLog(t: ReaderTarget, quietMs = 3000, timeoutMs = 120_000): Promise<StreamedRecord[]> {
  const r = openEventReader(t, 'from=earliest');
  await r.opened;
  const deadline = Date.now() + timeoutMs;
  let seen = -1;
  let since = Date.now();
  while (Date.now() < deadline) {
    await new Promise((res) => setTimeout(res, 250));
    if (r.records.length !== seen) {
      seen = r.records.length;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) break;
  }
  r.close();
  return r.records;
}
