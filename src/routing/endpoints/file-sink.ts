/**
 * The file endpoint: rolled NDJSON under a directory, as Azure's storage endpoint rolls blobs.
 * Each line is one envelope (envelope.ts). Files are named by `fileNameFormat` (Azure's tokens,
 * filled in with the time the chunk was started, UTC) plus `.ndjson`; each partition has its own
 * chunk, closed and published after `batchFrequencyInSeconds` or when the next batch would take
 * it past `maxChunkSizeInBytes`, and on close().
 *
 * Crash safety: append with a recovery scan, in a staging directory (file-chunks.ts). A batch is
 * appended to its partition's chunk in `<directory>/.partial/` with one write and fdatasync'ed
 * before deliver resolves; a chunk is published under its final name by a hard link once whole.
 * After a crash, resume (the partition's dispatcher took it: the restarted hub's start), or else
 * the partition's next deliver, cuts each of its leftover chunks after the last whole line and
 * publishes it: at once, not when the partition's next message comes, which may be never. So a
 * reader that reads only `*.ndjson` outside `.partial/` never meets a torn line nor waits for a
 * message the endpoint acknowledged, and rewriting whole files per batch (write then rename) is
 * avoided. A batch whose write fails is cut off again at once; a chunk
 * whose file was removed under the endpoint makes deliver reject (its batch was not kept).
 *
 * At least once: a batch fsync'ed just before a crash, whose deliver never resolved, comes again
 * and is written to the next chunk too; readers dedupe on (iothub, partition, sequenceNumber).
 */
import { unlink, type FileHandle } from 'node:fs/promises';
import { fileEndpoint, type FileEndpoint } from '../routing-config.js';
import { configError, parseEndpointConfig } from './config-check.js';
import { envelope, reasonOf } from './envelope.js';
import { createPartial, fileNameFormatProblem, formatFileName, partialName, publishPartial, recoverPartials, stillAt } from './file-chunks.js';
import type { EndpointSink, RoutedMessage } from './sink.js';
import type { SinkDeps } from './sink-deps.js';

/**
 * Records gather this long before a delivery that is not full (EndpointSink.lingerMs): each
 * delivery costs a write, an fdatasync and stats, whatever its size, and a reader sees a chunk only
 * once it is published (after batchFrequencyInSeconds), so the wait is not seen from outside.
 */
export const FILE_LINGER_MS = 200;
/**
 * Records per delivery at most: a busy partition fills a batch of 100 long before the linger ends
 * (at 1.5k msgs/s routed here a partition, every 70 ms), and each delivery costs the write, the
 * fdatasync, two stats and the dispatcher's cursor save whatever its size.
 */
export const FILE_MAX_BATCH = 1000;

interface Chunk {
  fh: FileHandle;
  path: string;
  finalName: string;
  openedAt: number;
  size: number;
  timer: NodeJS.Timeout;
}

interface PartitionState {
  chunk?: Chunk;
  /** Leftover partial files may exist (first use, or a failure left one behind). */
  recover: boolean;
  /** The partition's operations, one at a time (deliver, timed roll, close). */
  queue: Promise<void>;
}

function checkConfig(raw: FileEndpoint): FileEndpoint {
  const config = parseEndpointConfig(fileEndpoint, raw, 'files');
  const problem = fileNameFormatProblem(config.fileNameFormat);
  if (problem !== undefined) throw configError('files', config.name, problem);
  if (config.directory.split(/[\\/]/).includes('..')) throw configError('files', config.name, 'directory may not contain ".."');
  return config;
}

export function createFileSink(raw: FileEndpoint, deps: SinkDeps): EndpointSink {
  const config = checkConfig(raw);
  const where = `files '${config.name}' (${config.directory})`;
  const now = deps.now ?? Date.now;
  const frequencyMs = config.batchFrequencyInSeconds * 1000;
  const partitions = new Map<number, PartitionState>();
  let closed = false;

  function stateOf(p: number): PartitionState {
    let s = partitions.get(p);
    if (s === undefined) {
      s = { recover: true, queue: Promise.resolve() };
      partitions.set(p, s);
    }
    return s;
  }

  /** Runs op after the partition's earlier operations; its failure does not block later ones. */
  function serial<T>(s: PartitionState, op: () => Promise<T>): Promise<T> {
    const run = s.queue.then(op);
    s.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  async function roll(s: PartitionState): Promise<void> {
    const c = s.chunk;
    if (c === undefined) return;
    s.chunk = undefined;
    clearTimeout(c.timer);
    // If publishing fails, the chunk stays in .partial/ and the next deliver's recovery publishes it.
    s.recover = true;
    await c.fh.close();
    if (c.size === 0) await unlink(c.path);
    else await publishPartial(config.directory, c.path, c.finalName);
    s.recover = false;
  }

  async function discard(s: PartitionState): Promise<void> {
    const c = s.chunk;
    if (c === undefined) return;
    s.chunk = undefined;
    clearTimeout(c.timer);
    s.recover = true;
    await c.fh.close().catch(() => undefined);
  }

  async function openChunk(p: number, s: PartitionState): Promise<Chunk> {
    const openedAt = now();
    const finalName = formatFileName(config.fileNameFormat, deps.hubName, p, openedAt);
    const { path, fh } = await createPartial(config.directory, partialName(deps.hubName, p, finalName));
    const timer = setTimeout(() => {
      serial(s, async () => {
        if (s.chunk?.fh === fh) await roll(s);
      }).catch((err: unknown) => deps.logger?.warn({ endpoint: config.name, partition: p, reason: reasonOf(err) }, 'routing.file.roll-failed'));
    }, frequencyMs);
    timer.unref();
    const c: Chunk = { fh, path, finalName, openedAt, size: 0, timer };
    s.chunk = c;
    return c;
  }

  /**
   * One write, fdatasync, then the check that the file is still where readers will look: a
   * removal before the check (during this write, or since the last one) fails this batch, which
   * comes again to a new chunk. One check after is enough; one before as well only cost stats.
   */
  async function append(c: Chunk, data: Buffer): Promise<void> {
    let written = 0;
    while (written < data.length) {
      const { bytesWritten } = await c.fh.write(data, written, data.length - written);
      written += bytesWritten;
    }
    await c.fh.datasync();
    if (!(await stillAt(c.fh, c.path))) throw new Error('the chunk file was removed or moved away');
    c.size += data.length;
  }

  /** Publishes the partition's leftover chunks (a crash, a failed write) before it opens a new one. */
  async function recover(p: number, s: PartitionState): Promise<void> {
    if (s.recover && s.chunk === undefined) {
      await recoverPartials(config.directory, deps.hubName, p);
      s.recover = false;
    }
  }

  async function deliverPartition(p: number, s: PartitionState, lines: Buffer[]): Promise<void> {
    await recover(p, s);
    let i = 0;
    while (i < lines.length) {
      let c = s.chunk;
      if (c !== undefined && now() - c.openedAt >= frequencyMs) {
        await roll(s);
        c = undefined;
      }
      c ??= await openChunk(p, s);
      // As many lines as fit the chunk; at least one, so a line larger than the limit still goes.
      let bytes = 0;
      let j = i;
      while (j < lines.length && (j === i || c.size + bytes + lines[j]!.length <= config.maxChunkSizeInBytes)) bytes += lines[j++]!.length;
      if (c.size > 0 && c.size + bytes > config.maxChunkSizeInBytes) {
        await roll(s);
        continue;
      }
      const before = c.size;
      try {
        await append(c, Buffer.concat(lines.slice(i, j)));
      } catch (err) {
        // Cut what this write may have left, so the chunk holds whole lines only; failing that,
        // leave the chunk to the recovery scan.
        try {
          await c.fh.truncate(before);
          await c.fh.datasync();
          if (!(await stillAt(c.fh, c.path))) await discard(s);
        } catch {
          await discard(s);
        }
        throw err;
      }
      i = j;
      if (c.size >= config.maxChunkSizeInBytes) await roll(s);
    }
  }

  return {
    lingerMs: FILE_LINGER_MS,
    maxBatch: FILE_MAX_BATCH,
    async deliver(batch: readonly RoutedMessage[]): Promise<void> {
      if (closed) throw new Error(`${where}: closed`);
      // One partition per batch is the contract; runs of several are taken in order all the same.
      let start = 0;
      while (start < batch.length) {
        const p = batch[start]!.record.partition;
        let end = start;
        while (end < batch.length && batch[end]!.record.partition === p) end++;
        const lines = batch.slice(start, end).map((m) => Buffer.from(`${JSON.stringify(envelope(m, deps.hubName))}\n`));
        const s = stateOf(p);
        try {
          await serial(s, () => deliverPartition(p, s, lines));
        } catch (err) {
          throw new Error(`${where}: ${reasonOf(err)}`);
        }
        start = end;
      }
    },
    async resume(p: number): Promise<void> {
      if (closed) return;
      const s = stateOf(p);
      try {
        await serial(s, () => recover(p, s));
      } catch (err) {
        throw new Error(`${where}: ${reasonOf(err)}`);
      }
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      const failures: string[] = [];
      for (const [p, s] of partitions) {
        await serial(s, () => roll(s)).catch((err: unknown) => failures.push(`partition ${p}: ${reasonOf(err)}`));
      }
      if (failures.length > 0) deps.logger?.warn({ endpoint: config.name, failures }, 'routing.file.close-roll-failed');
    },
  };
}
