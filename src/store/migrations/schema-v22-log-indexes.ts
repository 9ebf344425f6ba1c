/**
 * Schema version 22: the event log keeps only its primary key (part, seq) (issue 19 item 3). A
 * record's offset (pos) and enqueued time only grow with its sequence number within a partition
 * (positions add up sizes; an append never moves last_ms back), so the log finds the first record
 * at an offset or a time by a binary search on the key (src/log/sql/sql-log.ts), and retention
 * deletes a range of sequence numbers. The two secondary indexes cost every append an index
 * insert per record and per index for reads that happen once per reader.
 */
export function schemaV22(): string {
  return `
DROP INDEX log_records_pos;
DROP INDEX log_records_time;
`;
}
