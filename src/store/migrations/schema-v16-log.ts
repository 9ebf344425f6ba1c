import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 16: the partitioned event log (issue 17, src/log/sql/sql-log.ts).
 *
 * `log_partitions` has one row per partition, made when the log is first opened (the row count is
 * the hub's partition count). An append takes the row's lock (UPDATE ... RETURNING) to number its
 * records and holds it until commit, so within a partition commit order is sequence order: a
 * reader never sees seq N+1 before N, with any number of writers. `next_seq` and `next_pos` are
 * what the next record gets (sequence number, byte position = its offset); `last_pos` and
 * `last_ms` are the last record's offset and enqueued time (epoch milliseconds; appends never
 * move it back, so enqueued times never decrease within a partition). Retention deletes records,
 * never these counters: numbers and offsets are not reused.
 *
 * `log_records` is keyed by (partition, seq); the (part, pos) and (part, enqueued_ms) indexes serve
 * reads from an offset or an enqueued time and retention by size and by age.
 */
export function schemaV16(d: SchemaDialect): string {
  return `
CREATE TABLE log_partitions (
  part INTEGER PRIMARY KEY,
  next_seq ${d.bigint} NOT NULL,
  next_pos ${d.bigint} NOT NULL,
  last_pos ${d.bigint} NOT NULL,
  last_ms ${d.bigint} NOT NULL
);
CREATE TABLE log_records (
  part INTEGER NOT NULL,
  seq ${d.bigint} NOT NULL,
  pos ${d.bigint} NOT NULL,
  enqueued_ms ${d.bigint} NOT NULL,
  size INTEGER NOT NULL,
  device_id ${d.id} NOT NULL,
  module_id ${d.id} NOT NULL DEFAULT '',
  body ${d.blob} NOT NULL,
  properties TEXT NOT NULL,
  system_properties TEXT NOT NULL,
  PRIMARY KEY (part, seq)
);
CREATE INDEX log_records_pos ON log_records (part, pos);
CREATE INDEX log_records_time ON log_records (part, enqueued_ms);
`;
}
