/**
 * `npm run bench:log [-- --records N --seconds S]`: the partitioned event log (src/log) on each
 * backend: SQLite (the store's file; each append's WAL fdatasynced after its commit), PostgreSQL (127.0.0.1,
 * GATEHOUSE_TEST_DATABASE_URL) and NATS JetStream (127.0.0.1:4222, GATEHOUSE_TEST_NATS_URL; file
 * storage, one replica).
 *
 * Appends: one writer, one append in flight, batches of 1, 10 and 100 records of a 200-byte body
 * from 1,000 devices over 4 partitions, until N records or S seconds, whichever comes first; each
 * append resolves once durable (what a QoS 1 PUBACK waits for). Reads: every partition paged from
 * the earliest record, 500 records a read; then tailed from the earliest record to its end. CPU per record: this process's user+system time
 * (the log's client side), and the whole machine's busy time (adds PostgreSQL's or NATS's work,
 * and anything else the machine was doing).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { SecretBox } from '../src/core/secret-box.js';
import { openJetStreamLog } from '../src/log/jetstream/jetstream-log.js';
import type { EventLog, LogMessage, LogRecord } from '../src/log/log-ports.js';
import { openSqlEventLog } from '../src/log/sql/sql-log.js';
import { openPostgresStore } from '../src/store/postgres/open-postgres-store.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { arg, machineBusySeconds, writeBenchmarkSection } from './support.js';

const RECORDS = arg('records', 20_000);
const SECONDS = arg('seconds', 8);
const BATCHES = [1, 10, 100];
const PARTITIONS = 4;
const DATABASE_URL = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const NATS = new URL(process.env.GATEHOUSE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222');
const RETENTION = { maxAgeMs: 24 * 3600_000, maxBytesPerPartition: 4 * 1024 ** 3 };

interface Opened {
  log: EventLog;
  close(): Promise<void>;
}

interface Backend {
  name: string;
  open(): Promise<Opened>;
}

const sqlite: Backend = {
  name: 'SQLite (WAL fdatasynced per append)',
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'gh-bench-log-'));
    const store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(randomBytes(32)));
    const log = await openSqlEventLog(store.sqlDriver, { partitionCount: PARTITIONS, retention: RETENTION });
    return {
      log,
      async close() {
        await log.close();
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

const postgres: Backend = {
  name: 'PostgreSQL (synchronous_commit=on)',
  async open() {
    const schema = `gh_bench_log_${randomBytes(4).toString('hex')}`;
    const url = new URL(DATABASE_URL);
    url.searchParams.set('schema', schema);
    const store = await openPostgresStore(url.toString(), new SecretBox(randomBytes(32)));
    const log = await openSqlEventLog(store.sqlDriver, { partitionCount: PARTITIONS, retention: RETENTION });
    return {
      log,
      async close() {
        await log.close();
        await store.close();
        const admin = new pg.Client({ connectionString: DATABASE_URL });
        await admin.connect();
        await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        await admin.end();
      },
    };
  },
};

const jetstream: Backend = {
  name: 'NATS JetStream (file, R1)',
  async open() {
    const nc: NatsConnection = await connect({ servers: `${NATS.hostname}:${NATS.port || 4222}` });
    const hubId = `bench${randomUUID().replace(/-/g, '').slice(0, 12)}`;
    const log = await openJetStreamLog(nc, { hubId, prefix: hubId, partitionCount: PARTITIONS, retention: RETENTION });
    return {
      log,
      async close() {
        await log.destroy();
        await nc.close();
      },
    };
  },
};

const body = randomBytes(200);
function message(i: number): LogMessage {
  const deviceId = `bench-device-${i % 1000}`;
  return {
    deviceId,
    moduleId: null,
    body,
    properties: { seq: String(i) },
    systemProperties: { 'message-id': `m-${i}`, 'iothub-connection-device-id': deviceId, 'content-type': 'application/octet-stream' },
  };
}

interface Measure {
  records: number;
  perSecond: number;
  cpuUsPerRecord: number;
  machineUsPerRecord: number;
}

async function measure(run: () => Promise<number>): Promise<Measure> {
  const cpu0 = process.cpuUsage();
  const m0 = machineBusySeconds();
  const t0 = performance.now();
  const records = await run();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const machine = machineBusySeconds() - m0;
  return {
    records,
    perSecond: records / seconds,
    cpuUsPerRecord: (cpu.user + cpu.system) / records,
    machineUsPerRecord: (machine * 1e6) / records,
  };
}

async function appendRun(log: EventLog, batch: number): Promise<Measure> {
  return measure(async () => {
    const until = performance.now() + SECONDS * 1000;
    let i = 0;
    while (i < RECORDS && performance.now() < until) {
      await log.append(Array.from({ length: batch }, (_, k) => message(i + k)));
      i += batch;
    }
    return i;
  });
}

async function readRun(log: EventLog): Promise<Measure> {
  return measure(async () => {
    let n = 0;
    for (let p = 0; p < log.partitionCount; p++) {
      let next = 0;
      for (;;) {
        const page = await log.read(p, { sequenceNumber: next, inclusive: true }, 500);
        if (page.length === 0) break;
        n += page.length;
        next = (page.at(-1) as LogRecord).sequenceNumber + 1;
      }
    }
    return n;
  });
}

async function tailRun(log: EventLog): Promise<Measure> {
  const ends = await Promise.all(Array.from({ length: log.partitionCount }, (_, p) => log.partitionProperties(p)));
  return measure(async () => {
    let n = 0;
    for (let p = 0; p < log.partitionCount; p++) {
      const last = (ends[p] as { lastEnqueuedSequenceNumber: number }).lastEnqueuedSequenceNumber;
      if (last < 0) continue;
      const ac = new AbortController();
      for await (const batch of log.tail(p, 'earliest', { signal: ac.signal, maxBatch: 500 })) {
        n += batch.length;
        if ((batch.at(-1) as LogRecord).sequenceNumber >= last) ac.abort();
      }
    }
    return n;
  });
}

interface Row {
  backend: string;
  what: string;
  m: Measure;
}

const rows: Row[] = [];
const loadBefore = loadavg()[0] ?? 0;
for (const backend of [sqlite, postgres, jetstream]) {
  let opened: Opened;
  try {
    opened = await backend.open();
  } catch (err) {
    console.error(`${backend.name}: skipped (${(err as Error).message})`);
    continue;
  }
  try {
    for (const batch of BATCHES) {
      const m = await appendRun(opened.log, batch);
      rows.push({ backend: backend.name, what: `append, batches of ${batch}`, m });
      console.error(`${backend.name} append x${batch}: ${Math.round(m.perSecond)}/s`);
    }
    const r = await readRun(opened.log);
    rows.push({ backend: backend.name, what: 'read, pages of 500', m: r });
    console.error(`${backend.name} read: ${Math.round(r.perSecond)}/s`);
    const t = await tailRun(opened.log);
    rows.push({ backend: backend.name, what: 'tail from the earliest, batches of up to 500', m: t });
    console.error(`${backend.name} tail: ${Math.round(t.perSecond)}/s`);
  } finally {
    await opened.close();
  }
}

const loadAfter = loadavg()[0] ?? 0;
const fmt = (v: number) => Math.round(v).toLocaleString('en-US');
const table = [
  '| log | operation | records | records/s | CPU µs/record (this process) | machine CPU µs/record |',
  '|---|---|---:|---:|---:|---:|',
  ...rows.map((r) => `| ${r.backend} | ${r.what} | ${fmt(r.m.records)} | ${fmt(r.m.perSecond)} | ${r.m.cpuUsPerRecord.toFixed(1)} | ${r.m.machineUsPerRecord.toFixed(1)} |`),
].join('\n');
console.log(table);
if (process.argv.includes('--write')) {
  writeBenchmarkSection(
    '## Partitioned log (bench/log)',
    `## Partitioned log (bench/log)

\`npm run bench:log\` (up to ${RECORDS.toLocaleString('en-US')} records or ${SECONDS} s per row), on ${cpus().length} cores **shared with other work at the time** (1-minute load average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after): preliminary numbers, to compare backends and batch sizes, not a capacity figure. One writer with one append in flight; each append resolves once durable (SQLite: the WAL fdatasynced after the commit, PostgreSQL synchronous_commit=on, JetStream's acknowledgement: stored, fsync on the server's interval). Records are a 200-byte body plus properties, from 1,000 devices over ${PARTITIONS} partitions. Reads page every partition from the earliest record, 500 a read; tails follow each partition from the earliest record to its end (SQL: the read loop; JetStream: an ordered consumer). "This process" is the log's client side; "machine" adds the database or NATS server and anything else running.

${table}
`,
  );
}
