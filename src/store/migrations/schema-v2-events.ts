import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 2: the event stream (telemetry store). `seq` is the stream position: assigned in
 * append order, never reused (SQLite AUTOINCREMENT, PostgreSQL sequence). `module_id` is '' for a
 * device's own telemetry. Properties are JSON objects of strings; `enqueued_time` is ISO-8601 UTC,
 * so text order is time order (retention prunes on it).
 */
export function schemaV2(d: SchemaDialect): string {
  return `
CREATE TABLE events (
  seq ${d.serial},
  device_id ${d.id} NOT NULL,
  module_id ${d.id} NOT NULL DEFAULT '',
  enqueued_time TEXT NOT NULL,
  body ${d.blob} NOT NULL,
  properties TEXT NOT NULL,
  system_properties TEXT NOT NULL
);
CREATE INDEX events_device_seq ON events (device_id, seq);
CREATE INDEX events_enqueued_time ON events (enqueued_time);
`;
}
