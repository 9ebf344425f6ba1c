/**
 * Reading Device and Module JSON from callers: one place that validates, normalizes and fills in
 * what the service owns (keys generated when empty, thumbprints in canonical form). Wire doc §6.2,
 * §6.3; Azure generates keys when it receives empty strings, and the SDK samples rely on that.
 */
import { HubError } from '../../core/errors.js';
import { isJsonObject, type JsonObject } from '../../core/json.js';
import type { Authentication, AuthType, DeviceStatus } from '../../core/types.js';
import { newSymmetricKey } from '../../auth/policies.js';

const AUTH_TYPES: ReadonlyMap<string, AuthType> = new Map([
  ['sas', 'sas'],
  ['selfsigned', 'selfSigned'],
  ['certificateauthority', 'certificateAuthority'],
  ['none', 'none'],
]);

function invalid(message: string): HubError {
  return new HubError('ArgumentInvalid', message);
}

function optionalString(o: JsonObject, field: string): string | null | undefined {
  const v = o[field];
  if (v === undefined) return undefined;
  if (v === null) return null;
  if (typeof v !== 'string') throw invalid(`${field} must be a string.`);
  return v;
}

export function parseStatus(v: unknown, fallback: DeviceStatus): DeviceStatus {
  if (v === undefined || v === null || v === '') return fallback;
  if (typeof v === 'string') {
    const s = v.toLowerCase();
    if (s === 'enabled' || s === 'disabled') return s;
  }
  throw invalid(`status must be 'enabled' or 'disabled'.`);
}

export function parseStatusReason(v: unknown): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw invalid('statusReason must be a string.');
  if (v.length > 128) throw invalid('statusReason is longer than 128 characters.');
  return v;
}

/** A symmetric key must be base64 of 16 to 64 bytes [DOCS: Symmetric key attestation]. */
function parseKey(v: string | null | undefined, field: string): string | null {
  if (v === undefined || v === null || v === '') return null;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(v) || v.length % 4 !== 0) throw invalid(`${field} is not valid base64.`);
  const n = Buffer.from(v, 'base64').length;
  if (n < 16 || n > 64) throw invalid(`${field} must decode to 16-64 bytes, not ${n}.`);
  return v;
}

/** SHA-1 (40 hex) or SHA-256 (64 hex) thumbprint, separators dropped, upper-case. */
export function normalizeThumbprint(v: string | null | undefined, field: string): string | null {
  if (v === undefined || v === null || v === '') return null;
  const hex = v.replace(/[\s:]/g, '').toUpperCase();
  if (!/^[0-9A-F]+$/.test(hex) || (hex.length !== 40 && hex.length !== 64)) {
    throw invalid(`${field} must be a SHA-1 (40 hex digits) or SHA-256 (64 hex digits) thumbprint.`);
  }
  return hex;
}

/**
 * `authentication` of a Device or Module. Missing → SAS with generated keys (the SDK's own
 * default). On create, empty keys are generated; on update (`existing` given) an empty key keeps
 * the current one, so only keys actually sent replace stored ones.
 */
export function parseAuthentication(raw: unknown, existing?: Authentication): Authentication {
  if (raw === undefined || raw === null) {
    if (existing !== undefined) return existing;
    return { type: 'sas', primaryKey: newSymmetricKey(), secondaryKey: newSymmetricKey(), primaryThumbprint: null, secondaryThumbprint: null };
  }
  if (!isJsonObject(raw)) throw invalid('authentication must be an object.');
  const sym = raw.symmetricKey;
  const x509 = raw.x509Thumbprint;
  if (sym !== undefined && sym !== null && !isJsonObject(sym)) throw invalid('authentication.symmetricKey must be an object.');
  if (x509 !== undefined && x509 !== null && !isJsonObject(x509)) throw invalid('authentication.x509Thumbprint must be an object.');
  const primaryKey = parseKey(isJsonObject(sym) ? optionalString(sym, 'primaryKey') : undefined, 'authentication.symmetricKey.primaryKey');
  const secondaryKey = parseKey(isJsonObject(sym) ? optionalString(sym, 'secondaryKey') : undefined, 'authentication.symmetricKey.secondaryKey');
  const primaryThumbprint = normalizeThumbprint(
    isJsonObject(x509) ? optionalString(x509, 'primaryThumbprint') : undefined,
    'authentication.x509Thumbprint.primaryThumbprint',
  );
  const secondaryThumbprint = normalizeThumbprint(
    isJsonObject(x509) ? optionalString(x509, 'secondaryThumbprint') : undefined,
    'authentication.x509Thumbprint.secondaryThumbprint',
  );

  let type: AuthType;
  if (raw.type === undefined || raw.type === null) {
    type = primaryThumbprint !== null || secondaryThumbprint !== null ? 'selfSigned' : 'sas';
  } else {
    const t = typeof raw.type === 'string' ? AUTH_TYPES.get(raw.type.toLowerCase()) : undefined;
    if (t === undefined) throw invalid(`authentication.type must be one of sas, selfSigned, certificateAuthority, none.`);
    type = t;
  }

  switch (type) {
    case 'sas':
      if (primaryThumbprint !== null || secondaryThumbprint !== null) {
        throw invalid('A device with sas authentication cannot have X.509 thumbprints.');
      }
      // The SDK sends empty keys on every update it did not get keys for (wire doc §6.2); that
      // must not silently re-key a device whose status was changed. Rotation is explicit.
      if (existing?.type === 'sas') {
        return {
          type,
          primaryKey: primaryKey ?? existing.primaryKey,
          secondaryKey: secondaryKey ?? existing.secondaryKey,
          primaryThumbprint: null,
          secondaryThumbprint: null,
        };
      }
      return {
        type,
        primaryKey: primaryKey ?? newSymmetricKey(),
        secondaryKey: secondaryKey ?? newSymmetricKey(),
        primaryThumbprint: null,
        secondaryThumbprint: null,
      };
    case 'selfSigned':
      if (primaryKey !== null || secondaryKey !== null) throw invalid('A device with selfSigned authentication cannot have symmetric keys.');
      if (primaryThumbprint === null) throw invalid('selfSigned authentication needs authentication.x509Thumbprint.primaryThumbprint.');
      return { type, primaryKey: null, secondaryKey: null, primaryThumbprint, secondaryThumbprint };
    case 'certificateAuthority':
    case 'none':
      if (primaryKey !== null || secondaryKey !== null || primaryThumbprint !== null || secondaryThumbprint !== null) {
        throw invalid(`A device with ${type} authentication cannot have keys or thumbprints.`);
      }
      return { type, primaryKey: null, secondaryKey: null, primaryThumbprint: null, secondaryThumbprint: null };
  }
}

export function renderAuthentication(a: Authentication): JsonObject {
  return {
    type: a.type,
    symmetricKey: { primaryKey: a.primaryKey, secondaryKey: a.secondaryKey },
    x509Thumbprint: { primaryThumbprint: a.primaryThumbprint, secondaryThumbprint: a.secondaryThumbprint },
  };
}

export function parseCapabilities(raw: unknown, fallback: boolean): boolean {
  if (raw === undefined || raw === null) return fallback;
  if (!isJsonObject(raw)) throw invalid('capabilities must be an object.');
  const v = raw.iotEdge;
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw invalid('capabilities.iotEdge must be a boolean.');
  return v;
}

export function parseScopes(raw: JsonObject, fallback: { deviceScope: string | null; parentScopes: string[] }) {
  const deviceScope = raw.deviceScope === undefined ? fallback.deviceScope : optionalString(raw, 'deviceScope') ?? null;
  let parentScopes = fallback.parentScopes;
  if (raw.parentScopes !== undefined && raw.parentScopes !== null) {
    if (!Array.isArray(raw.parentScopes) || raw.parentScopes.some((s) => typeof s !== 'string')) {
      throw invalid('parentScopes must be an array of strings.');
    }
    parentScopes = raw.parentScopes as string[];
  }
  return { deviceScope, parentScopes };
}
