/**
 * Keys, signature algorithms, serials and names for the device CA (src/pki/authority.ts): which
 * keys Gatehouse accepts and makes, and how a CA signs with a key it holds. Pure, no I/O.
 */
import { createPrivateKey, randomBytes, type KeyObject, type webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import type * as x509 from '@peculiar/x509';
import { HubError } from '../core/errors.js';

export type KeyAlg = 'p256' | 'p384' | 'rsa2048' | 'rsa3072' | 'rsa4096';
export const KEY_ALGS: readonly KeyAlg[] = ['p256', 'p384', 'rsa2048', 'rsa3072', 'rsa4096'];

const MAX_RSA_BITS = 8192;

export interface Signer {
  key: webcrypto.CryptoKey;
  signAlg: webcrypto.Algorithm | webcrypto.EcdsaParams;
}

export const GEN_PARAMS: Record<KeyAlg, webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams> = {
  p256: { name: 'ECDSA', namedCurve: 'P-256' },
  p384: { name: 'ECDSA', namedCurve: 'P-384' },
  rsa2048: { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
  rsa3072: { name: 'RSASSA-PKCS1-v1_5', modulusLength: 3072, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
  rsa4096: { name: 'RSASSA-PKCS1-v1_5', modulusLength: 4096, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
};

export function invalid(message: string): HubError {
  return new HubError('ArgumentInvalid', message);
}

/** RFC 5280 §4.1.2.2: positive, at most 20 octets; 16 random bytes with the top bit clear. */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) || 0x01;
  return bytes.toString('hex');
}

export function signAlgFor(alg: KeyAlg): webcrypto.Algorithm | webcrypto.EcdsaParams {
  if (alg === 'p256') return { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams;
  if (alg === 'p384') return { name: 'ECDSA', hash: 'SHA-384' } as webcrypto.EcdsaParams;
  return { name: 'RSASSA-PKCS1-v1_5' };
}

/** The KeyAlg of a key, or the precise reason it is refused. */
export function classify(key: KeyObject, whose: string): KeyAlg {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') {
    const bits = details?.modulusLength ?? 0;
    if (bits < 2048) throw invalid(`RSA keys below 2048 bits are refused (${whose} has ${bits})`);
    if (bits > MAX_RSA_BITS) throw invalid(`RSA keys above ${MAX_RSA_BITS} bits are refused (${whose} has ${bits})`);
    if (bits === 2048 || bits === 3072 || bits === 4096) return `rsa${bits}`;
    throw invalid(`RSA keys of ${bits} bits are refused; 2048, 3072 or 4096 only`);
  }
  if (key.asymmetricKeyType === 'ec') {
    const curve = details?.namedCurve ?? '?';
    if (curve === 'prime256v1') return 'p256';
    if (curve === 'secp384r1') return 'p384';
    throw invalid(`EC keys on curve ${curve} are refused (${whose}); P-256 or P-384 only`);
  }
  throw invalid(`${key.asymmetricKeyType ?? 'unknown'} keys are refused (${whose}); ECDSA P-256/P-384 or RSA 2048+ only`);
}

/** A WebCrypto signing key from a held PKCS#8 PEM, with the signature algorithm that goes with it. */
export async function signerFrom(keyPem: string): Promise<Signer> {
  const key = createPrivateKey(keyPem);
  const alg = classify(key, 'the CA key');
  const params = GEN_PARAMS[alg];
  const importAlg = params.name === 'ECDSA' ? { name: 'ECDSA', namedCurve: (params as webcrypto.EcKeyGenParams).namedCurve } : { name: params.name, hash: 'SHA-256' };
  const der = key.export({ type: 'pkcs8', format: 'der' });
  return { key: await crypto.subtle.importKey('pkcs8', der, importAlg, false, ['sign']), signAlg: signAlgFor(alg) };
}

/** RFC 5280 §4.2.1.6: IP literals as iPAddress, scheme://... as URI, everything else as dNSName. */
export function sanEntry(raw: string): x509.JsonGeneralName {
  const name = raw.trim();
  if (isIP(name) !== 0) return { type: 'ip', value: name };
  if (/^[a-z][a-z0-9+.-]*:\/\/\S+$/i.test(name)) return { type: 'url', value: name };
  if (/^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*$/i.test(name)) return { type: 'dns', value: name.toLowerCase() };
  throw invalid(`subjectAltName ${JSON.stringify(raw)} is not a DNS name, an IP address or a URI`);
}

