/**
 * Is this certificate one Gatehouse issued and revoked? Asked at connect, provisioning and EST
 * renewal. A revocation is final, so positive answers are cached, and the cache is filled by
 * revocations as they happen on any node (`certificate.revoked`).
 *
 * Negative answers are cached too (issue 19, item 4: an X.509 connect read the store each time),
 * which is safe because the positive side is checked first and every revocation reaches it over
 * the bus: a serial revoked anywhere is refused here from the moment its notification arrives.
 * A read that a revocation overtook is not kept; the negatives go when the bus may have lost
 * notifications (`bus.resync`), after `ttlMs`, and the oldest first beyond `maxNegative`.
 */
import type { X509Certificate } from 'node:crypto';
import { SUBJECTS, type HubBus } from '../bus/subjects.js';
import type { AuthorityStore } from '../store/authority-ports.js';
import { normalizeSerial } from './crl.js';

export interface RevocationCacheOptions {
  maxNegative: number;
  ttlMs: number;
  now: () => number;
}

const DEFAULTS: RevocationCacheOptions = { maxNegative: 100_000, ttlMs: 60_000, now: Date.now };

export class RevocationCheck {
  /** serial -> SHA-256 thumbprint (upper-case hex) of our revoked certificate with that serial. */
  readonly #revoked = new Map<string, string>();
  /** serial -> when the store said it is not a revoked certificate of ours. */
  readonly #notRevoked = new Map<string, number>();
  #epoch = 0;
  readonly #opts: RevocationCacheOptions;

  constructor(
    private readonly store: Pick<AuthorityStore, 'getIssued'>,
    bus: HubBus,
    opts: Partial<RevocationCacheOptions> = {},
  ) {
    this.#opts = { ...DEFAULTS, ...opts };
    bus.subscribe(SUBJECTS.certificatesRevoked, (r) => {
      this.#epoch++;
      for (const c of r.certificates) {
        const serial = normalizeSerial(c.serial);
        this.#revoked.set(serial, c.thumbprintSha256);
        this.#notRevoked.delete(serial);
      }
    });
    bus.subscribe(SUBJECTS.busResync, () => {
      this.#epoch++;
      this.#notRevoked.clear();
    });
  }

  async isRevoked(leaf: X509Certificate): Promise<boolean> {
    const serial = normalizeSerial(leaf.serialNumber);
    // Only our own certificate: a foreign one with the same serial is not ours to refuse.
    const known = this.#revoked.get(serial);
    if (known !== undefined) return known === leaf.fingerprint256.replace(/:/g, '').toUpperCase();
    const checked = this.#notRevoked.get(serial);
    if (checked !== undefined && this.#opts.now() - checked < this.#opts.ttlMs) return false;
    const epoch = this.#epoch;
    const r = await this.store.getIssued(serial);
    if (r === undefined || r.revokedAt === null) {
      if (epoch === this.#epoch) this.#rememberNotRevoked(serial);
      return false;
    }
    this.#revoked.set(serial, r.thumbprintSha256);
    return r.thumbprintSha256 === leaf.fingerprint256.replace(/:/g, '').toUpperCase();
  }

  #rememberNotRevoked(serial: string): void {
    this.#notRevoked.delete(serial);
    this.#notRevoked.set(serial, this.#opts.now());
    while (this.#notRevoked.size > this.#opts.maxNegative) {
      const oldest = this.#notRevoked.keys().next();
      if (oldest.done) break;
      this.#notRevoked.delete(oldest.value);
    }
  }
}
