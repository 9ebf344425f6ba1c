import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 4: registered X.509 CA certificates (wire doc §7.2). Public parts only; the
 * thumbprint_sha256 index serves the connect-time lookups of verified CAs.
 */
export function schemaV4(d: SchemaDialect): string {
  return `
CREATE TABLE ca_certificates (
  name ${d.id} PRIMARY KEY,
  certificate_pem TEXT NOT NULL,
  subject TEXT NOT NULL,
  thumbprint TEXT NOT NULL,
  thumbprint_sha256 TEXT NOT NULL,
  expiry TEXT NOT NULL,
  is_verified INTEGER NOT NULL DEFAULT 0,
  verification_code TEXT,
  created TEXT NOT NULL,
  updated TEXT NOT NULL,
  etag TEXT NOT NULL
);
CREATE INDEX ca_certificates_thumbprint_sha256 ON ca_certificates (thumbprint_sha256);
`;
}
