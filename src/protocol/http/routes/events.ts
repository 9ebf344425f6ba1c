/**
 * The built-in event stream over Server-Sent Events: `GET /events[?deviceId=ID][&from=now|SEQ]`.
 * Each event is `id: <seq>`, `event: telemetry`, `data: <renderEvent JSON>`; a reconnecting client
 * sends `Last-Event-ID` and resumes after that seq. A comment line every 15 s keeps proxies and
 * idle timeouts from closing a quiet stream.
 *
 * Backpressure: the replay waits for the socket to drain between pages; a live consumer that falls
 * more than MAX_BUFFERED bytes behind is disconnected (it can resume with Last-Event-ID).
 */
import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { HubError } from '../../../core/errors.js';
import { validateDeviceId } from '../../../core/ids.js';
import { renderEvent, type EventStream } from '../../../hub/telemetry/event-stream.js';

const KEEP_ALIVE_MS = 15_000;
const MAX_BUFFERED = 8 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;

type Query = { Querystring: { deviceId?: string; from?: string } };

/** 'now' or a seq; Last-Event-ID (a reconnect) wins over the query. */
export function parseFrom(query: string | undefined, lastEventId: string | string[] | undefined): 'now' | number {
  const header = Array.isArray(lastEventId) ? lastEventId[0] : lastEventId;
  if (header !== undefined && header.trim() !== '') return parseSeq(header.trim(), 'Last-Event-ID');
  if (query === undefined || query === '' || query === 'now') return 'now';
  return parseSeq(query, 'from');
}

function parseSeq(raw: string, what: string): number {
  if (!/^\d{1,15}$/.test(raw)) throw new HubError('ArgumentInvalid', `${what} must be now or a non-negative integer seq.`);
  return Number(raw);
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

export function registerEventRoutes(app: FastifyInstance, events: EventStream): void {
  const open = new Set<ServerResponse>();
  // A hijacked response is not the server's to finish: end the streams so app.close() is not held.
  app.addHook('preClose', async () => {
    for (const res of open) res.end();
    open.clear();
  });

  app.get<Query>('/events', async (req, reply) => {
    const from = parseFrom(req.query.from, req.headers['last-event-id']);
    const deviceId = req.query.deviceId === undefined ? undefined : validateDeviceId(req.query.deviceId);

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(': gatehouse event stream\n\n');
    open.add(res);

    const gone = () => res.destroyed || res.writableEnded;
    const sub = events.subscribe(
      {
        from,
        ...(deviceId === undefined ? {} : { deviceId }),
        ready: () => waitForDrain(res),
        onError: () => res.end(),
      },
      (e) => {
        if (gone()) return;
        if (res.writableLength > MAX_BUFFERED) {
          req.log.warn({ event: 'events.slow-consumer', remote: req.ip }, 'event stream consumer too slow; disconnecting');
          res.destroy();
          return;
        }
        res.write(`id: ${e.seq}\nevent: telemetry\ndata: ${JSON.stringify(renderEvent(e))}\n\n`);
      },
    );
    const keepAlive = setInterval(() => {
      if (!gone()) res.write(': keep-alive\n\n');
    }, KEEP_ALIVE_MS);
    const cleanup = () => {
      clearInterval(keepAlive);
      sub.close();
      open.delete(res);
    };
    res.on('close', cleanup);
    // The client may have left before the listener was in place.
    if (res.destroyed) cleanup();
  });
}
