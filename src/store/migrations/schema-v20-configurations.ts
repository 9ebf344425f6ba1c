import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 20: automatic device and module configurations (issue 18 item 2). `doc` holds
 * what the operator set (schemaVersion, labels, content, targetCondition, metric queries) as JSON;
 * `results` what the hub last computed (system and custom metric counts), written without moving
 * the etag. `twins.configurations` is the twin's `configurations` section (`{ <id>: { status } }`),
 * which the system metric queries read like Azure's (`configurations.[[id]].status = 'Applied'`).
 */
export function schemaV20(d: SchemaDialect): string {
  return `
CREATE TABLE configurations (
  id ${d.id} PRIMARY KEY,
  doc TEXT NOT NULL,
  priority INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  etag TEXT NOT NULL,
  results TEXT,
  results_at ${d.bigint} NOT NULL DEFAULT 0
);
ALTER TABLE twins ADD COLUMN configurations TEXT;
`;
}
