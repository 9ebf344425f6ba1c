/**
 * Schema version 21 (PostgreSQL only): log_append takes whether its commit waits for the WAL flush
 * (issue 19's `--telemetry-durability`). `fsync` (the default) passes true, as version 19 always
 * did; `os-cache` passes false, and the commit returns once the WAL is written to the operating
 * system (synchronous_commit=off: a PostgreSQL crash loses nothing, a power cut may lose the last
 * moments). The body is version 19's otherwise; the old signature is dropped so no caller reaches it.
 */
import { logAppendFunction } from './schema-v19-log-append.js';

export function schemaV21PostgresLogSync(): string {
  return `
DROP FUNCTION log_append(integer[], text[], text[], bytea[], json, json, json, bigint);
${logAppendFunction(true)}`;
}
