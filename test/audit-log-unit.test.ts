/**
 * The audit log service on a real SQLite store: what it records and in which order, that the
 * chain holds, and that what someone with write access to the database file (but not the master
 * key) does to it shows in verify: an edited field, a deleted row, a cut tail, a chain re-forged
 * under a guessed key. Also retention, the enabled switch, redaction, write failures and a second
 * writer.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { SecretBox } from '../src/core/secret-box.js';
import { createLogger } from '../src/log.js';
import { AuditLog, type AuditLogOptions, type AuditLogStore } from '../src/audit/audit-log.js';
import { GENESIS, canonicalRow, chainHash, loadChainKey, verifyAuditChain } from '../src/audit/audit-chain.js';
import { SecurityEvents, redactSecrets, type AuthEvent, type ChangeEvent } from '../src/core/security-events.js';
import type { AuditRow, AuditStore } from '../src/store/audit-ports.js';
import type { Store } from '../src/store/ports.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { openPostgresStore } from '../src/store/postgres/open-postgres-store.js';
import { removeDir, tempDir } from './support/hub-process.js';

const DAY = 86_400_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const dirs: string[] = [];
after(() => dirs.forEach(removeDir));

interface Rig {
  file: string;
  store: Store;
  events: SecurityEvents;
  clock: { t: number; now(): number };
  log: AuditLog;
  logLines: string[];
  /** A second connection straight to the file, as someone with access to the disk has. */
  raw(): Database.Database;
  rows(): Promise<AuditRow[]>;
  close(): Promise<void>;
}

async function rig(opts: AuditLogOptions = {}, wrap?: (s: AuditLogStore) => AuditLogStore): Promise<Rig> {
  const dir = tempDir('audit');
  dirs.push(dir);
  const file = join(dir, 'gatehouse.db');
  const store = await openSqliteStore(file, new SecretBox(randomBytes(32)));
  const events = new SecurityEvents();
  const clock = { t: Date.parse('2030-06-01T00:00:00Z'), now() { return this.t; } };
  const logLines: string[] = [];
  const logger = createLogger('info', { write: (s: string) => void logLines.push(s) });
  const log = new AuditLog(wrap === undefined ? store : wrap(store), events, clock, logger, opts);
  await log.start();
  let db: Database.Database | undefined;
  return {
    file,
    store,
    events,
    clock,
    log,
    logLines,
    raw: () => (db ??= new Database(file)),
    rows: () => store.audit.page(0, 100_000),
    async close() {
      await log.stop();
      db?.close();
      await store.close();
    },
  };
}

function auth(at: number, identity: string, outcome: 'success' | 'failure' = 'failure', over: Partial<AuthEvent> = {}): AuthEvent {
  return {
    type: 'auth',
    at,
    subject: 'device',
    identity,
    outcome,
    ...(outcome === 'failure' ? { reason: 'SAS signature mismatch', reasonCode: 'bad_credentials' as const } : {}),
    remote: '10.1.2.3',
    protocol: 'mqtt',
    method: 'sas',
    tls: 'TLSv1.3',
    credential: 'ab'.repeat(16),
    ...over,
  };
}

function change(at: number, action: string, over: Partial<ChangeEvent> = {}): ChangeEvent {
  return { type: 'change', at, actor: 'policy:iothubowner', action, target: 'devices/d1', ...over };
}

/** Emits n auth failures d0..d(n-1) and flushes. */
async function emitAuth(r: Rig, n: number, prefix = 'd'): Promise<void> {
  for (let i = 0; i < n; i++) r.events.emit(auth(r.clock.now(), `${prefix}${i}`));
  await r.log.flush();
}

describe('AuditLog', () => {
  it('records auth and change events in emission order, chained with the sealed key from seq 1', async () => {
    const r = await rig();
    try {
      const t = r.clock.now();
      r.events.emit(auth(t, 'd1'));
      r.events.emit(change(t + 1, 'device.update', { before: { status: 'enabled' }, after: { status: 'disabled', statusReason: 'stolen' }, remote: '10.9.9.9' }));
      r.events.emit({ type: 'session', at: t + 2, state: 'connected', deviceId: 'd1', moduleId: null, protocol: 'mqtt', remote: '10.1.2.3' });
      r.events.emit({ type: 'c2d', at: t + 3, outcome: 'expired', deviceId: 'd1', count: 1 });
      r.events.emit(auth(t + 4, 'svc', 'success', { subject: 'policy', protocol: 'https', method: 'policy-sas' }));
      await r.log.flush();
      const rows = await r.rows();
      assert.deepEqual(rows.map((x) => [x.seq, x.type, x.identity ?? x.action]), [
        [1, 'auth', 'd1'],
        [2, 'change', 'device.update'],
        [3, 'auth', 'svc'],
      ]);
      const [a, c] = rows;
      assert.deepEqual(
        { at: a?.at, subject: a?.subject, outcome: a?.outcome, reason: a?.reason, reasonCode: a?.reasonCode, remote: a?.remote, protocol: a?.protocol, method: a?.method, tls: a?.tls },
        { at: t, subject: 'device', outcome: 'failure', reason: 'SAS signature mismatch', reasonCode: 'bad_credentials', remote: '10.1.2.3', protocol: 'mqtt', method: 'sas', tls: 'TLSv1.3' },
      );
      assert.equal(c?.beforeJson, '{"status":"enabled"}');
      assert.equal(c?.afterJson, '{"status":"disabled","statusReason":"stolen"}');
      assert.equal(c?.remote, '10.9.9.9');
      // The chain, recomputed independently: HMAC-SHA256(key, prevHash || canonical row).
      const key = await loadChainKey(r.store, false);
      assert.ok(key !== undefined && key.length === 32);
      let prev = GENESIS;
      for (const row of rows) {
        assert.equal(row.prevHash, prev);
        assert.equal(row.hash, createHmac('sha256', key).update(prev).update(canonicalRow(row)).digest('hex'));
        prev = row.hash;
      }
      const v = await r.log.verify();
      assert.deepEqual(v, {
        ok: true,
        checked: 3,
        firstSeq: 1,
        lastSeq: 3,
        lastHash: rows[2]?.hash,
        start: { from: 'genesis', seq: 1, prevHash: GENESIS },
        checkpointSeq: 3,
        problems: [],
      });
      // The key itself is sealed, never in the file in clear.
      const content = [r.file, `${r.file}-wal`].filter(existsSync).map((f) => readFileSync(f).toString('latin1')).join('');
      assert.ok(!content.includes(key.toString('base64')));
    } finally {
      await r.close();
    }
  });

  it('batches: nothing waits longer than the flush interval; 1,200 at once go in 3 transactions', async () => {
    let appends = 0;
    const r = await rig({ flushMs: 50 }, (s) => ({
      ...bind(s),
      audit: { ...bindAudit(s.audit), append: (rows) => (appends++, s.audit.append(rows)) },
    }));
    try {
      r.events.emit(auth(r.clock.now(), 'lonely'));
      await sleep(250);
      assert.equal((await r.rows()).length, 1, 'written without an explicit flush');
      assert.equal(appends, 1);
      for (let i = 0; i < 1200; i++) r.events.emit(auth(r.clock.now(), `b${i}`));
      for (let i = 0; i < 100 && r.log.pending > 0; i++) await sleep(20);
      await r.log.flush();
      assert.equal(appends, 4);
      const rows = await r.rows();
      assert.deepEqual(rows.map((x) => x.identity), ['lonely', ...Array.from({ length: 1200 }, (_, i) => `b${i}`)]);
      assert.equal((await r.log.verify()).ok, true);

      // A busy edge: 600 entries every event-loop turn. The writer keeps up instead of being
      // postponed by each new arrival.
      const backlog: number[] = [];
      for (let turn = 0; turn < 30; turn++) {
        for (let i = 0; i < 600; i++) r.events.emit(auth(r.clock.now(), `busy${turn}-${i}`));
        backlog.push(r.log.pending);
        await new Promise<void>((res) => setImmediate(res));
      }
      // Bounded and draining (how far it swings depends on the machine), not growing with every turn.
      assert.ok(Math.max(...backlog) < (30 * 600) / 2, `backlog grew: ${backlog.join(' ')}`);
      assert.ok(backlog.some((b, i) => i > 0 && b < (backlog[i - 1] ?? 0)), `backlog never shrank: ${backlog.join(' ')}`);
      await r.log.flush();
      assert.equal((await r.rows()).length, 1201 + 30 * 600);
    } finally {
      await r.close();
    }
  });

  it('writing a backlog and verifying a long log let the event loop turn (the hub keeps serving)', async () => {
    const r = await rig();
    try {
      /** How many times a setImmediate chain ran while `work` did. */
      const turnsDuring = async (work: () => Promise<unknown>) => {
        let turns = 0;
        let done = false;
        const tick = () => {
          turns++;
          if (!done) setImmediate(tick);
        };
        setImmediate(tick);
        await work();
        done = true;
        return turns;
      };
      for (let i = 0; i < 20_000; i++) r.events.emit(auth(r.clock.now(), `bulk${i}`));
      const writing = await turnsDuring(() => r.log.flush());
      assert.equal(r.log.pending, 0);
      assert.ok(writing >= 3, `the event loop turned ${writing} times during a 20,000-entry write`);
      const verifying = await turnsDuring(() => verifyAuditChain(r.store.audit, r.store));
      assert.ok(verifying >= 19, `the event loop turned ${verifying} times during a 20-page verify`);
    } finally {
      await r.close();
    }
  });

  it("an edited field is reported as 'edited' at its seq, and only there", async () => {
    const r = await rig();
    try {
      await emitAuth(r, 10);
      r.raw().prepare('UPDATE audit_log SET reason = ? WHERE seq = 4').run('nothing to see here');
      const v = await r.log.verify();
      assert.equal(v.ok, false);
      assert.equal(v.checked, 10);
      assert.deepEqual(v.problems.map((p) => [p.seq, p.kind]), [[4, 'edited']]);
    } finally {
      await r.close();
    }
  });

  it('a chain re-forged from an edited row on with a guessed key still fails at that row', async () => {
    const r = await rig();
    try {
      await emitAuth(r, 8);
      const db = r.raw();
      const rows = db.prepare('SELECT * FROM audit_log ORDER BY seq').all() as Array<Record<string, string | number | null>>;
      const guess = randomBytes(32);
      let prev = String(rows[4]?.prev_hash);
      for (const row of rows.slice(4)) {
        const fields = {
          seq: Number(row.seq), at: Number(row.at), type: 'auth' as const, subject: row.subject as string, identity: row.seq === 5 ? 'someone-else' : (row.identity as string),
          outcome: 'success' as const, reason: null, reasonCode: null, remote: row.remote as string, protocol: row.protocol as string, method: row.method as string, tls: row.tls as string,
          actor: null, action: null, target: null, beforeJson: null, afterJson: null,
        };
        const hash = chainHash(guess, prev, fields);
        db.prepare('UPDATE audit_log SET identity = ?, outcome = ?, reason = NULL, reason_code = NULL, prev_hash = ?, hash = ? WHERE seq = ?').run(fields.identity, 'success', prev, hash, fields.seq);
        prev = hash;
      }
      const v = await r.log.verify();
      assert.equal(v.ok, false);
      assert.deepEqual(v.problems[0], { seq: 5, kind: 'edited', detail: 'its hash does not match its contents: changed after it was written' });
      // ... and its new hash no longer matches the sealed checkpoint either.
      assert.ok(v.problems.some((p) => p.seq === 8 && /checkpoint/.test(p.detail)), JSON.stringify(v.problems));
    } finally {
      await r.close();
    }
  });

  it("a deleted middle row is 'missing'; the row after it is not blamed", async () => {
    const r = await rig();
    try {
      await emitAuth(r, 10);
      r.raw().prepare('DELETE FROM audit_log WHERE seq = 6').run();
      const v = await r.log.verify();
      assert.equal(v.ok, false);
      assert.deepEqual(v.problems.map((p) => [p.seq, p.kind, p.detail]), [[6, 'missing', 'row 6 is gone']]);
      assert.equal(v.checked, 9);
    } finally {
      await r.close();
    }
  });

  it("deleting the last rows is 'truncated'; a restarted log continues after the checkpoint, so the gap stays", async () => {
    const r = await rig();
    try {
      await emitAuth(r, 10);
      r.raw().prepare('DELETE FROM audit_log WHERE seq > 7').run();
      const v = await r.log.verify();
      assert.equal(v.ok, false);
      assert.equal(v.lastSeq, 7);
      assert.deepEqual(v.problems.map((p) => [p.seq, p.kind]), [[8, 'truncated']]);
      assert.match(v.problems[0]?.detail ?? '', /8\.\.10 are gone/);

      // A fresh AuditLog on the same store (a hub restart) does not paper over the cut.
      await r.log.stop();
      const again = new AuditLog(r.store, r.events, r.clock, createLogger('silent'));
      await again.start();
      r.events.emit(auth(r.clock.now(), 'after-restart'));
      await again.flush();
      // Seq 11: the restarted log says in the chain itself what it found; 12: the new entry.
      const after = await r.store.audit.page(10, 10);
      assert.deepEqual(after.map((x) => [x.seq, x.action ?? x.identity]), [[11, 'audit.tail-missing'], [12, 'after-restart']]);
      assert.deepEqual(JSON.parse(after[0]?.afterJson ?? 'null'), { lastStoredSeq: 7, checkpointSeq: 10 });
      const v2 = await again.verify();
      assert.deepEqual(v2.problems.map((p) => [p.seq, p.kind]), [[8, 'missing']]);
      await again.stop();
    } finally {
      await r.close();
    }
  });

  it('a deleted checkpoint: verify says a cut cannot be ruled out; a restarted log records that it found none', async () => {
    const r = await rig();
    try {
      await emitAuth(r, 5);
      const db = r.raw();
      db.prepare('DELETE FROM audit_log WHERE seq = 5').run();
      db.prepare("DELETE FROM meta WHERE key = 'secret:audit.checkpoint'").run();
      const v = await verifyAuditChain(r.store.audit, r.store);
      assert.deepEqual(v.problems.map((p) => [p.seq, p.kind, p.detail]), [[5, 'truncated', 'the checkpoint is missing, so a cut tail cannot be ruled out']]);

      await r.log.stop();
      const again = new AuditLog(r.store, r.events, r.clock, createLogger('silent'));
      await again.start();
      r.events.emit(auth(r.clock.now(), 'after-restart'));
      await again.flush();
      // The chain now carries the evidence the checkpoint no longer can.
      assert.deepEqual((await r.store.audit.page(4, 10)).map((x) => x.action ?? x.identity), ['audit.checkpoint-missing', 'after-restart']);
      await again.stop();
    } finally {
      await r.close();
    }
  });

  it("a row appended by hand past the checkpoint is 'inserted'; deleting the first rows is 'missing'", async () => {
    const r = await rig();
    try {
      await emitAuth(r, 5);
      const db = r.raw();
      const head = db.prepare('SELECT hash FROM audit_log WHERE seq = 5').get() as { hash: string };
      db.prepare(
        "INSERT INTO audit_log (seq, at, type, subject, identity, outcome, remote, protocol, prev_hash, hash) VALUES (6, ?, 'auth', 'device', 'd0', 'success', '10.1.2.3', 'mqtt', ?, ?)",
      ).run(r.clock.now(), head.hash, randomBytes(32).toString('hex'));
      db.prepare('DELETE FROM audit_log WHERE seq <= 2').run();
      const v = await verifyAuditChain(r.store.audit, r.store);
      assert.deepEqual(v.problems.map((p) => [p.seq, p.kind]), [[1, 'missing'], [6, 'inserted']]);
    } finally {
      await r.close();
    }
  });

  it('retention prunes a prefix, anchors verify there and says so; cutting below the anchor shows', async () => {
    const r = await rig({ retentionDays: 30 });
    try {
      const now = r.clock.now();
      for (let i = 0; i < 6; i++) r.events.emit(auth(now - 40 * DAY + i, `old${i}`));
      for (let i = 0; i < 4; i++) r.events.emit(auth(now - 10 * DAY + i, `new${i}`));
      await r.log.flush();
      assert.equal(await r.log.prune(), 6);
      await r.log.flush();
      const rows = await r.rows();
      assert.deepEqual(rows.map((x) => x.identity ?? x.action), ['new0', 'new1', 'new2', 'new3', 'audit.prune']);
      assert.deepEqual(JSON.parse(rows[4]?.afterJson ?? 'null'), { deleted: 6, firstSeq: 7, retentionDays: 30 });
      const v = await r.log.verify();
      assert.equal(v.ok, true, JSON.stringify(v.problems));
      assert.deepEqual(v.start, { from: 'retention', seq: 7, prevHash: rows[0]?.prevHash });
      assert.equal(v.checked, 5);
      assert.equal(await r.log.prune(), 0, 'nothing more to prune');

      r.raw().prepare('DELETE FROM audit_log WHERE seq = 7').run();
      const cut = await r.log.verify();
      assert.deepEqual(cut.problems.map((p) => [p.seq, p.kind, p.detail]), [[7, 'missing', 'row 7 is gone: retention only removed rows before seq 7']]);
    } finally {
      await r.close();
    }
  });

  it('retention 0 keeps everything; retention never deletes the newest row', async () => {
    const forever = await rig({ retentionDays: 0 });
    try {
      forever.events.emit(auth(forever.clock.now() - 5000 * DAY, 'ancient'));
      await forever.log.flush();
      assert.equal(await forever.log.prune(), 0);
      assert.equal((await forever.rows()).length, 1);
    } finally {
      await forever.close();
    }
    const r = await rig({ retentionDays: 1 });
    try {
      for (let i = 0; i < 3; i++) r.events.emit(auth(r.clock.now() - 10 * DAY, `x${i}`));
      await r.log.flush();
      assert.equal(await r.log.prune(), 2);
      await r.log.flush();
      assert.deepEqual((await r.rows()).map((x) => x.seq), [3, 4]);
      assert.equal((await r.log.verify()).ok, true);
    } finally {
      await r.close();
    }
  });

  it('disabled: no auth decisions recorded, changes still are; enabled again: recorded', async () => {
    const r = await rig();
    try {
      r.log.setEnabled(false);
      assert.equal(r.log.enabled, false);
      r.events.emit(auth(r.clock.now(), 'ignored'));
      r.events.emit(change(r.clock.now(), 'settings.update', { target: 'settings', after: { auditAuthEvents: false } }));
      r.log.setEnabled(true);
      r.events.emit(auth(r.clock.now(), 'seen'));
      await r.log.flush();
      assert.deepEqual((await r.rows()).map((x) => [x.type, x.identity ?? x.action]), [
        ['change', 'settings.update'],
        ['auth', 'seen'],
      ]);
    } finally {
      await r.close();
    }
  });

  it('secrets in a change payload are redacted, whether or not the producer did it', async () => {
    const r = await rig();
    try {
      const key = randomBytes(32).toString('base64');
      const other = randomBytes(32).toString('base64');
      const device = { deviceId: 'd1', authentication: { type: 'sas', symmetricKey: { primaryKey: key, secondaryKey: other } }, status: 'enabled' };
      r.events.emit(change(r.clock.now(), 'device.create', { after: redactSecrets(device) }));
      // A producer that forgot: the audit log redacts again.
      r.events.emit(change(r.clock.now(), 'policy.renew-key', { target: 'policies/service', before: { primaryKey: key }, after: { primaryKey: other, nested: [{ password: 'hunter2hunter2' }] } }));
      await r.log.flush();
      const rows = await r.rows();
      assert.deepEqual(JSON.parse(rows[0]?.afterJson ?? 'null'), {
        deviceId: 'd1',
        authentication: { type: 'sas', symmetricKey: '<redacted>' },
        status: 'enabled',
      });
      assert.equal(rows[1]?.afterJson, '{"nested":[{"password":"<redacted>"}],"primaryKey":"<redacted>"}');
      const page = await r.log.query({ type: 'change' });
      assert.deepEqual(page.entries[0]?.before, { primaryKey: '<redacted>' });
      const content = [r.file, `${r.file}-wal`].filter(existsSync).map((f) => readFileSync(f).toString('latin1')).join('');
      for (const secret of [key, other, 'hunter2hunter2']) assert.ok(!content.includes(secret), 'a secret reached the database');
      assert.ok(!r.logLines.join('').includes(key));
    } finally {
      await r.close();
    }
  });

  it('a failing store: nothing crashes, entries are kept in order and written when it recovers', async () => {
    let failing = true;
    const r = await rig({ flushMs: 10 }, (s) => ({
      ...bind(s),
      audit: { ...bindAudit(s.audit), append: async (rows) => (failing ? Promise.reject(new Error('disk full')) : s.audit.append(rows)) },
    }));
    try {
      await emitAuth(r, 3, 'early');
      await emitAuth(r, 2, 'late');
      assert.equal(r.log.pending, 5);
      assert.equal((await r.rows()).length, 0);
      assert.ok(r.logLines.some((l) => l.includes('"event":"audit.append-failed"') && l.includes('disk full')));
      failing = false;
      for (let i = 0; i < 200 && r.log.pending > 0; i++) await sleep(20); // the retry timer, not an explicit flush
      assert.equal(r.log.pending, 0);
      assert.deepEqual((await r.rows()).map((x) => [x.seq, x.identity]), [[1, 'early0'], [2, 'early1'], [3, 'early2'], [4, 'late0'], [5, 'late1']]);
      assert.equal((await r.log.verify()).ok, true);
    } finally {
      await r.close();
    }
  });

  it('a second writer on the same store: each re-reads the head on conflict, one chain results', async () => {
    const r = await rig();
    try {
      const other = new SecurityEvents();
      const second = new AuditLog(r.store, other, r.clock, createLogger('silent'));
      await second.start();
      await emitAuth(r, 3, 'a');
      for (let i = 0; i < 3; i++) other.emit(auth(r.clock.now(), `b${i}`));
      await second.flush();
      await emitAuth(r, 2, 'c');
      await second.stop();
      assert.deepEqual((await r.rows()).map((x) => x.identity), ['a0', 'a1', 'a2', 'b0', 'b1', 'b2', 'c0', 'c1']);
      assert.equal((await r.log.verify()).ok, true);
    } finally {
      await r.close();
    }
  });

  it('query: filters, newest first, next cursor, bounded limit', async () => {
    const r = await rig();
    try {
      const t = r.clock.now();
      for (let i = 0; i < 5; i++) r.events.emit(auth(t + i * 1000, `q${i % 2}`, i % 2 === 0 ? 'failure' : 'success'));
      r.events.emit(change(t + 9000, 'device.delete', { actor: 'cli:root' }));
      const p1 = await r.log.query({ limit: 2 });
      assert.deepEqual(p1.entries.map((e) => e.seq), [6, 5]);
      assert.equal(p1.next, 5);
      const p2 = await r.log.query({ limit: 2, before: 5 });
      assert.deepEqual(p2.entries.map((e) => e.seq), [4, 3]);
      const last = await r.log.query({ limit: 2, before: 3 });
      assert.deepEqual(last.entries.map((e) => e.seq), [2, 1]);
      assert.equal(last.next, null);
      assert.deepEqual((await r.log.query({ identity: 'q0', outcome: 'failure' })).entries.map((e) => e.seq), [5, 3, 1]);
      assert.deepEqual((await r.log.query({ actor: 'cli:root' })).entries.map((e) => e.action), ['device.delete']);
      assert.deepEqual((await r.log.query({ from: t + 1000, to: t + 3000 })).entries.map((e) => e.seq), [3, 2]);
      assert.deepEqual(p1.entries[1], {
        seq: 5, at: new Date(t + 4000).toISOString(), type: 'auth', subject: 'device', identity: 'q0', outcome: 'failure',
        reason: 'SAS signature mismatch', reasonCode: 'bad_credentials', remote: '10.1.2.3', protocol: 'mqtt', method: 'sas', tls: 'TLSv1.3',
      });
      await assert.rejects(r.log.query({ limit: 1001 }), /limit must be a whole number from 1 to 1000/);
    } finally {
      await r.close();
    }
  });
});

describe('AuditLog on PostgreSQL', () => {
  it("three writers on one database (a node's workers) append at once: one chain, every entry once, no false alarm", async () => {
    const url = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
    const schema = `gh_test_${randomBytes(6).toString('hex')}`;
    const withSchema = new URL(url);
    withSchema.searchParams.set('schema', schema);
    const key = randomBytes(32);
    const writers: Array<{ store: Store; events: SecurityEvents; log: AuditLog; lines: string[] }> = [];
    try {
      for (let w = 0; w < 3; w++) {
        const store = await openPostgresStore(withSchema.toString(), new SecretBox(key));
        const events = new SecurityEvents();
        const lines: string[] = [];
        const log = new AuditLog(store, events, { now: () => Date.now() }, createLogger('info', { write: (s: string) => void lines.push(s) }));
        await log.start();
        writers.push({ store, events, log, lines });
      }
      await Promise.all(
        writers.map(async (w, n) => {
          for (let burst = 0; burst < 30; burst++) {
            for (let i = 0; i < 10; i++) w.events.emit(auth(Date.now(), `w${n}-${burst}-${i}`));
            await w.log.flush();
          }
        }),
      );
      const rows = await writers[0]!.store.audit.page(0, 10_000);
      const identities = rows.map((r) => r.identity);
      assert.equal(identities.length, 900);
      assert.equal(new Set(identities).size, 900, 'every entry once');
      assert.deepEqual(rows.map((r) => r.seq), Array.from({ length: 900 }, (_, i) => i + 1));
      for (const w of writers) assert.equal(w.log.pending, 0);
      const said = writers.flatMap((w) => w.lines).filter((l) => /audit\.(tail-missing|append-failed|checkpoint-missing)/.test(l));
      assert.deepEqual(said, [], 'no writer took another one\'s append for a cut tail or gave up');
      const v = await writers[0]!.log.verify();
      assert.equal(v.ok, true, JSON.stringify(v.problems));
    } finally {
      for (const w of writers) {
        await w.log.stop();
        await w.store.close();
      }
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    }
  });

  it('text PostgreSQL refuses (NUL, a lone surrogate) is cleaned, not retried forever; the chain verifies', async () => {
    const url = process.env.GATEHOUSE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
    const schema = `gh_test_${randomBytes(6).toString('hex')}`;
    const withSchema = new URL(url);
    withSchema.searchParams.set('schema', schema);
    const store = await openPostgresStore(withSchema.toString(), new SecretBox(randomBytes(32)));
    const events = new SecurityEvents();
    const log = new AuditLog(store, events, { now: () => Date.now() }, createLogger('silent'));
    try {
      await log.start();
      events.emit(auth(Date.now(), 'evil\u0000id\uD800', 'failure', { reason: 'x'.repeat(5000) }));
      events.emit(change(Date.now(), 'device.update', { after: { note: 'nul \u0000 inside', bad: '\uDC00' } }));
      events.emit(auth(Date.now(), 'plain'));
      await log.flush();
      assert.equal(log.pending, 0);
      const rows = await store.audit.page(0, 10);
      assert.deepEqual(rows.map((r) => r.identity ?? r.action), ['evil\uFFFDid\uFFFD', 'device.update', 'plain']);
      assert.equal(rows[0]?.reason?.length, 1024);
      assert.deepEqual(JSON.parse(rows[1]?.afterJson ?? 'null'), { bad: '\uDC00', note: 'nul \u0000 inside' });
      const v = await log.verify();
      assert.equal(v.ok, true, JSON.stringify(v.problems));
      assert.equal(v.checked, 3);
    } finally {
      await log.stop();
      await store.close();
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
      await admin.end();
    }
  });
});

/** The store's methods bound, so a test can override one and spread the rest. */
function bind(s: AuditLogStore): AuditLogStore {
  return {
    audit: s.audit,
    getMeta: (k) => s.getMeta(k),
    setMeta: (k, v) => s.setMeta(k, v),
    getSecretMeta: (k) => s.getSecretMeta(k),
    setSecretMeta: (k, v) => s.setSecretMeta(k, v),
    insertMetaIfAbsent: (k, v) => s.insertMetaIfAbsent(k, v),
    insertSecretMetaIfAbsent: (k, v) => s.insertSecretMetaIfAbsent(k, v),
    compareAndSetMeta: (k, e, v) => s.compareAndSetMeta(k, e, v),
  };
}

function bindAudit(a: AuditStore): AuditStore {
  return {
    append: (rows) => a.append(rows),
    head: () => a.head(),
    page: (after, limit) => a.page(after, limit),
    query: (q) => a.query(q),
    retentionBoundary: (cutoff) => a.retentionBoundary(cutoff),
    deleteBefore: (seq) => a.deleteBefore(seq),
  };
}
