import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 9: the tamper-evident audit log (authentication decisions and changes). `seq` is
 * assigned by the hub's one appender, not by the database, because each row's `hash` covers it:
 * HMAC-SHA256 under a key sealed in `meta`, over `prev_hash` and the row (src/audit/audit-chain.ts).
 * `at` is ms since the epoch. `before_json`/`after_json` are TEXT, not JSON/JSONB, so the bytes
 * hashed are the bytes kept.
 */
export function schemaV9(d: SchemaDialect): string {
  return `
CREATE TABLE audit_log (
  seq ${d.bigint} PRIMARY KEY,
  at ${d.bigint} NOT NULL,
  type TEXT NOT NULL,
  subject TEXT,
  identity ${d.id},
  outcome TEXT,
  reason TEXT,
  reason_code TEXT,
  remote TEXT,
  protocol TEXT,
  method TEXT,
  tls TEXT,
  actor ${d.id},
  action TEXT,
  target TEXT,
  before_json TEXT,
  after_json TEXT,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_identity ON audit_log (identity, seq);
CREATE INDEX audit_log_outcome ON audit_log (outcome, seq);
`;
}
