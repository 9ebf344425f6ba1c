/**
 * Schema version 17: the partitioned log (v16) is the hub's only stream of device messages, so the
 * old global-seq `events` table of v2 goes (its index with it; on PostgreSQL the table's sequence
 * too). What it held is not copied: its records were written to the log as well since v16, and a
 * record's partition comes from a hash SQL cannot compute. Old SSE seq cursors mean nothing now.
 */
export function schemaV17(sqlite: boolean): string {
  return sqlite ? `DROP TABLE IF EXISTS events;\nDELETE FROM sqlite_sequence WHERE name = 'events';\n` : 'DROP TABLE IF EXISTS events;\n';
}
