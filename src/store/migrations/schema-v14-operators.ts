import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 14: operators and role assignments become rows with etags (issue 16), instead
 * of two JSON documents in `meta` (`operators`, `role-assignments`) that every change rewrote
 * whole: two nodes changing two operators at once lost one of the changes.
 *
 * `operators.id_key` is the id in lower case (ids are ASCII: letters, digits, `. _ @ -`), so ids
 * are unique without regard to case; `id` keeps the spelling it was created with. An assignment
 * goes with its operator (ON DELETE CASCADE) and an operator holds a role at a scope once.
 *
 * The documents' contents move over in the same transaction, each row with a new etag; an
 * assignment naming no operator (none should) is dropped, as the service already ignored it.
 */
export function schemaV14(d: SchemaDialect): string {
  const tables = `
CREATE TABLE operators (
  id_key ${d.id} PRIMARY KEY,
  id TEXT NOT NULL,
  display_name TEXT NOT NULL,
  enabled INTEGER NOT NULL,
  created_at TEXT NOT NULL,
  tokens_valid_after ${d.bigint} NOT NULL,
  etag TEXT NOT NULL
);

CREATE TABLE role_assignments (
  id ${d.id} PRIMARY KEY,
  principal_key ${d.id} NOT NULL REFERENCES operators (id_key) ON DELETE CASCADE,
  role TEXT NOT NULL,
  scope TEXT NOT NULL,
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  etag TEXT NOT NULL,
  UNIQUE (principal_key, role, scope)
);
`;
  return tables + (d.name === 'sqlite' ? SQLITE_MOVE : POSTGRES_MOVE);
}

// SQLite's JSON1 (built into better-sqlite3); `WHERE` before ON CONFLICT keeps the parser sure
// the SELECT has ended.
const SQLITE_MOVE = `
INSERT INTO operators (id_key, id, display_name, enabled, created_at, tokens_valid_after, etag)
SELECT lower(json_extract(e.value, '$.id')), json_extract(e.value, '$.id'),
       COALESCE(json_extract(e.value, '$.displayName'), json_extract(e.value, '$.id')),
       CASE WHEN json_extract(e.value, '$.enabled') THEN 1 ELSE 0 END,
       json_extract(e.value, '$.createdAt'),
       CAST(COALESCE(json_extract(e.value, '$.tokensValidAfter'), 0) AS INTEGER),
       lower(hex(randomblob(8)))
FROM meta m, json_each(m.value) e
WHERE m.key = 'operators' AND json_extract(e.value, '$.id') IS NOT NULL
ON CONFLICT DO NOTHING;

INSERT INTO role_assignments (id, principal_key, role, scope, created_at, created_by, etag)
SELECT json_extract(e.value, '$.id'), lower(json_extract(e.value, '$.principalId')),
       json_extract(e.value, '$.roleDefinitionName'), COALESCE(json_extract(e.value, '$.scope'), '/'),
       json_extract(e.value, '$.createdAt'), COALESCE(json_extract(e.value, '$.createdBy'), 'unknown'),
       lower(hex(randomblob(8)))
FROM meta m, json_each(m.value) e
WHERE m.key = 'role-assignments'
  AND EXISTS (SELECT 1 FROM operators o WHERE o.id_key = lower(json_extract(e.value, '$.principalId')))
ON CONFLICT DO NOTHING;

DELETE FROM meta WHERE key IN ('operators', 'role-assignments');
`;

const POSTGRES_MOVE = `
INSERT INTO operators (id_key, id, display_name, enabled, created_at, tokens_valid_after, etag)
SELECT lower(e->>'id'), e->>'id', COALESCE(e->>'displayName', e->>'id'),
       CASE WHEN (e->>'enabled')::boolean THEN 1 ELSE 0 END,
       e->>'createdAt',
       COALESCE((e->>'tokensValidAfter')::numeric, 0)::bigint,
       substr(md5(random()::text || clock_timestamp()::text), 1, 16)
FROM meta m, json_array_elements(m.value::json) e
WHERE m.key = 'operators' AND e->>'id' IS NOT NULL
ON CONFLICT DO NOTHING;

INSERT INTO role_assignments (id, principal_key, role, scope, created_at, created_by, etag)
SELECT e->>'id', lower(e->>'principalId'), e->>'roleDefinitionName', COALESCE(e->>'scope', '/'),
       e->>'createdAt', COALESCE(e->>'createdBy', 'unknown'),
       substr(md5(random()::text || clock_timestamp()::text), 1, 16)
FROM meta m, json_array_elements(m.value::json) e
WHERE m.key = 'role-assignments'
  AND EXISTS (SELECT 1 FROM operators o WHERE o.id_key = lower(e->>'principalId'))
ON CONFLICT DO NOTHING;

DELETE FROM meta WHERE key IN ('operators', 'role-assignments');
`;
