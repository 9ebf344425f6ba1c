import type { SchemaDialect } from './dialect.js';

/** Schema version 2: the event stream (telemetry store). */
export function schemaV2(d: SchemaDialect): string {
  void d;
  return '';
}
