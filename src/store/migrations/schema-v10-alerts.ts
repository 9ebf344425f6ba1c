import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 10: alert rules and alert history (issue "Security monitoring": metrics and
 * alerts). (Version 9 is the audit log, added on its own branch.)
 *
 * `alert_rules.webhook_secret` is sealed with the master key, bound to the rule name.
 * `alert_history` has one row per firing of a rule for one key: inserted when it fires, updated
 * when it resolves and after each webhook delivery. `seq` orders it (newest first for listings);
 * `id` is what operators and webhook receivers see. Times are ISO-8601 in the identifier type
 * (byte-order collation on PostgreSQL) so the retention sweep compares them as strings.
 */
export function schemaV10(d: SchemaDialect): string {
  return `
CREATE TABLE alert_rules (
  name ${d.id} PRIMARY KEY,
  kind TEXT NOT NULL,
  enabled INTEGER NOT NULL,
  scope TEXT,
  threshold ${d.bigint},
  window_seconds ${d.bigint},
  days INTEGER,
  log_action INTEGER NOT NULL,
  webhook_url TEXT,
  webhook_secret TEXT,
  created TEXT NOT NULL,
  updated TEXT NOT NULL
);

CREATE TABLE alert_history (
  seq ${d.serial},
  id ${d.id} NOT NULL UNIQUE,
  rule ${d.id} NOT NULL,
  kind TEXT NOT NULL,
  alert_key TEXT NOT NULL,
  state TEXT NOT NULL,
  value ${d.bigint} NOT NULL,
  threshold ${d.bigint} NOT NULL,
  window_seconds ${d.bigint},
  fired_at ${d.id} NOT NULL,
  resolved_at ${d.id},
  summary TEXT NOT NULL,
  details TEXT NOT NULL,
  deliveries INTEGER NOT NULL DEFAULT 0,
  last_delivery TEXT
);
CREATE INDEX alert_history_state ON alert_history (state, seq);
CREATE INDEX alert_history_rule ON alert_history (rule, seq);
CREATE INDEX alert_history_resolved ON alert_history (resolved_at);
`;
}
