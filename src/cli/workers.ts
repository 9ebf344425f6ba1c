/**
 * `gatehouse start --workers N`: N hub processes on one machine, so every core serves devices.
 *
 * How they share the ports: node:cluster. The primary prepares the data dir once (keys, server
 * certificate, schema, default records), then forks N workers that each run a whole hub node (its
 * own node id, `<id>-w<i>`) and listen on the same addresses; the primary holds the listening
 * sockets and hands each new connection to the next worker in turn (node:cluster's round-robin,
 * the default on Linux), which spreads long-lived device connections evenly where SO_REUSEPORT's
 * hashing does not promise to. Workers share nothing in memory: they talk over NATS and keep
 * their state in PostgreSQL, as separate machines would. A worker that dies is started again.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import type { HubConfig } from '../config/schema.js';
import { closePrepared, prepareHub } from '../hub.js';
import { ensurePortsFree, resolveNodeId, StartupError } from '../hub/startup.js';
import { serveNodeMetrics, WORKER_INDEX_ENV } from '../metrics/node-metrics.js';

/** The env var a worker reads its node id from (a --node-id flag would override a plain env var). */
export const WORKER_NODE_ID_ENV = 'GATEHOUSE_WORKER_NODE_ID';
const STOP_GRACE_MS = 30_000;

export interface ReadyMessage {
  gatehouse: 'ready';
  line: string;
}

export function isWorker(): boolean {
  return cluster.isWorker;
}

/** In a worker: the node id the primary gave it. */
export function workerNodeId(): string | undefined {
  return cluster.isWorker ? process.env[WORKER_NODE_ID_ENV] : undefined;
}

/** In a worker: tell the primary this node listens. */
export function reportReady(line: string): void {
  const msg: ReadyMessage = { gatehouse: 'ready', line };
  process.send?.(msg);
}

function isReady(m: unknown): m is ReadyMessage {
  return typeof m === 'object' && m !== null && (m as ReadyMessage).gatehouse === 'ready';
}

/**
 * Runs the workers until SIGTERM/SIGINT, then stops them. Resolves with the ready line once every
 * worker listens (the caller prints it), and `stopped` when they are all gone.
 */
export async function superviseWorkers(config: HubConfig, logger: Logger): Promise<{ readyLine: string; stopped: Promise<void> }> {
  await ensurePortsFree(config.bind, [config.httpsPort, config.mqttPort, config.amqpPort]);
  const prepared = await prepareHub(config, logger);
  await closePrepared(prepared);
  const base = resolveNodeId(prepared.dataDir, config.nodeId);
  let stopping = false;
  const workers = new Map<number, Worker>();

  const fork = (i: number): Promise<string> => {
    const worker = cluster.fork({ [WORKER_NODE_ID_ENV]: `${base}-w${i}`, [WORKER_INDEX_ENV]: String(i) });
    workers.set(i, worker);
    // A scrape of /metrics on any worker answers for the node.
    serveNodeMetrics(worker);
    return new Promise((resolve, reject) => {
      let ready = false;
      worker.on('message', (m: unknown) => {
        if (!isReady(m) || ready) return;
        ready = true;
        resolve(m.line);
      });
      worker.once('exit', (code, signal) => {
        workers.delete(i);
        if (!ready) {
          reject(new StartupError(`worker ${i} (${base}-w${i}) exited with ${signal ?? String(code)} before it listened; its log says why`));
          return;
        }
        if (stopping) return;
        logger.error({ event: 'worker.exited', worker: i, node: `${base}-w${i}`, code, signal }, `worker ${i} exited; starting it again`);
        setTimeout(() => {
          if (!stopping) fork(i).catch((err: Error) => logger.error({ event: 'worker.restart-failed', worker: i, err: err.message }, 'a worker did not start again'));
        }, 1000).unref();
      });
    });
  };

  const stopAll = async () => {
    stopping = true;
    await Promise.all(
      [...workers.values()].map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            const kill = setTimeout(() => w.process.kill('SIGKILL'), STOP_GRACE_MS);
            w.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            w.process.kill('SIGTERM');
          }),
      ),
    );
  };

  const stopRequested = new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  let lines: string[];
  try {
    lines = await Promise.all(Array.from({ length: config.workers }, (_, i) => fork(i + 1)));
  } catch (err) {
    await stopAll();
    throw err;
  }
  const stopped = stopRequested.then(stopAll);
  return { readyLine: lines[0]!.replace(/\)\s*$/, `, ${config.workers} workers)`), stopped };
}
