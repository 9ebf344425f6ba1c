/**
 * bench/audit: audit entries appended per second, in process.
 *
 * (a) AuditLog: auth events emitted on a SecurityEvents stream in bursts of 1,000 per event-loop
 *     turn (each burst like one busy turn of the MQTT edge; held back while 5,000 are queued, so
 *     the writer is measured, not the overflow policy), written by the service as it runs in
 *     the hub: batches of up to 500, HMAC chain in memory, one transaction plus the sealed
 *     checkpoint per batch. Measured from the first emit until the last entry is committed.
 * (b) The ceiling: the same number of rows, already chained, appended with store.audit.append in
 *     batches of 500 (no service, no hashing, no checkpoint).
 * (c) verify: rows checked per second by the chain walk.
 *
 * SQLite always; PostgreSQL too when GATEHOUSE_TEST_DATABASE_URL (or the default local test
 * database) answers.
 *
 *   node dist/bench/audit.js [--count 100000] [--write]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { SecretBox } from '../src/core/secret-box.js';
import { createLogger } from '../src/log.js';
import { chainRows, verifyAuditChain } from '../src/audit/audit-chain.js';
import { AuditLog, type AuditLogStore } from '../src/audit/audit-log.js';
import { SecurityEvents, type AuthEvent } from '../src/core/security-events.js';
import type { Store } from '../src/store/ports.js';
import { openPostgresStore } from '../src/store/postgres/open-postgres-store.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { arg, writeBenchmarkSection } from './support.js';

const SECTION_TITLE = '## Audit log: entries appended per second (bench/audit)';
const BURST = 1000;
const MAX_QUEUED = 5000;
const DATABASE_URL = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Backend {
  name: string;
  open(): Promise<{ store: Store; close(): Promise<void> }>;
}

const sqlite: Backend = {
  name: 'SQLite (WAL, synchronous=NORMAL)',
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'gh-bench-audit-'));
    const store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(randomBytes(32)));
    return {
      store,
      async close() {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

const postgres: Backend = {
  name: 'PostgreSQL (local, same machine)',
  async open() {
    const schema = `gh_bench_${randomBytes(6).toString('hex')}`;
    const url = new URL(DATABASE_URL);
    url.searchParams.set('schema', schema);
    const store = await openPostgresStore(url.toString(), new SecretBox(randomBytes(32)));
    return {
      store,
      async close() {
        await store.close();
        const admin = new pg.Client({ connectionString: DATABASE_URL });
        await admin.connect();
        await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
        await admin.end();
      },
    };
  },
};

function event(i: number): AuthEvent {
  return {
    type: 'auth',
    at: Date.now(),
    subject: 'device',
    identity: `device-${i % 5000}`,
    outcome: i % 10 === 0 ? 'failure' : 'success',
    ...(i % 10 === 0 ? { reason: 'SAS signature mismatch', reasonCode: 'bad_credentials' as const } : {}),
    remote: `10.0.${(i >> 8) & 255}.${i & 255}`,
    protocol: 'mqtt',
    method: 'sas',
    tls: 'TLSv1.3',
  };
}

interface Result {
  backend: string;
  service: number;
  ceiling: number;
  verify: number;
  transactions: number;
  ok: boolean;
}

async function measure(backend: Backend, count: number): Promise<Result> {
  const { store, close } = await backend.open();
  try {
    // (a) the service
    let transactions = 0;
    const audit = store.audit;
    const counted: AuditLogStore = {
      audit: { ...bindAudit(audit), append: (rows) => (transactions++, audit.append(rows)) },
      getMeta: (k) => store.getMeta(k),
      setMeta: (k, v) => store.setMeta(k, v),
      getSecretMeta: (k) => store.getSecretMeta(k),
      setSecretMeta: (k, v) => store.setSecretMeta(k, v),
      insertMetaIfAbsent: (k, v) => store.insertMetaIfAbsent(k, v),
      insertSecretMetaIfAbsent: (k, v) => store.insertSecretMetaIfAbsent(k, v),
      compareAndSetMeta: (k, e, v) => store.compareAndSetMeta(k, e, v),
    };
    const events = new SecurityEvents();
    const log = new AuditLog(counted, events, { now: () => Date.now() }, createLogger('warn'), { retentionDays: 0 });
    await log.start();
    const t0 = performance.now();
    for (let i = 0; i < count; ) {
      // Held back while MAX_QUEUED wait: this measures the writer, not the queue's overflow policy.
      if (log.pending < MAX_QUEUED) {
        for (const end = Math.min(count, i + BURST); i < end; i++) events.emit(event(i));
        await new Promise<void>((r) => setImmediate(r));
      } else {
        await sleep(1); // not a busy spin: the database shares the cores
      }
    }
    while (log.pending > 0) await sleep(1);
    await log.flush();
    const service = count / ((performance.now() - t0) / 1000);
    await log.stop();

    // (c) verify what (a) wrote
    const t1 = performance.now();
    const v = await verifyAuditChain(store.audit, store);
    const verify = v.checked / ((performance.now() - t1) / 1000);

    // (b) the ceiling: pre-chained rows, bare appends of 500
    const head = await store.audit.head();
    const rows = chainRows(randomBytes(32), head, Array.from({ length: count }, (_, i) => {
      const e = event(i);
      return { at: e.at, type: 'auth' as const, subject: e.subject, identity: e.identity, outcome: e.outcome, reason: e.reason ?? null, reasonCode: e.reasonCode ?? null, remote: e.remote, protocol: e.protocol, method: e.method ?? null, tls: e.tls ?? null, actor: null, action: null, target: null, beforeJson: null, afterJson: null };
    }));
    const t2 = performance.now();
    for (let i = 0; i < rows.length; i += 500) await store.audit.append(rows.slice(i, i + 500));
    const ceiling = count / ((performance.now() - t2) / 1000);
    return { backend: backend.name, service, ceiling, verify, transactions, ok: v.ok && v.checked === count };
  } finally {
    await close();
  }
}

function bindAudit(a: Store['audit']): Store['audit'] {
  return {
    append: (rows) => a.append(rows),
    head: () => a.head(),
    page: (after, limit) => a.page(after, limit),
    query: (q) => a.query(q),
    retentionBoundary: (c) => a.retentionBoundary(c),
    deleteBefore: (s) => a.deleteBefore(s),
  };
}

async function main(): Promise<void> {
  const count = arg('count', 100_000);
  const load = loadavg()[0] ?? 0;
  const results: Result[] = [await measure(sqlite, count)];
  try {
    const probe = new pg.Client({ connectionString: DATABASE_URL });
    await probe.connect();
    await probe.end();
    results.push(await measure(postgres, count));
  } catch (err) {
    process.stderr.write(`PostgreSQL skipped: ${(err as Error).message}\n`);
  }
  const cpu = cpus()[0]?.model.replace(/\s+/g, ' ').trim() ?? 'unknown CPU';
  const table = [
    '| Store | Entries | AuditLog entries/s (chained, batched, checkpointed) | Transactions | Bare append of pre-chained rows, 500 per transaction (ceiling) | Ratio | verify rows/s | Chain intact |',
    '|---|---:|---:|---:|---:|---:|---:|---|',
    ...results.map(
      (r) => `| ${r.backend} | ${count} | ${Math.round(r.service)} | ${r.transactions} | ${Math.round(r.ceiling)} | ${(r.service / r.ceiling).toFixed(2)} | ${Math.round(r.verify)} | ${r.ok ? 'yes' : 'NO'} |`,
    ),
  ].join('\n');
  const section = `${SECTION_TITLE}

Measured ${new Date().toISOString().slice(0, 10)} on ${cpus().length} × ${cpu}, Node ${process.version}, with \`npm run bench:audit\`
(1-minute load average at the start: ${load.toFixed(2)}; the machine is shared, so other processes compete for the cores).
Auth events are emitted in bursts of ${BURST} per event-loop turn on a SecurityEvents stream (held back while ${MAX_QUEUED} are
queued, so the writer is measured rather than the queue's overflow policy); the AuditLog (as in the hub)
queues them, chains them with HMAC-SHA256 in memory and writes batches of up to 500 in one transaction each, then
re-seals the checkpoint. The time runs from the first emit until the last entry is committed. The ceiling appends the
same number of already-chained rows with \`store.audit.append\`, 500 per call. verify walks every row the AuditLog wrote.

${table}
`;
  process.stdout.write(`${table}\n`);
  if (process.argv.includes('--write')) writeBenchmarkSection(SECTION_TITLE, section);
}

await main();
