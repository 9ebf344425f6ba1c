import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 8: EST factory credentials (issue "Device PKI", step 3). Each credential lets a
 * factory station enroll devices into one enrollment group until it expires: by HTTP basic auth
 * (`secret_hash`, the SHA-256 of a 256-bit random password, never the password) and/or by a TLS
 * client certificate (`client_thumbprint`, SHA-256 of the station's certificate).
 */
export function schemaV8(d: SchemaDialect): string {
  return `
CREATE TABLE est_credentials (
  id ${d.id} PRIMARY KEY,
  enrollment_group_id ${d.id} NOT NULL,
  secret_hash TEXT,
  client_thumbprint TEXT,
  expires_at TEXT NOT NULL,
  created TEXT NOT NULL
);
CREATE INDEX est_credentials_group ON est_credentials (enrollment_group_id, id);
`;
}
