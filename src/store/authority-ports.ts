/**
 * The device CA's own state (issue "Device PKI"): the private keys of the CAs Gatehouse operates
 * and the record of every certificate they signed. The policy (what may be signed, with which
 * options) lives in src/pki/authority.ts; the store seals keys and keeps records.
 */

/** One certificate signed by a Gatehouse CA. */
export interface IssuedCertificateRecord {
  /** Lower-case hex, as generated (unique per hub). */
  serial: string;
  caName: string;
  deviceId: string;
  registrationId: string | null;
  enrollmentGroupId: string | null;
  /** Upper-case hex SHA-1 and SHA-256 of the DER. */
  thumbprintSha1: string;
  thumbprintSha256: string;
  notBefore: string;
  notAfter: string;
  certificatePem: string;
  revokedAt: string | null;
  revocationReason: string | null;
  created: string;
}

export interface IssuedQuery {
  caName?: string;
  deviceId?: string;
  limit: number;
  /** Serials strictly greater than this (keyset paging, serial order). */
  after?: string;
}

export interface AuthorityStore {
  /** Seals and stores a CA key (PKCS#8 PEM). InvalidOperation when the CA already has one. */
  putCaKey(caName: string, keyPem: string): Promise<void>;
  /** The unsealed PKCS#8 PEM, or undefined when Gatehouse holds no key for that CA. */
  getCaKey(caName: string): Promise<string | undefined>;
  /** True if a key was deleted. */
  deleteCaKey(caName: string): Promise<boolean>;
  /** InvalidOperation when the serial is already recorded. */
  recordIssued(record: IssuedCertificateRecord): Promise<void>;
  getIssued(serial: string): Promise<IssuedCertificateRecord | undefined>;
  /** Ordered by serial. */
  listIssued(query: IssuedQuery): Promise<IssuedCertificateRecord[]>;
  /** Marks a certificate revoked (the first revocation stays). ResourceNotFound for an unknown serial; false if already revoked. */
  revoke(serial: string, reason: string, at: string): Promise<boolean>;
}
