import type { LogRecord } from '../../log/log-ports.js';
/** One record on its way to an endpoint, with that endpoint's enrichments (added as application properties). */
export interface RoutedMessage { record: LogRecord; enrichments: Record<string, string>; }
export interface EndpointSink {
  /** Resolves once the target holds every message of the batch durably (at least once); rejects with the reason otherwise. The batch is one partition's records in order. */
  deliver(batch: readonly RoutedMessage[]): Promise<void>;
  /**
   * The partition's dispatcher holds it now (the hub started, or this node took it over): finish
   * what an earlier holder of the partition left half done (a crash), without waiting for a batch.
   */
  resume?(partition: number): Promise<void>;
  /**
   * Once the partition's tail has caught up, the dispatcher waits this long (ms) from the first
   * record it gathered before it delivers a batch that is not full, so that records gather into
   * fewer, larger batches: for a sink whose every delivery costs a fixed amount however small the
   * batch (the file sink's write and fdatasync). Absent: at once.
   */
  readonly lingerMs?: number;
  /**
   * Records per delivery at most, for a sink whose delivery costs about the same whatever its size
   * (the file sink: one write, one fdatasync and a cursor save). Absent: the dispatcher's own (100).
   */
  readonly maxBatch?: number;
  close(): Promise<void>;
}
export class EndpointConfigError extends Error {}
