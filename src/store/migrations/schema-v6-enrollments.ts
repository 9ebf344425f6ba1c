import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 6: DPS enrollments and device registration states (wire doc §6.9). Rows are
 * keyed by the lower-cased id (DPS ids are case-insensitive); `document` is the record as JSON
 * without its symmetric keys, which sit sealed in their own columns. A registration state names
 * the group it came through (NULL: an individual enrollment).
 */
export function schemaV6(d: SchemaDialect): string {
  return `
CREATE TABLE dps_enrollments (
  registration_id ${d.id} PRIMARY KEY,
  document TEXT NOT NULL,
  primary_key TEXT,
  secondary_key TEXT,
  etag TEXT NOT NULL,
  created TEXT NOT NULL,
  updated TEXT NOT NULL
);

CREATE TABLE dps_enrollment_groups (
  enrollment_group_id ${d.id} PRIMARY KEY,
  document TEXT NOT NULL,
  primary_key TEXT,
  secondary_key TEXT,
  etag TEXT NOT NULL,
  created TEXT NOT NULL,
  updated TEXT NOT NULL
);

CREATE TABLE dps_registrations (
  registration_id ${d.id} PRIMARY KEY,
  enrollment_group_id ${d.id},
  document TEXT NOT NULL,
  etag TEXT NOT NULL,
  created TEXT NOT NULL,
  updated TEXT NOT NULL
);
CREATE INDEX dps_registrations_group ON dps_registrations (enrollment_group_id, registration_id);
`;
}
