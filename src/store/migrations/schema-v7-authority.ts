import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 7: the device CA (issue "Device PKI"). `ca_keys` holds the private keys of the CAs
 * Gatehouse operates, sealed with the master key (context `ca-key:<name>`); the public part is the
 * `ca_certificates` row with the same name. `issued_certificates` records every certificate signed
 * (serial in lower-case hex, unique per hub), for listing, renewal and revocation.
 */
export function schemaV7(d: SchemaDialect): string {
  return `
CREATE TABLE ca_keys (
  ca_name ${d.id} PRIMARY KEY,
  key_pem TEXT NOT NULL,
  created TEXT NOT NULL
);

CREATE TABLE issued_certificates (
  serial ${d.id} PRIMARY KEY,
  ca_name ${d.id} NOT NULL,
  device_id ${d.id} NOT NULL,
  registration_id ${d.id},
  enrollment_group_id ${d.id},
  thumbprint_sha1 TEXT NOT NULL,
  thumbprint_sha256 TEXT NOT NULL,
  not_before TEXT NOT NULL,
  not_after TEXT NOT NULL,
  certificate_pem TEXT NOT NULL,
  revoked_at TEXT,
  revocation_reason TEXT,
  created TEXT NOT NULL
);
CREATE INDEX issued_certificates_device ON issued_certificates (device_id, serial);
CREATE INDEX issued_certificates_ca ON issued_certificates (ca_name, serial);
`;
}
