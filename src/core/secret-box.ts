import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * Authenticated encryption of secrets at rest (device keys, policy keys, CA keys) under the hub's
 * master key: AES-256-GCM, a fresh 96-bit IV per value, and the record it belongs to as associated
 * data, so a ciphertext copied into another row does not decrypt.
 *
 * Format: `v1.<base64(iv | tag | ciphertext)>`.
 */
export class SecretBox {
  readonly #key: Buffer;

  constructor(masterKey: Buffer) {
    if (masterKey.length !== 32) throw new Error('the master key must be 32 bytes');
    this.#key = Buffer.from(masterKey);
  }

  seal(plaintext: string, context: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return `v1.${Buffer.concat([iv, cipher.getAuthTag(), ct]).toString('base64')}`;
  }

  open(sealed: string, context: string): string {
    if (!sealed.startsWith('v1.')) throw new Error(`unknown secret format for ${context}`);
    const raw = Buffer.from(sealed.slice(3), 'base64');
    if (raw.length < 28) throw new Error(`truncated secret for ${context}`);
    const decipher = createDecipheriv('aes-256-gcm', this.#key, raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(raw.subarray(12, 28));
    try {
      return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
    } catch {
      throw new Error(`cannot decrypt the secret for ${context}: wrong master key or tampered data`);
    }
  }

  sealNullable(v: string | null, context: string): string | null {
    return v === null ? null : this.seal(v, context);
  }

  openNullable(v: string | null, context: string): string | null {
    return v === null ? null : this.open(v, context);
  }
}
