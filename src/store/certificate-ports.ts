/**
 * X.509 CA certificates registered on the hub and verified by proof of possession
 * (wire doc §7.2). Filled in by the CA registration work; see src/pki/ca-registry.ts.
 */
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

/** The CA registration work defines this store's methods. */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface CertificateStore {}
