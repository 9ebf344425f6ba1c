import { schemaV1, type Migration } from './schema-v1.js';

/** PostgreSQL migrations, applied in order under an advisory lock; never edit one that has shipped. */
export const postgresMigrations: readonly Migration[] = [
  { version: 1, name: 'registry, twins, policies, meta', sql: schemaV1('TEXT COLLATE "C"') },
];
