/**
 * X.509 attestation for provisioning [DOCS: X.509 certificate attestation] (wire doc §4.4):
 *
 * - the leaf's CN is the registration id, and the leaf is within its validity period;
 * - an individual enrollment for that id decides alone: the leaf must be one of its client
 *   certificates (by SHA-256 thumbprint); disabled refuses, even where a group would allow;
 * - otherwise the chain must lead to a group's signing certificate or CA reference: the nearest
 *   one in the chain wins (first intermediate first, then upwards), matched by key, never by name
 *   alone; a disabled group refuses.
 *
 * What the hub identity gets: an individual's leaf, or a group member's leaf under uploaded
 * signing certificates, is registered by thumbprint; a member of a group that references a CA
 * registered (and verified) on the hub is registered as CA-signed, so certificate renewal under
 * that CA needs no re-provisioning.
 */
import { createHash, X509Certificate } from 'node:crypto';
import type { AuthFailureCode } from '../core/auth-failure.js';
import { outsideValidity, safeFields, verifyChain, type TrustAnchor } from '../pki/device-chain.js';
import { parseCertificateUpload } from '../pki/ca-certificates.js';

export interface X509EnrollmentLike {
  provisioningStatus?: string;
  attestation: {
    type: string;
    x509?: {
      clientCertificates?: { primary?: { certificate?: string }; secondary?: { certificate?: string } | null };
      signingCertificates?: { primary?: { certificate?: string }; secondary?: { certificate?: string } | null };
      caReferences?: { primary?: string; secondary?: string | null };
    };
  };
}

export interface CaLookup {
  /** A registered CA's PEM when it is verified, else undefined. */
  verifiedCaPem(name: string): Promise<string | undefined>;
}

export type X509Attested =
  | { kind: 'individual'; leafThumbprint: string }
  | { kind: 'group'; groupId: string; via: 'signing-certificate' | 'ca-reference'; leafThumbprint: string };

/** Why attestation refused, and its category (decided here, not read from the text). */
export type X509Refusal = { error: string; code: AuthFailureCode };

const refuse = (code: AuthFailureCode, error: string): X509Refusal => ({ error, code });

const parsed = new Map<string, X509Certificate>();

function parseOnce(text: string): X509Certificate | undefined {
  let cert = parsed.get(text);
  if (cert === undefined) {
    try {
      cert = parseCertificateUpload(text).cert;
    } catch {
      return undefined;
    }
    if (parsed.size > 1000) parsed.clear();
    parsed.set(text, cert);
  }
  return cert;
}

export function sha256Thumbprint(cert: X509Certificate): string {
  return createHash('sha256').update(cert.raw).digest('hex').toUpperCase();
}

function anchor(name: string, cert: X509Certificate): TrustAnchor {
  return {
    name,
    cert,
    thumbprintSha256: sha256Thumbprint(cert),
    notBefore: Date.parse(cert.validFrom),
    notAfter: Date.parse(cert.validTo),
    pathLen: safeFields(cert)?.basicConstraints?.pathLen,
  };
}

function enabled(e: { provisioningStatus?: string }): boolean {
  return (e.provisioningStatus ?? 'enabled') === 'enabled';
}

export async function attestX509(
  registrationId: string,
  chain: readonly X509Certificate[],
  individual: X509EnrollmentLike | undefined,
  groups: ReadonlyArray<X509EnrollmentLike & { enrollmentGroupId: string }>,
  cas: CaLookup,
  now: number,
): Promise<X509Attested | X509Refusal> {
  const leaf = chain[0];
  if (leaf === undefined) return refuse('malformed', 'no client certificate');
  const leafThumbprint = sha256Thumbprint(leaf);

  if (individual !== undefined) {
    if (individual.attestation.type !== 'x509') return refuse('bad_credentials', 'the individual enrollment does not use X.509');
    const cn = safeFields(leaf)?.commonNames;
    if (cn?.length !== 1 || cn[0]?.toLowerCase() !== registrationId.toLowerCase()) return refuse('bad_credentials', 'the certificate CN is not the registration id');
    const outside = outsideValidity(leaf, now, 'the certificate');
    if (outside !== undefined) return refuse(outside.code, outside.error);
    const certs = individual.attestation.x509?.clientCertificates;
    const allowed = [certs?.primary?.certificate, certs?.secondary?.certificate]
      .filter((c): c is string => typeof c === 'string' && c !== '')
      .map((c) => parseOnce(c))
      .filter((c): c is X509Certificate => c !== undefined)
      .map(sha256Thumbprint);
    if (!allowed.includes(leafThumbprint)) return refuse('bad_credentials', "the certificate is not the enrollment's client certificate");
    if (!enabled(individual)) return refuse('disabled', 'the individual enrollment is disabled');
    return { kind: 'individual', leafThumbprint };
  }

  // Every group's anchors in one walk: the nearest anchor in the chain names the group.
  const anchors: TrustAnchor[] = [];
  const via = new Map<string, 'signing-certificate' | 'ca-reference'>();
  for (const g of groups) {
    const x = g.attestation.x509;
    if (g.attestation.type !== 'x509' || x === undefined) continue;
    for (const text of [x.signingCertificates?.primary?.certificate, x.signingCertificates?.secondary?.certificate]) {
      const cert = typeof text === 'string' && text !== '' ? parseOnce(text) : undefined;
      if (cert !== undefined) {
        anchors.push(anchor(g.enrollmentGroupId, cert));
        via.set(g.enrollmentGroupId, 'signing-certificate');
      }
    }
    for (const name of [x.caReferences?.primary, x.caReferences?.secondary]) {
      if (typeof name !== 'string' || name === '') continue;
      const pem = await cas.verifiedCaPem(name);
      const cert = pem === undefined ? undefined : parseOnce(pem);
      if (cert !== undefined) {
        anchors.push(anchor(g.enrollmentGroupId, cert));
        via.set(g.enrollmentGroupId, 'ca-reference');
      }
    }
  }
  const result = verifyChain(chain, anchors, now);
  if ('error' in result) return result;
  if (result.commonName.toLowerCase() !== registrationId.toLowerCase()) return refuse('bad_credentials', 'the certificate CN is not the registration id');
  const group = groups.find((g) => g.enrollmentGroupId === result.caName);
  if (group === undefined) return refuse('other', 'no group for the anchor');
  if (!enabled(group)) return refuse('disabled', `group ${group.enrollmentGroupId} is disabled`);
  return { kind: 'group', groupId: group.enrollmentGroupId, via: via.get(group.enrollmentGroupId) ?? 'signing-certificate', leafThumbprint };
}
