import { schemaV1, type Migration } from './schema-v1.js';

/** SQLite migrations, applied in order; never edit one that has shipped, add the next. */
export const sqliteMigrations: readonly Migration[] = [
  { version: 1, name: 'registry, twins, policies, meta', sql: schemaV1('TEXT') },
];
