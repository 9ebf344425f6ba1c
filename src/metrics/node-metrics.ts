/**
 * `/metrics` of a node run as several worker processes (`gatehouse start --workers N`): every
 * worker answers the scrape it happens to accept, and it answers for the node. It asks the primary,
 * which gathers each worker's registry (prom-client's AggregatorRegistry over the cluster IPC
 * channel) and merges them: counters and per-worker gauges add up; a gauge every worker reads from
 * the shared store or state says how it merges (`aggregator: 'max'` where it is declared). Without
 * this, a scrape of a 6-worker node saw one worker's sixth of the connections, at random.
 *
 * A worker whose primary does not answer in time serves its own metrics under a comment saying so,
 * rather than failing the scrape.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type PrometheusContentType, type Registry } from 'prom-client';

const REQUEST = 'gatehouse:metrics?';
const ANSWER = 'gatehouse:metrics';
/** prom-client gives up on a worker after 5 s; the asking worker waits a little longer. */
const WAIT_MS = 6_000;

interface MetricsRequest {
  gatehouse: typeof REQUEST;
  id: number;
}
interface MetricsAnswer {
  gatehouse: typeof ANSWER;
  id: number;
  body?: string;
  error?: string;
}

let aggregator: AggregatorRegistry<PrometheusContentType> | undefined;

/** In the primary: answer this worker's requests with the node's merged metrics. */
export function serveNodeMetrics(worker: Worker): void {
  aggregator ??= new AggregatorRegistry<PrometheusContentType>();
  const agg = aggregator;
  worker.on('message', (m: unknown) => {
    if (typeof m !== 'object' || m === null || (m as MetricsRequest).gatehouse !== REQUEST) return;
    const id = (m as MetricsRequest).id;
    const reply = (a: Omit<MetricsAnswer, 'gatehouse' | 'id'>) => {
      if (worker.isConnected()) worker.send({ gatehouse: ANSWER, id, ...a } satisfies MetricsAnswer);
    };
    agg.clusterMetrics().then(
      (body: string) => reply({ body }),
      (err: Error) => reply({ error: err.message }),
    );
  });
}

/** In a worker: the registry the primary's gathering reads (ours, not prom-client's global one). */
export function shareWithPrimary(registry: Registry): void {
  if (!cluster.isWorker) return;
  // Constructing one installs prom-client's answering listener in this worker.
  aggregator ??= new AggregatorRegistry<PrometheusContentType>();
  AggregatorRegistry.setRegistries([registry]);
}

/** Set by the primary on each worker it forks: 1..N, the same number again for a worker started anew. */
export const WORKER_INDEX_ENV = 'GATEHOUSE_WORKER_INDEX';

/**
 * Whether this process counts the node's shared-store gauges (C2D depth): every process but a
 * --workers node's workers 2..N. Those gauges merge by max, so the others' 0 takes nothing away,
 * and a scrape costs the store one count instead of one per worker. While worker 1 is started
 * anew (a second after it died) a scrape shows 0.
 */
export function countsSharedGauges(): boolean {
  return !cluster.isWorker || process.env[WORKER_INDEX_ENV] === '1';
}

export function isClusterWorker(): boolean {
  return cluster.isWorker && typeof process.send === 'function';
}

let nextId = 1;

/** In a worker: the node's metrics from the primary; rejects if it does not answer in time. */
export function nodeMetrics(): Promise<string> {
  const id = nextId++;
  return new Promise<string>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      process.off('message', onMessage);
    };
    const onMessage = (m: unknown) => {
      if (typeof m !== 'object' || m === null || (m as MetricsAnswer).gatehouse !== ANSWER || (m as MetricsAnswer).id !== id) return;
      done();
      const a = m as MetricsAnswer;
      if (a.body !== undefined) resolve(a.body);
      else reject(new Error(a.error ?? 'no metrics in the answer'));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`the primary did not answer in ${WAIT_MS} ms`));
    }, WAIT_MS);
    process.on('message', onMessage);
    process.send?.({ gatehouse: REQUEST, id } satisfies MetricsRequest);
  });
}
