/**
 * AuditStore over a SqlDriver (schema v9, table `audit_log`); see audit-store.case.ts.
 *
 * An append checks, inside its transaction, that its first seq is above the stored maximum; a
 * second writer racing on PostgreSQL is stopped by the primary key instead. Either way the caller
 * gets PreconditionFailed and nothing of the batch is written. BIGINT columns come back from
 * PostgreSQL as strings; rows convert them.
 */
import { HubError } from '../../core/errors.js';
import type { AuditHead, AuditOutcome, AuditQuery, AuditRow, AuditStore, AuditType } from '../audit-ports.js';
import type { SqlDriver, SqlRow, SqlValue } from './driver.js';
import { str as text, strOrNull as textOrNull } from './rows.js';

const COLUMNS =
  'seq, at, type, subject, identity, outcome, reason, reason_code, remote, protocol, method, tls, actor, action, target, before_json, after_json, prev_hash, hash';
const PER_ROW = COLUMNS.split(',').length;
/** Rows per INSERT: 19 parameters each, far below SQLite's 32766 and PostgreSQL's 65535. */
const ROWS_PER_INSERT = 100;

function params(r: AuditRow): SqlValue[] {
  return [
    r.seq,
    r.at,
    r.type,
    r.subject,
    r.identity,
    r.outcome,
    r.reason,
    r.reasonCode,
    r.remote,
    r.protocol,
    r.method,
    r.tls,
    r.actor,
    r.action,
    r.target,
    r.beforeJson,
    r.afterJson,
    r.prevHash,
    r.hash,
  ];
}

function fromRow(r: SqlRow): AuditRow {
  return {
    seq: Number(r.seq),
    at: Number(r.at),
    type: text(r, 'type') as AuditType,
    subject: textOrNull(r, 'subject'),
    identity: textOrNull(r, 'identity'),
    outcome: textOrNull(r, 'outcome') as AuditOutcome | null,
    reason: textOrNull(r, 'reason'),
    reasonCode: textOrNull(r, 'reason_code'),
    remote: textOrNull(r, 'remote'),
    protocol: textOrNull(r, 'protocol'),
    method: textOrNull(r, 'method'),
    tls: textOrNull(r, 'tls'),
    actor: textOrNull(r, 'actor'),
    action: textOrNull(r, 'action'),
    target: textOrNull(r, 'target'),
    beforeJson: textOrNull(r, 'before_json'),
    afterJson: textOrNull(r, 'after_json'),
    prevHash: text(r, 'prev_hash'),
    hash: text(r, 'hash'),
  };
}

const conflict = (seq: number) =>
  new HubError('PreconditionFailed', `Audit seq ${seq} is not above the last stored seq: another writer appended first.`);

export class SqlAuditStore implements AuditStore {
  constructor(private readonly db: SqlDriver) {}

  async append(rows: readonly AuditRow[]): Promise<void> {
    const first = rows[0];
    if (first === undefined) return;
    try {
      await this.db.transaction(async (tx) => {
        const max = await tx.all('SELECT MAX(seq) AS seq FROM audit_log');
        const last = max[0]?.seq;
        if (last !== null && last !== undefined && Number(last) >= first.seq) throw conflict(first.seq);
        for (let i = 0; i < rows.length; i += ROWS_PER_INSERT) {
          const chunk = rows.slice(i, i + ROWS_PER_INSERT);
          const one = `(${Array.from({ length: PER_ROW }, () => '?').join(', ')})`;
          await tx.run(
            `INSERT INTO audit_log (${COLUMNS}) VALUES ${chunk.map(() => one).join(', ')}`,
            chunk.flatMap(params),
          );
        }
      });
    } catch (err) {
      if (this.db.isUniqueViolation(err)) throw conflict(first.seq);
      throw err;
    }
  }

  async head(): Promise<AuditHead | undefined> {
    const rows = await this.db.all('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1');
    const r = rows[0];
    return r === undefined ? undefined : { seq: Number(r.seq), hash: text(r, 'hash') };
  }

  async page(afterSeq: number, limit: number): Promise<AuditRow[]> {
    const rows = await this.db.all(`SELECT ${COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?`, [afterSeq, limit]);
    return rows.map(fromRow);
  }

  async query(q: AuditQuery): Promise<AuditRow[]> {
    const where: string[] = [];
    const values: SqlValue[] = [];
    const add = (clause: string, v: SqlValue | undefined) => {
      if (v === undefined) return;
      where.push(clause);
      values.push(v);
    };
    add('at >= ?', q.from);
    add('at < ?', q.to);
    add('identity = ?', q.identity);
    add('outcome = ?', q.outcome);
    add('type = ?', q.type);
    add('actor = ?', q.actor);
    add('seq < ?', q.before);
    const clause = where.length === 0 ? '' : `WHERE ${where.join(' AND ')} `;
    const rows = await this.db.all(`SELECT ${COLUMNS} FROM audit_log ${clause}ORDER BY seq DESC LIMIT ?`, [...values, q.limit]);
    return rows.map(fromRow);
  }

  async retentionBoundary(cutoff: number): Promise<{ seq: number; prevHash: string } | undefined> {
    // Walks seq order from the oldest row: as long as what retention removes, not the whole table.
    const first = await this.db.all('SELECT seq, prev_hash FROM audit_log WHERE at >= ? ORDER BY seq LIMIT 1', [cutoff]);
    const r = first[0] ?? (await this.db.all('SELECT seq, prev_hash FROM audit_log ORDER BY seq DESC LIMIT 1'))[0];
    return r === undefined ? undefined : { seq: Number(r.seq), prevHash: text(r, 'prev_hash') };
  }

  async deleteBefore(seq: number): Promise<number> {
    return this.db.run('DELETE FROM audit_log WHERE seq < ?', [seq]);
  }
}
