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

/**
 * A factory station's right to enroll devices into one enrollment group over EST, until it
 * expires. The password itself is shown once at creation and never stored.
 */
export interface EstCredentialRecord {
  /** The HTTP basic user name. */
  id: string;
  enrollmentGroupId: string;
  /** Lower-case hex SHA-256 of the password; null for a client-certificate-only credential. */
  secretHash: string | null;
  /** Upper-case hex SHA-256 of the station's TLS client certificate, or null. */
  clientThumbprint: string | null;
  expiresAt: string;
  created: string;
  /**
   * The registration ids it may enroll: patterns matched case-insensitively, `*` standing for any
   * run of characters (`line-a-*`), or exact ids. Empty allows nothing (credentials made before
   * scopes existed).
   */
  registrationIds: string[];
}

export interface AuthorityStore {
  /** InvalidOperation when the id is taken. */
  putEstCredential(record: EstCredentialRecord): Promise<void>;
  getEstCredential(id: string): Promise<EstCredentialRecord | undefined>;
  /** Ordered by id; one group's when given. */
  listEstCredentials(enrollmentGroupId?: string): Promise<EstCredentialRecord[]>;
  /** True if one was deleted. */
  deleteEstCredential(id: string): Promise<boolean>;
  /** Seals and stores a CA key (PKCS#8 PEM). InvalidOperation when the CA already has one. */
  putCaKey(caName: string, keyPem: string): Promise<void>;
  /** The unsealed PKCS#8 PEM, or undefined when Gatehouse holds no key for that CA. */
  getCaKey(caName: string): Promise<string | undefined>;
  /** Whether Gatehouse holds a key for that CA, without unsealing it. */
  hasCaKey(caName: string): Promise<boolean>;
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
