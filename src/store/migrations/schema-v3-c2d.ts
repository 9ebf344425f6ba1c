import type { SchemaDialect } from './dialect.js';

/** Schema version 3: cloud-to-device queues and feedback. */
export function schemaV3(d: SchemaDialect): string {
  void d;
  return '';
}
