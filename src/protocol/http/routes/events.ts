/**
 * The built-in event stream over Server-Sent Events, read from the partitioned log:
 * `GET /events[?deviceId=ID][&from=now|earliest|POSITION]`. Every partition is followed at once and
 * records go out as they arrive (in order per partition, hence per device), from every node.
 *
 * Each event is `id: <position>`, `event: telemetry`, `data: <renderEvent JSON>`, its application
 * properties with the enrichments configured for `events` (routing/enricher.ts). The position is
 * where the stream stands after that event: per partition, the last sequence number passed, -1 for
 * none (`12.-1.40.7` on a four-partition hub; hub/telemetry/log-feed.ts). A reconnecting client
 * sends it as Last-Event-ID (or as `from`) and resumes with no gap and no duplicate. A comment line
 * every 15 s keeps proxies and idle timeouts from closing a quiet stream.
 *
 * Backpressure: a reader that is behind (a full page read) waits for the socket to drain before
 * reading on; a consumer that falls more than MAX_BUFFERED bytes behind is disconnected (it can
 * resume with Last-Event-ID).
 */
import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { validateDeviceId } from '../../../core/ids.js';
import { openLogFeed, parseCursor, type FeedStart } from '../../../hub/telemetry/log-feed.js';
import { renderEvent } from '../../../hub/telemetry/render-event.js';
import type { EventLog, RecordEnricher } from '../../../log/log-ports.js';

const KEEP_ALIVE_MS = 15_000;
const MAX_BUFFERED = 8 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;

type Query = { Querystring: { deviceId?: string; from?: string } };

/** 'now', 'earliest' or a position; Last-Event-ID (a reconnect) wins over the query. */
export function parseFrom(query: string | undefined, lastEventId: string | string[] | undefined, partitionCount: number): FeedStart {
  const header = Array.isArray(lastEventId) ? lastEventId[0] : lastEventId;
  if (header !== undefined && header.trim() !== '') return parseCursor(header.trim(), partitionCount, 'Last-Event-ID');
  if (query === undefined || query === '' || query === 'now') return 'now';
  if (query === 'earliest') return 'earliest';
  return parseCursor(query, partitionCount, 'from');
}

function waitForDrain(res: ServerResponse): Promise<void> {
  if (res.writableLength <= LOW_WATER || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

export function registerEventRoutes(app: FastifyInstance, log: EventLog, enrich: RecordEnricher): void {
  const open = new Set<ServerResponse>();
  // A hijacked response is not the server's to finish: end the streams so app.close() is not held.
  app.addHook('preClose', async () => {
    for (const res of open) res.end();
    open.clear();
  });

  app.get<Query>('/events', async (req, reply) => {
    const from = parseFrom(req.query.from, req.headers['last-event-id'], log.partitionCount);
    const deviceId = req.query.deviceId === undefined ? undefined : validateDeviceId(req.query.deviceId);
    const res = reply.raw;
    const gone = () => res.destroyed || res.writableEnded;
    // Where each partition starts is settled before the client hears anything: from the opening
    // comment on, no record is missed.
    const feed = await openLogFeed(log, {
      from,
      ...(deviceId === undefined ? {} : { deviceId }),
      ready: () => waitForDrain(res),
      // The enrichments configured for `events`, as the Event Hubs-compatible endpoint applies them.
      enrich,
      onError: (err) => {
        req.log.warn({ err, event: 'events.reader-failed' }, 'event stream reader ended on an error');
        res.end();
      },
    });

    reply.hijack();
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(': gatehouse event stream\n\n');
    open.add(res);

    const reader = feed.start((record, position) => {
      if (gone()) return;
      if (res.writableLength > MAX_BUFFERED) {
        req.log.warn({ event: 'events.slow-consumer', remote: req.ip }, 'event stream consumer too slow; disconnecting');
        res.destroy();
        return;
      }
      res.write(`id: ${position}\nevent: telemetry\ndata: ${JSON.stringify(renderEvent(record))}\n\n`);
    });
    const keepAlive = setInterval(() => {
      if (!gone()) res.write(': keep-alive\n\n');
    }, KEEP_ALIVE_MS);
    const cleanup = () => {
      clearInterval(keepAlive);
      reader.close();
      open.delete(res);
    };
    res.on('close', cleanup);
    // The client may have left before the listener was in place.
    if (res.destroyed) cleanup();
  });
}
