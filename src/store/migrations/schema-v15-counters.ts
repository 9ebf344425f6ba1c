import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 15: counters shared by every node (issue 16), for the lockout and the provisioning
 * rate limits (counter-ports.ts). `value` is the owner's JSON, NULL for a removed counter (a
 * tombstone other nodes' caches read through `updated_at`); `expires_at` lets any node purge
 * what no longer counts.
 */
export function schemaV15(d: SchemaDialect): string {
  return `
CREATE TABLE shared_counters (
  key ${d.id} PRIMARY KEY,
  value TEXT,
  expires_at ${d.bigint} NOT NULL,
  updated_at ${d.bigint} NOT NULL
);
CREATE INDEX shared_counters_updated ON shared_counters (updated_at);
CREATE INDEX shared_counters_expires ON shared_counters (expires_at);
`;
}
