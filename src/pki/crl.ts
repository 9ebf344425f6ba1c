/**
 * Revocation vocabulary and CRL encoding (RFC 5280 §5): reasons, serial normalization, and a CRL
 * signed by a CA's key. No I/O; the authority decides what goes in and caches the result.
 */
import * as x509 from '@peculiar/x509';
import type { webcrypto } from 'node:crypto';

/** RFC 5280 §5.3.1 CRLReason codes Gatehouse accepts when revoking. */
export const REVOCATION_REASONS = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
} as const;
export type RevocationReason = keyof typeof REVOCATION_REASONS;

export function isRevocationReason(v: unknown): v is RevocationReason {
  return typeof v === 'string' && Object.prototype.hasOwnProperty.call(REVOCATION_REASONS, v);
}

/** Serial hex as the store keeps it: lower case, no separators, no superfluous leading zero octets. */
export function normalizeSerial(serial: string): string {
  let s = serial.replace(/[:\s]/g, '').toLowerCase();
  if (s.length % 2 === 1) s = `0${s}`;
  while (s.length > 2 && s.startsWith('00') && parseInt(s.slice(2, 3), 16) < 8) s = s.slice(2);
  return s;
}

/** A DER INTEGER (non-negative), for the CRL number extension. */
function derInteger(n: number): Uint8Array {
  let h = Math.floor(n).toString(16);
  if (h.length % 2 === 1) h = `0${h}`;
  if (parseInt(h.slice(0, 1), 16) >= 8) h = `00${h}`;
  const body = Buffer.from(h, 'hex');
  return Uint8Array.from([0x02, body.length, ...body]);
}

/** RFC 5280 §5.2.3 id-ce-cRLNumber. */
const CRL_NUMBER = '2.5.29.20';

export interface CrlInput {
  issuer: x509.X509Certificate;
  signer: { key: webcrypto.CryptoKey; signAlg: webcrypto.Algorithm | webcrypto.EcdsaParams };
  revoked: ReadonlyArray<{ serial: string; revokedAt: string | null; revocationReason: string | null }>;
  now: number;
  nextUpdate: number;
  crlNumber: number;
}

/** A DER CRL: AKI (RFC 5280 §5.2.1), CRL number (§5.2.3), one entry per revoked serial with its reason. */
export async function buildCrl(input: CrlInput): Promise<Buffer> {
  const caSki = input.issuer.getExtension(x509.SubjectKeyIdentifierExtension);
  const crl = await x509.X509CrlGenerator.create({
    issuer: input.issuer.subjectName,
    thisUpdate: new Date(input.now),
    nextUpdate: new Date(input.nextUpdate),
    signingKey: input.signer.key,
    signingAlgorithm: input.signer.signAlg,
    extensions: [
      caSki !== null ? new x509.AuthorityKeyIdentifierExtension(caSki.keyId, false) : await x509.AuthorityKeyIdentifierExtension.create(input.issuer.publicKey, false),
      new x509.Extension(CRL_NUMBER, false, derInteger(input.crlNumber)),
    ],
    entries: input.revoked.map((r) => ({
      serialNumber: r.serial,
      revocationDate: new Date(r.revokedAt ?? input.now),
      reason: REVOCATION_REASONS[isRevocationReason(r.revocationReason) ? r.revocationReason : 'unspecified'] as number as x509.X509CrlReason,
    })),
  });
  return Buffer.from(crl.rawData);
}
