/**
 * The file endpoint on a temp directory: the sink contract (what a reader finds: published chunks,
 * then the open chunks' synced lines), names from Azure's tokens, rolling by time and by size,
 * and crash safety: a torn last line is cut at the restart, and a process killed with SIGKILL
 * while writing leaves, after the restart, only whole lines holding every acknowledged message.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { decodeBody, type MessageEnvelope } from '../src/routing/endpoints/envelope.js';
import { createFileSink } from '../src/routing/endpoints/file-sink.js';
import { EndpointConfigError } from '../src/routing/endpoints/sink.js';
import { CASE_HUB, endpointSinkConformance, routedBatch, type Delivered } from '../src/routing/endpoints/sink.case.js';
import type { SinkDeps } from '../src/routing/endpoints/sink-deps.js';
import type { FileEndpoint } from '../src/routing/routing-config.js';
import { ROOT } from './support/hub-process.js';

function config(directory: string, over: Partial<FileEndpoint> = {}): FileEndpoint {
  return {
    name: 'files-out',
    directory,
    fileNameFormat: '{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}',
    batchFrequencyInSeconds: 300,
    maxChunkSizeInBytes: 314_572_800,
    encoding: 'json',
    ...over,
  };
}

async function walk(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir, { recursive: true });
  } catch {
    return [];
  }
  return names.map((n) => join(dir, n));
}

/** `name.ndjson` before `name-1.ndjson` before `name-2.ndjson`, then by name. */
function chunkOrder(a: string, b: string): number {
  const key = (p: string): [string, number] => {
    const m = /^(.*?)(?:-(\d+))?\.ndjson$/.exec(p)!;
    return [m[1]!, Number(m[2] ?? 0)];
  };
  const [ka, na] = key(a);
  const [kb, nb] = key(b);
  return ka < kb ? -1 : ka > kb ? 1 : na - nb;
}

/** The published chunks under the directory (relative paths, in order). */
async function published(dir: string): Promise<string[]> {
  return (await walk(dir))
    .map((p) => relative(dir, p))
    .filter((p) => p.endsWith('.ndjson') && !p.startsWith('.partial'))
    .sort(chunkOrder);
}

function parseLines(text: string, file: string): MessageEnvelope[] {
  assert.ok(text === '' || text.endsWith('\n'), `${file} ends with a whole line`);
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as MessageEnvelope);
}

function toDelivered(e: MessageEnvelope): Delivered {
  return {
    partition: e.partition,
    sequenceNumber: e.sequenceNumber,
    deviceId: e.deviceId,
    body: decodeBody(e),
    properties: { ...e.properties, ...e.enrichments },
    systemProperties: e.systemProperties,
  };
}

/** What a reader finds: published chunks in order, then what open chunks hold (synced, not yet published). */
async function everything(dir: string): Promise<MessageEnvelope[]> {
  const out: MessageEnvelope[] = [];
  for (const f of await published(dir)) out.push(...parseLines(await readFile(join(dir, f), 'utf8'), f));
  for (const f of (await walk(join(dir, '.partial'))).sort()) out.push(...parseLines(await readFile(f, 'utf8'), f));
  return out;
}

const tempRoot = (): string => mkdtempSync(join(tmpdir(), 'gh-route-files-'));

endpointSinkConformance('files', async () => {
  const root = tempRoot();
  const dir = join(root, 'out');
  return {
    open: (over) => createFileSink(config(dir), { hubName: CASE_HUB, ...over }),
    received: async () => (await everything(dir)).map(toDelivered),
    dedupes: false,
    async down() {
      await rename(dir, `${dir}.saved`);
      await writeFile(dir, 'not a directory');
    },
    async up() {
      await rm(dir);
      await rename(`${dir}.saved`, dir);
    },
    downReason: /removed or moved away|ENOTDIR|EEXIST/,
    endpointName: 'files-out',
    secrets: [],
    close: () => rm(root, { recursive: true, force: true }),
  };
});

describe('file endpoint', () => {
  it("names chunks by Azure's tokens in UTC, rolls them after batchFrequencyInSeconds, and publishes on close", async () => {
    const root = tempRoot();
    let now = Date.UTC(2026, 11, 3, 9, 5, 30);
    const deps: SinkDeps = { hubName: CASE_HUB, now: () => now };
    const sink = createFileSink(config(root, { batchFrequencyInSeconds: 60, fileNameFormat: 'raw/{iothub}-p{partition}/{YYYY}{MM}{DD}/{HH}_{mm}' }), deps);
    try {
      await sink.deliver(routedBatch(1, 0, 2));
      assert.deepEqual(await published(root), [], 'a chunk being written is not published');
      now += 30_000;
      await sink.deliver(routedBatch(1, 2, 1));
      now += 30_000;
      await sink.deliver(routedBatch(1, 3, 2));
      assert.deepEqual(await published(root), [`raw/${CASE_HUB}-p1/20261203/09_05.ndjson`]);
      await sink.close();
      assert.deepEqual(await published(root), [`raw/${CASE_HUB}-p1/20261203/09_05.ndjson`, `raw/${CASE_HUB}-p1/20261203/09_06.ndjson`]);
      assert.deepEqual(await walk(join(root, '.partial')), [], 'nothing left half-written after close');
      const first = parseLines(await readFile(join(root, `raw/${CASE_HUB}-p1/20261203/09_05.ndjson`), 'utf8'), 'first');
      assert.deepEqual(
        first.map((e) => e.sequenceNumber),
        [0, 1, 2],
      );
    } finally {
      await sink.close();
      await rm(root, { recursive: true, force: true });
    }
  });

  it('rolls before a batch would pass maxChunkSizeInBytes; a second chunk in the same minute gets -1', async () => {
    const root = tempRoot();
    const now = Date.UTC(2026, 11, 3, 9, 5, 30);
    const sink = createFileSink(config(root, { maxChunkSizeInBytes: 10_485_760 }), { hubName: CASE_HUB, now: () => now });
    try {
      const big = routedBatch(0, 0, 12).map((m) => ({ ...m, record: { ...m.record, body: Buffer.alloc(1_048_576, 'a') } }));
      await sink.deliver(big);
      await sink.close();
      const files = await published(root);
      assert.deepEqual(files, [`${CASE_HUB}/0/2026/12/03/09/05.ndjson`, `${CASE_HUB}/0/2026/12/03/09/05-1.ndjson`]);
      const sizes = await Promise.all(files.map(async (f) => (await readFile(join(root, f))).length));
      assert.ok(sizes[0]! <= 10_485_760, `first chunk ${sizes[0]} bytes`);
      const seqs = (await everything(root)).map((e) => e.sequenceNumber);
      assert.deepEqual(seqs, Array.from({ length: 12 }, (_, i) => i));
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('cuts a torn last line left by a crash at the restart, before a reader can see it', async () => {
    const root = tempRoot();
    const crashed = createFileSink(config(root), { hubName: CASE_HUB });
    await crashed.deliver(routedBatch(0, 0, 3));
    const [partial] = await walk(join(root, '.partial'));
    // The crash: half a line written, never synced, its deliver never resolved.
    await appendFile(partial!, '{"iothub":"case-hub","partition":0,"sequenceNumber":3,"bo');
    const restarted = createFileSink(config(root), { hubName: CASE_HUB });
    try {
      await restarted.deliver(routedBatch(0, 3, 2));
      const files = await published(root);
      assert.equal(files.length, 1, 'the crashed chunk is published at the restart');
      assert.deepEqual(
        parseLines(await readFile(join(root, files[0]!), 'utf8'), files[0]!).map((e) => e.sequenceNumber),
        [0, 1, 2],
      );
      await restarted.close();
      assert.deepEqual(
        (await everything(root)).map((e) => e.sequenceNumber),
        [0, 1, 2, 3, 4],
      );
    } finally {
      await restarted.close();
      await rm(root, { recursive: true, force: true });
    }
  });

  it('publishes a crashed chunk on resume, before (and without) another batch for its partition', async () => {
    const root = tempRoot();
    const crashed = createFileSink(config(root), { hubName: CASE_HUB });
    await crashed.deliver(routedBatch(2, 0, 3));
    await crashed.deliver(routedBatch(3, 0, 1));
    const [partial] = (await walk(join(root, '.partial'))).filter((p) => p.includes(`${CASE_HUB}+2+`));
    await appendFile(partial!, '{"iothub":"case-hub","partition":2,"sequenceNumber":3,"bo');
    // The restart: the dispatcher of partition 2 takes it; no message for it comes.
    const restarted = createFileSink(config(root), { hubName: CASE_HUB });
    try {
      await restarted.resume?.(2);
      const files = await published(root);
      assert.deepEqual(files, [files.find((f) => f.startsWith(`${CASE_HUB}/2/`))], "partition 2's chunk, and only it, is published");
      assert.deepEqual(
        parseLines(await readFile(join(root, files[0]!), 'utf8'), files[0]!).map((e) => e.sequenceNumber),
        [0, 1, 2],
      );
      await restarted.close();
      assert.equal((await walk(join(root, '.partial'))).filter((p) => p.includes(`${CASE_HUB}+2+`)).length, 0);
    } finally {
      await restarted.close();
      await rm(root, { recursive: true, force: true });
    }
  });

  it('after SIGKILL while writing, the restart leaves whole lines only, holding every acknowledged message', async () => {
    const root = tempRoot();
    const child = spawn(process.execPath, [join(ROOT, 'dist/test/support/file-sink-child.js'), root], { stdio: ['ignore', 'pipe', 'inherit'] });
    let acked = -1;
    await new Promise<void>((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (code) => reject(new Error(`the writer exited by itself (${String(code)})`)));
      createInterface({ input: child.stdout! }).on('line', (line) => {
        acked = Number(/^acked (\d+)$/.exec(line)?.[1] ?? acked);
        // Past a roll or two (10 MB chunks, ~430 kB a batch), then killed mid-stream.
        if (acked >= 3000) {
          child.removeAllListeners('exit');
          child.kill('SIGKILL');
          resolve();
        }
      });
    });
    await new Promise((r) => child.once('exit', r));
    const restarted = createFileSink(config(root), { hubName: CASE_HUB });
    try {
      await restarted.deliver(routedBatch(0, 1_000_000, 1));
      await restarted.close();
      assert.deepEqual(await walk(join(root, '.partial')), []);
      const seen = new Set((await everything(root)).map((e) => e.sequenceNumber));
      const lost = Array.from({ length: acked + 1 }, (_, i) => i).filter((i) => !seen.has(i));
      assert.deepEqual(lost, [], `every acknowledged message (0-${acked}) is in a published chunk`);
      assert.ok((await published(root)).length >= 2, 'chunks rolled while writing');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('refuses bad configs with the reason', async () => {
    const refused = (over: Partial<FileEndpoint>, why: RegExp) =>
      assert.throws(
        () => createFileSink(config('/tmp/x', over), { hubName: CASE_HUB }),
        (e: unknown) => e instanceof EndpointConfigError && why.test(e.message),
      );
    refused({ fileNameFormat: '{iothub}/{partition}/{YYYY}/{MM}/{DD}' }, /fileNameFormat lacks \{HH\}, \{mm\}/);
    refused({ fileNameFormat: '{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}/{ss}' }, /unknown tokens \{ss\}/);
    refused({ fileNameFormat: '../{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}' }, /without empty, "\." or "\.\." parts/);
    refused({ fileNameFormat: '{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm} x' }, /may hold letters, digits/);
    refused({ directory: 'relative/dir' }, /directory: an absolute path/);
    refused({ batchFrequencyInSeconds: 30 }, /batchFrequencyInSeconds: /);
    refused({ maxChunkSizeInBytes: 1000 }, /maxChunkSizeInBytes: /);
    // The directory is created on the first deliver.
    const root = tempRoot();
    const sink = createFileSink(config(join(root, 'a', 'b')), { hubName: CASE_HUB });
    await sink.deliver(routedBatch(0, 0, 1));
    await sink.close();
    assert.equal((await published(join(root, 'a', 'b'))).length, 1);
    await mkdir(root, { recursive: true });
    await rm(root, { recursive: true, force: true });
  });
});
