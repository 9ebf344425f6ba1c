import type { SchemaDialect } from './dialect.js';

/** Schema version 4: registered X.509 CA certificates. */
export function schemaV4(d: SchemaDialect): string {
  void d;
  return '';
}
