/**
 * X.509 CA certificates registered on the hub and verified by proof of possession
 * (wire doc §7.2). The policy (validation, quota, proof of possession) lives in
 * src/pki/ca-certificates.ts; the store only keeps records under etags.
 */
import type { EtagCondition } from './ports.js';

export interface CaCertificateRecord {
  name: string;
  /** PEM, public part only. */
  certificatePem: string;
  subject: string;
  /** Upper-case hex SHA-1 and SHA-256 of the DER. */
  thumbprint: string;
  thumbprintSha256: string;
  expiry: string;
  isVerified: boolean;
  /** The pending proof-of-possession code, if one was generated. */
  verificationCode: string | null;
  created: string;
  updated: string;
  etag: string;
}

/** The connect-time hot path: verified CAs only; callers (CaCertificates) cache the parsed result. */
export interface CaCertificateLookups {
  findVerifiedByThumbprintSha256(thumbprintSha256: string): Promise<CaCertificateRecord | undefined>;
  /** Every verified CA, ordered by name. */
  listVerified(): Promise<CaCertificateRecord[]>;
}

export interface CertificateStore extends CaCertificateLookups {
  /** Inserts a new record. InvalidOperation when the name is taken (the first one stays). */
  create(record: CaCertificateRecord): Promise<void>;
  get(name: string): Promise<CaCertificateRecord | undefined>;
  /** Every record, ordered by name (byte order). */
  list(): Promise<CaCertificateRecord[]>;
  /** Replaces the record named `record.name` when its etag matches. ResourceNotFound / PreconditionFailed. */
  replace(record: CaCertificateRecord, ifMatch: EtagCondition): Promise<void>;
  /** ResourceNotFound / PreconditionFailed. */
  delete(name: string, ifMatch: EtagCondition): Promise<void>;
}
