/** What differs between the dialects in a schema script. */
export interface SchemaDialect {
  name: 'sqlite' | 'postgres';
  /** Identifier column type (PostgreSQL: byte-order collation, like SQLite). */
  id: string;
  /** Auto-incrementing 64-bit primary key column definition. */
  serial: string;
  /** Binary column type. */
  blob: string;
  /** 64-bit integer column type. */
  bigint: string;
}

export const SQLITE: SchemaDialect = {
  name: 'sqlite',
  id: 'TEXT',
  serial: 'INTEGER PRIMARY KEY AUTOINCREMENT',
  blob: 'BLOB',
  bigint: 'INTEGER',
};

export const POSTGRES: SchemaDialect = {
  name: 'postgres',
  id: 'TEXT COLLATE "C"',
  serial: 'BIGSERIAL PRIMARY KEY',
  blob: 'BYTEA',
  bigint: 'BIGINT',
};
