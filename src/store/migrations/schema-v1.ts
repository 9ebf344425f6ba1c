/**
 * Version 1 of the schema, written once for both dialects. `ID` is the column type of identifiers:
 * PostgreSQL orders with the "C" collation so cursor paging orders ids exactly as SQLite does
 * (byte order), whatever the server's locale.
 */
export function schemaV1(id: string): string {
  return `
CREATE TABLE devices (
  device_id ${id} PRIMARY KEY,
  generation_id TEXT NOT NULL,
  etag TEXT NOT NULL,
  status TEXT NOT NULL,
  status_reason TEXT,
  status_updated_time TEXT NOT NULL,
  auth_type TEXT NOT NULL,
  primary_key TEXT,
  secondary_key TEXT,
  primary_thumbprint TEXT,
  secondary_thumbprint TEXT,
  iot_edge INTEGER NOT NULL DEFAULT 0,
  device_scope TEXT,
  parent_scopes TEXT NOT NULL DEFAULT '[]',
  connection_state TEXT NOT NULL,
  connection_state_updated_time TEXT NOT NULL,
  last_activity_time TEXT NOT NULL,
  c2d_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX devices_primary_thumbprint ON devices (primary_thumbprint);
CREATE INDEX devices_secondary_thumbprint ON devices (secondary_thumbprint);

CREATE TABLE modules (
  device_id ${id} NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
  module_id ${id} NOT NULL,
  generation_id TEXT NOT NULL,
  etag TEXT NOT NULL,
  managed_by TEXT,
  auth_type TEXT NOT NULL,
  primary_key TEXT,
  secondary_key TEXT,
  primary_thumbprint TEXT,
  secondary_thumbprint TEXT,
  connection_state TEXT NOT NULL,
  connection_state_updated_time TEXT NOT NULL,
  last_activity_time TEXT NOT NULL,
  c2d_count INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (device_id, module_id)
);

CREATE TABLE twins (
  device_id ${id} NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
  module_id ${id} NOT NULL DEFAULT '',
  etag TEXT NOT NULL,
  version INTEGER NOT NULL,
  tags TEXT NOT NULL,
  desired TEXT NOT NULL,
  desired_meta TEXT NOT NULL,
  desired_version INTEGER NOT NULL,
  reported TEXT NOT NULL,
  reported_meta TEXT NOT NULL,
  reported_version INTEGER NOT NULL,
  model_id TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (device_id, module_id)
);

CREATE TABLE policies (
  name ${id} PRIMARY KEY,
  primary_key TEXT NOT NULL,
  secondary_key TEXT NOT NULL,
  rights TEXT NOT NULL,
  etag TEXT NOT NULL
);

CREATE TABLE meta (
  key ${id} PRIMARY KEY,
  value TEXT NOT NULL
);
`;
}

export interface Migration {
  version: number;
  name: string;
  sql: string;
}
