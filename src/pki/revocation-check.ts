/**
 * Is this certificate one Gatehouse issued and revoked? Asked at connect, provisioning and EST
 * renewal. A revocation is final, so positive answers are cached, and the cache is filled by
 * revocations as they happen on any node (`certificate.revoked`).
 */
import type { X509Certificate } from 'node:crypto';
import { SUBJECTS, type HubBus } from '../bus/subjects.js';
import type { AuthorityStore } from '../store/authority-ports.js';
import { normalizeSerial } from './crl.js';

export class RevocationCheck {
  /** serial -> SHA-256 thumbprint (upper-case hex) of our revoked certificate with that serial. */
  readonly #revoked = new Map<string, string>();

  constructor(
    private readonly store: Pick<AuthorityStore, 'getIssued'>,
    bus: HubBus,
  ) {
    bus.subscribe(SUBJECTS.certificatesRevoked, (r) => {
      for (const c of r.certificates) this.#revoked.set(normalizeSerial(c.serial), c.thumbprintSha256);
    });
  }

  async isRevoked(leaf: X509Certificate): Promise<boolean> {
    const serial = normalizeSerial(leaf.serialNumber);
    const thumbprint = leaf.fingerprint256.replace(/:/g, '').toUpperCase();
    // Only our own certificate: a foreign one with the same serial is not ours to refuse.
    const known = this.#revoked.get(serial);
    if (known !== undefined) return known === thumbprint;
    const r = await this.store.getIssued(serial);
    if (r === undefined || r.revokedAt === null) return false;
    this.#revoked.set(serial, r.thumbprintSha256);
    return r.thumbprintSha256 === thumbprint;
  }
}
