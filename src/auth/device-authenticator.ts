/**
 * Who is this device? Device-side authentication shared by MQTT, MQTT over WebSocket and device
 * HTTPS (wire doc §2, §3.1, §7.1):
 *
 * - SAS signed with the device's key, the module's key, or a policy key with DeviceConnect;
 *   the token's `sr` must name this hub and cover the identity; it must not have expired.
 * - X.509 self-signed: the leaf's SHA-1 or SHA-256 thumbprint equals the primary or secondary.
 * - X.509 CA-signed: the chain leads to a registered, verified CA; CN = device id (or
 *   `deviceId/moduleId`). A device provisioned through an enrollment group chains to a CA that
 *   group names (issue 14): a certificate from another line's CA with the same CN is refused. A
 *   device an operator made accepts any verified CA of the hub, as in Azure.
 *
 * Order matters for what a failure reveals: credentials are checked before the identity's status,
 * so only a holder of valid credentials learns that a device is disabled (`forbidden`); anything
 * else is `unauthorized`, whether the device exists or not. Each refusal carries its category
 * (`code`) beside the reason, decided here: the reason names the device, which the caller chose.
 */
import type { AuthFailureCode } from '../core/auth-failure.js';
import { outsideValidity, type ChainRefusal } from '../pki/device-chain.js';
import { createHash, type X509Certificate } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import type { DeviceOrigin, DeviceRecord, ModuleRecord, SharedAccessPolicy } from '../core/types.js';
import { keyFingerprint, matchingKey, parseSasToken, pathCovers, resourcePathForHost, signatureMatches } from './sas.js';

export type DeviceAuthMethod = 'sas' | 'policy-sas' | 'x509-thumbprint' | 'x509-ca';

export interface DeviceIdentity {
  deviceId: string;
  moduleId: string | null;
  method: DeviceAuthMethod;
  generationId: string;
  /** When the credential stops being valid (SAS `se`, certificate notAfter), ms since epoch. */
  expiresAt: number | undefined;
  /** The shared access policy that signed the token (method `policy-sas`). */
  policyName?: string;
  /** For `iothub-connection-auth-method` (wire doc §3.3). */
  authMethodStamp: string;
  /** A fingerprint of the device or module key a SAS token proved (keyFingerprint), so a later recheck sees a re-key. */
  keyFingerprint?: string;
}

export type DeviceAuthResult =
  | { ok: true; identity: DeviceIdentity }
  /** Valid credentials of a disabled identity: only their holder learns it (MQTT CONNACK 5). */
  | { ok: false; outcome: 'forbidden'; code: 'disabled'; reason: string }
  | { ok: false; outcome: 'unauthorized'; code: AuthFailureCode; reason: string };

/** What authentication reads of a device and a module (a cache keeps no more: src/hub/identity-cache.ts). */
export type AuthDevice = Pick<DeviceRecord, 'deviceId' | 'generationId' | 'status' | 'auth' | 'origin'>;
export type AuthModule = Pick<ModuleRecord, 'deviceId' | 'moduleId' | 'generationId' | 'auth'>;

export interface DeviceLookups {
  findDevice(deviceId: string): Promise<AuthDevice | undefined>;
  findModule(deviceId: string, moduleId: string): Promise<AuthModule | undefined>;
  findPolicy(name: string): Promise<SharedAccessPolicy | undefined>;
}

/** Chain verification against the registered CAs (src/pki/ca-certificates.ts), or only the named ones. */
export interface DeviceChainVerifier {
  verifyDeviceChain(chain: X509Certificate[], onlyCas?: readonly string[]): Promise<{ commonName: string; caName: string } | ChainRefusal>;
}

/** The CAs a device's enrollment names for its chain (src/dps/device-ownership.ts). */
export interface EnrollmentCas {
  /** The CA names, or undefined when the device is not held to an enrollment's CAs. */
  casFor(origin: DeviceOrigin): Promise<readonly string[] | undefined>;
}

/** Certificates Gatehouse issued and revoked (src/pki/authority.ts); refused at connect. */
export interface RevocationCheck {
  isRevoked(leaf: X509Certificate): Promise<boolean>;
}

export interface DeviceCredentials {
  deviceId: string;
  moduleId: string | null;
  /** SAS token, when given. */
  sasToken: string | undefined;
  /** The TLS peer chain, leaf first, when a client certificate was presented. */
  peerChain: X509Certificate[] | undefined;
}

const DECOY_KEY = Buffer.alloc(32, 11).toString('base64');

function deny(code: AuthFailureCode, reason: string): DeviceAuthResult {
  return { ok: false, outcome: 'unauthorized', code, reason };
}

function disabled(deviceId: string): DeviceAuthResult {
  return { ok: false, outcome: 'forbidden', code: 'disabled', reason: `device ${deviceId} is disabled` };
}

/** The `iothub-connection-auth-method` values, serialized once (not on every connect). */
const STAMPS = new Map<string, string>();
function stamp(scope: 'device' | 'module' | 'hub', type: 'sas' | 'x509' | 'symkey'): string {
  const key = `${scope} ${type}`;
  let s = STAMPS.get(key);
  if (s === undefined) {
    s = JSON.stringify({ scope, type, issuer: 'iothub' });
    STAMPS.set(key, s);
  }
  return s;
}

const thumbprintCache = new WeakMap<X509Certificate, { sha1: string; sha256: string }>();

export function thumbprintsOf(cert: X509Certificate): { sha1: string; sha256: string } {
  let t = thumbprintCache.get(cert);
  if (t === undefined) {
    t = {
      sha1: createHash('sha1').update(cert.raw).digest('hex').toUpperCase(),
      sha256: createHash('sha256').update(cert.raw).digest('hex').toUpperCase(),
    };
    thumbprintCache.set(cert, t);
  }
  return t;
}

export class DeviceAuthenticator {
  constructor(
    private readonly lookups: DeviceLookups,
    private readonly hostname: () => string,
    private readonly clock: Clock,
    private readonly chains: DeviceChainVerifier | undefined,
    private readonly revocation?: RevocationCheck,
    private readonly enrollmentCas?: EnrollmentCas,
  ) {}

  async authenticate(c: DeviceCredentials): Promise<DeviceAuthResult> {
    if (c.sasToken !== undefined && c.sasToken !== '') return this.#sas(c);
    const leaf = c.peerChain?.[0];
    if (leaf !== undefined && c.peerChain !== undefined) return this.#x509(c, leaf, c.peerChain);
    return deny('malformed', 'no credentials');
  }

  async #identityRecord(c: DeviceCredentials): Promise<{ device?: AuthDevice; module?: AuthModule }> {
    const device = await this.lookups.findDevice(c.deviceId);
    if (device === undefined || c.moduleId === null) return device === undefined ? {} : { device };
    const module = await this.lookups.findModule(c.deviceId, c.moduleId);
    return module === undefined ? { device } : { device, module };
  }

  async #sas(c: DeviceCredentials): Promise<DeviceAuthResult> {
    let token;
    try {
      token = parseSasToken(c.sasToken);
    } catch (err) {
      // parseSasToken refuses only what it cannot read.
      return deny('malformed', String((err as Error).cause ?? 'malformed SAS token'));
    }
    const scope = resourcePathForHost(token.resource, this.hostname());
    if (scope === undefined) return deny('scope', 'SAS token for another host');
    const target = c.moduleId === null ? `/devices/${c.deviceId}` : `/devices/${c.deviceId}/modules/${c.moduleId}`;
    if (!pathCovers(scope, target)) return deny('scope', `SAS scope ${scope} does not cover ${target}`);
    const { device, module } = await this.#identityRecord(c);

    let method: DeviceAuthMethod;
    let keys: Array<string | null>;
    let authStamp: string;
    let policyName: string | undefined;
    let fingerprint: string | undefined;
    if (token.keyName !== undefined) {
      const policy = await this.lookups.findPolicy(token.keyName);
      keys = policy === undefined ? [DECOY_KEY] : [policy.primaryKey, policy.secondaryKey];
      if (!signatureMatches(token, keys) || policy === undefined) return deny('bad_credentials', `bad signature or unknown policy ${token.keyName}`);
      if (!policy.rights.includes('DeviceConnect')) return deny('insufficient_rights', `policy ${policy.name} lacks DeviceConnect`);
      method = 'policy-sas';
      policyName = policy.name;
      authStamp = stamp('hub', 'sas');
    } else {
      const identity = c.moduleId === null ? device : module;
      // A token for the device itself cannot open a module session and vice versa: the scope
      // check above already tied the token to the identity, the key check ties it to its key.
      keys = identity === undefined || identity.auth.type !== 'sas' ? [DECOY_KEY] : [identity.auth.primaryKey, identity.auth.secondaryKey];
      const key = matchingKey(token, keys);
      if (key === undefined || identity === undefined || identity.auth.type !== 'sas') {
        return deny('bad_credentials', `bad signature, unknown identity or not a SAS identity: ${target}`);
      }
      fingerprint = keyFingerprint(key);
      method = 'sas';
      authStamp = stamp(c.moduleId === null ? 'device' : 'module', 'sas');
    }
    if (token.expiry * 1000 <= this.clock.now()) return deny('expired', `expired SAS token for ${target}`);
    // Only a policy token (its signature checked above) gets here for a device or module that does not exist.
    if (device === undefined) return deny('unknown_identity', `unknown device ${c.deviceId}`);
    if (c.moduleId !== null && module === undefined) return deny('unknown_identity', `unknown module ${target}`);
    if (device.status !== 'enabled') return disabled(device.deviceId);
    return {
      ok: true,
      identity: {
        deviceId: c.deviceId,
        moduleId: c.moduleId,
        method,
        generationId: (module ?? device).generationId,
        expiresAt: token.expiry * 1000,
        authMethodStamp: authStamp,
        ...(policyName === undefined ? {} : { policyName }),
        ...(fingerprint === undefined ? {} : { keyFingerprint: fingerprint }),
      },
    };
  }

  async #x509(c: DeviceCredentials, leaf: X509Certificate, chain: X509Certificate[]): Promise<DeviceAuthResult> {
    const now = this.clock.now();
    const notAfter = Date.parse(leaf.validTo);
    const outside = outsideValidity(leaf, now, 'the client certificate');
    if (outside !== undefined) return deny(outside.code, outside.error);
    const { device, module } = await this.#identityRecord(c);
    const identity = c.moduleId === null ? device : module;
    const target = c.moduleId === null ? c.deviceId : `${c.deviceId}/${c.moduleId}`;
    if (identity === undefined || device === undefined) return deny('unknown_identity', `unknown identity ${target}`);

    let method: DeviceAuthMethod;
    if (identity.auth.type === 'selfSigned') {
      const t = thumbprintsOf(leaf);
      const allowed = [identity.auth.primaryThumbprint, identity.auth.secondaryThumbprint].filter((x): x is string => x !== null);
      if (!allowed.some((a) => a === (a.length === 40 ? t.sha1 : t.sha256))) return deny('bad_credentials', `thumbprint mismatch for ${target}`);
      method = 'x509-thumbprint';
    } else if (identity.auth.type === 'certificateAuthority') {
      if (this.chains === undefined) return deny('other', 'no CA certificates');
      const onlyCas = c.moduleId === null ? await this.enrollmentCas?.casFor(device.origin) : undefined;
      const r = await this.chains.verifyDeviceChain(chain, onlyCas);
      if ('error' in r) {
        const held = onlyCas === undefined ? '' : ` (held to the CAs of its enrollment: ${onlyCas.join(', ') || 'none'})`;
        return deny(r.code, `chain for ${target}${held}: ${r.error}`);
      }
      if (r.commonName !== target) return deny('bad_credentials', `certificate CN '${r.commonName}' is not ${target}`);
      method = 'x509-ca';
    } else {
      return deny('bad_credentials', `${target} does not authenticate with X.509`);
    }
    if (this.revocation !== undefined && (await this.revocation.isRevoked(leaf))) return deny('revoked', `certificate ${leaf.serialNumber} of ${target} is revoked`);
    if (device.status !== 'enabled') return disabled(device.deviceId);
    return {
      ok: true,
      identity: {
        deviceId: c.deviceId,
        moduleId: c.moduleId,
        method,
        generationId: identity.generationId,
        expiresAt: notAfter,
        authMethodStamp: stamp(c.moduleId === null ? 'device' : 'module', 'x509'),
      },
    };
  }
}
