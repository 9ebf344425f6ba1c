/**
 * Failure reasons are values: each authenticator states the category of a refusal where it decides
 * it, and the access gate reports that code, never one read from the reason text (which carries
 * names the caller chose). In process, no hub: the device and service authenticators, SAS parsing,
 * DPS attestation and the gate, with identities named after the words a text matcher would trip on.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { DeviceAuthenticator, type DeviceAuthResult } from '../src/auth/device-authenticator.js';
import { generateSasToken, keyFingerprint, parseSasToken } from '../src/auth/sas.js';
import { ServiceAuthenticator } from '../src/auth/service-authenticator.js';
import type { AuthFailureCode } from '../src/core/auth-failure.js';
import { HubError, unauthorized } from '../src/core/errors.js';
import type { DeviceRecord, SharedAccessPolicy } from '../src/core/types.js';
import { attestX509 } from '../src/dps/x509-attestation.js';
import { RegistrationService } from '../src/dps/registration-service.js';
import { SecurityEvents, type AuthEvent } from '../src/core/security-events.js';
import { AccessGate } from '../src/access/gate.js';
import { DEFAULT_SETTINGS, type HubSettings } from '../src/core/settings.js';
import { makeSelfSigned } from './support/pki.js';
import { memoryCounters } from './support/counters.js';

const HOST = 'codes.example.com';
const KEY = randomBytes(32).toString('base64');
const WRONG = randomBytes(32).toString('base64');
const NOW = Date.UTC(2030, 0, 1);
const clock = { now: () => NOW };
const inSeconds = (s: number) => Math.floor(NOW / 1000) + s;
/** Every word the old text matcher looked for. */
const TRAPS = ['locked', 'ip-filter', 'revoked', 'expired', 'not-yet-valid', 'is-disabled', 'lacks-role', 'scope', 'unknown', 'malformed'];

function device(deviceId: string, status: 'enabled' | 'disabled' = 'enabled'): DeviceRecord {
  return {
    deviceId,
    generationId: 'g',
    etag: 'e',
    status,
    statusReason: null,
    statusUpdatedTime: '',
    auth: { type: 'sas', primaryKey: KEY, secondaryKey: KEY, primaryThumbprint: null, secondaryThumbprint: null },
    iotEdge: false,
    deviceScope: null,
    parentScopes: [],
    connectionState: 'Disconnected',
    connectionStateUpdatedTime: '',
    lastActivityTime: '',
    cloudToDeviceMessageCount: 0,
    origin: { kind: 'registry' },
  };
}

const DEVICES = new Map<string, DeviceRecord>([
  ['revoked-expired', device('revoked-expired')],
  ['off', device('off', 'disabled')],
]);
const POLICIES = new Map<string, SharedAccessPolicy>([
  ['locked-expired', { name: 'locked-expired', primaryKey: KEY, secondaryKey: KEY, rights: ['RegistryRead'], etag: 'e' }],
  ['connect', { name: 'connect', primaryKey: KEY, secondaryKey: KEY, rights: ['DeviceConnect'], etag: 'e' }],
]);
const lookups = {
  findDevice: async (id: string) => DEVICES.get(id),
  findModule: async () => undefined,
  findPolicy: async (name: string) => POLICIES.get(name),
};
const devices = new DeviceAuthenticator(lookups, () => HOST, clock, undefined);

function sas(deviceId: string, key: string, expiry = inSeconds(600), host = HOST): string {
  return generateSasToken({ resource: `${host}/devices/${deviceId}`, key, expiry });
}

async function deviceCode(deviceId: string, token: string): Promise<AuthFailureCode | 'ok'> {
  const r: DeviceAuthResult = await devices.authenticate({ deviceId, moduleId: null, sasToken: token, peerChain: undefined });
  return r.ok ? 'ok' : r.code;
}

async function thrownCode(p: Promise<unknown> | (() => unknown)): Promise<AuthFailureCode | undefined> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    assert.ok(err instanceof HubError, String(err));
    return err.authFailure;
  }
  return assert.fail('not refused');
}

describe('device authentication states its refusal codes', () => {
  it('an unknown device or a wrong key is bad_credentials, whatever the device id says', async () => {
    for (const word of TRAPS) assert.equal(await deviceCode(`probe-${word}`, sas(`probe-${word}`, WRONG)), 'bad_credentials', word);
    assert.equal(await deviceCode('revoked-expired', sas('revoked-expired', WRONG)), 'bad_credentials');
    assert.equal(await deviceCode('revoked-expired', sas('revoked-expired', KEY)), 'ok');
  });

  it('a device SAS session carries the fingerprint of the key it proved (for the recheck after a bus outage); a policy token none', async () => {
    const r = await devices.authenticate({ deviceId: 'revoked-expired', moduleId: null, sasToken: sas('revoked-expired', KEY), peerChain: undefined });
    assert.ok(r.ok);
    assert.equal(r.identity.keyFingerprint, keyFingerprint(KEY));
    assert.notEqual(keyFingerprint(KEY), keyFingerprint(WRONG));
    const viaPolicy = await devices.authenticate({
      deviceId: 'revoked-expired',
      moduleId: null,
      sasToken: generateSasToken({ resource: `${HOST}/devices/revoked-expired`, key: KEY, keyName: 'connect', expiry: inSeconds(600) }),
      peerChain: undefined,
    });
    assert.ok(viaPolicy.ok);
    assert.equal(viaPolicy.identity.keyFingerprint, undefined);
  });

  it('each refusal is the category its check decides', async () => {
    assert.equal(await deviceCode('revoked-expired', sas('revoked-expired', KEY, inSeconds(-5))), 'expired');
    assert.equal(await deviceCode('revoked-expired', sas('revoked-expired', KEY, NOW)), 'malformed', 'an expiry in milliseconds');
    assert.equal(await deviceCode('revoked-expired', sas('revoked-expired', KEY, inSeconds(600), 'other.example.com')), 'scope');
    assert.equal(await deviceCode('revoked-expired', sas('off', KEY)), 'scope');
    assert.equal(await deviceCode('revoked-expired', ''), 'malformed', 'no credentials');
    assert.equal(await deviceCode('locked-expired', generateSasToken({ resource: `${HOST}/devices/x`, key: KEY, keyName: 'locked-expired', expiry: inSeconds(600) })), 'scope');
    const policyToken = (id: string, policy: string) => generateSasToken({ resource: `${HOST}/devices/${id}`, key: KEY, keyName: policy, expiry: inSeconds(600) });
    assert.equal(await deviceCode('x', policyToken('x', 'locked-expired')), 'insufficient_rights');
    assert.equal(await deviceCode('nobody-revoked', policyToken('nobody-revoked', 'connect')), 'unknown_identity');
    const off = await devices.authenticate({ deviceId: 'off', moduleId: null, sasToken: sas('off', KEY), peerChain: undefined });
    assert.deepEqual(off.ok ? undefined : [off.outcome, off.code], ['forbidden', 'disabled']);
  });

  it('X.509: an unknown device is unknown_identity; a certificate outside its validity is expired or not_yet_valid', async () => {
    const leaf = (await makeSelfSigned('revoked-expired')).cert;
    const x509 = (deviceId: string, at: number) =>
      new DeviceAuthenticator(lookups, () => HOST, { now: () => at }, undefined).authenticate({ deviceId, moduleId: null, sasToken: undefined, peerChain: [leaf] });
    const now = Date.now();
    assert.deepEqual(await x509('probe-revoked', now).then((r) => (r.ok ? 'ok' : r.code)), 'unknown_identity');
    assert.deepEqual(await x509('revoked-expired', now).then((r) => (r.ok ? 'ok' : r.code)), 'bad_credentials', 'a SAS device presenting a certificate');
    assert.deepEqual(await x509('revoked-expired', Date.parse(leaf.validTo) + 1000).then((r) => (r.ok ? 'ok' : r.code)), 'expired');
    assert.deepEqual(await x509('revoked-expired', Date.parse(leaf.validFrom) - 1000).then((r) => (r.ok ? 'ok' : r.code)), 'not_yet_valid');
  });
});

describe('service authentication and SAS parsing state their refusal codes', () => {
  const service = new ServiceAuthenticator({ findPolicy: async (n) => POLICIES.get(n) }, () => HOST, clock);
  const token = (policy: string, key = KEY, resource = HOST, expiry = inSeconds(600)) => generateSasToken({ resource, key, keyName: policy, expiry });

  it('every unreadable token is malformed', async () => {
    for (const bad of [undefined, '', 'Bearer x', 'SharedAccessSignature sr=a&se=1', 'SharedAccessSignature sr=a&sig=AAAA&se=1', `SharedAccessSignature sr=a&sig=${'A'.repeat(43)}%3D&se=soon`]) {
      assert.equal(await thrownCode(() => parseSasToken(bad)), 'malformed', String(bad));
    }
  });

  it('unknown policy, wrong key, expired, another host, another path: each its own code, whatever the policy is called', async () => {
    assert.equal(await thrownCode(service.authenticate(token('revoked-disabled'), '/devices')), 'unknown_identity');
    assert.equal(await thrownCode(service.authenticate(token('locked-expired', WRONG), '/devices')), 'bad_credentials');
    assert.equal(await thrownCode(service.authenticate(token('locked-expired', KEY, HOST, inSeconds(-5)), '/devices')), 'expired');
    assert.equal(await thrownCode(service.authenticate(token('locked-expired', KEY, 'other.example.com'), '/devices')), 'scope');
    assert.equal(await thrownCode(service.authenticate(token('locked-expired', KEY, `${HOST}/devices/a`), '/devices/b')), 'scope');
    assert.equal(await thrownCode(service.authenticate(sas('x', KEY), '/devices')), 'scope', 'a device-scoped token');
  });
});

describe('DPS attestation states its refusal codes', () => {
  const scope = '0ne0000C0DE';
  let disabled = false;
  const groupKey = randomBytes(64).toString('base64');
  const enrollments = {
    findIndividual: async () => undefined,
    listGroups: async () => [{ enrollmentGroupId: 'grp', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: groupKey, secondaryKey: groupKey } } }],
    findRegistration: async () => undefined,
    putRegistrationState: async (s: never) => s,
  };
  const registrations = new RegistrationService(enrollments, {} as never, {} as never, clock, {
    idScope: async () => scope,
    allocator: {} as never,
    settings: async () => ({ disableSymmetricKeyAttestation: disabled }),
  });
  const dpsToken = (id: string, key: string, sc = scope) => generateSasToken({ resource: `${sc}/registrations/${id}`, key, keyName: 'registration', expiry: inSeconds(600) });

  it('no matching enrollment is bad_credentials; symmetric keys switched off is auth_method_disabled; another scope is scope', async () => {
    assert.equal(await thrownCode(registrations.attestSymmetricKey('expired-revoked-disabled', dpsToken('expired-revoked-disabled', groupKey))), 'bad_credentials');
    assert.equal(await thrownCode(registrations.attestSymmetricKey('x', dpsToken('x', groupKey, '0ne00000000'))), 'scope');
    assert.equal(await thrownCode(registrations.attestSymmetricKey('bad id!', dpsToken('x', groupKey))), 'malformed');
    disabled = true;
    try {
      assert.equal(await thrownCode(registrations.attestSymmetricKey('x', dpsToken('x', groupKey))), 'auth_method_disabled');
    } finally {
      disabled = false;
    }
  });

  it("X.509: another certificate for an individual enrollment is bad_credentials; an expired one is expired", async () => {
    const enrolled = await makeSelfSigned('dev-x');
    const impostor = await makeSelfSigned('dev-x');
    const individual = { attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: enrolled.certPem } } } } };
    const cas = { verifiedCaPem: async () => undefined };
    const now = Date.now();
    assert.deepEqual(await attestX509('dev-x', [impostor.cert], individual, [], cas, now), { error: "the certificate is not the enrollment's client certificate", code: 'bad_credentials' });
    const late = await attestX509('dev-x', [enrolled.cert], individual, [], cas, Date.parse(enrolled.cert.validTo) + 1000);
    assert.equal('code' in late ? late.code : 'accepted', 'expired');
    const stranger = await attestX509('dev-x', [impostor.cert], undefined, [], cas, now);
    assert.equal('code' in stranger ? stranger.code : 'accepted', 'bad_credentials');
  });
});

describe('the access gate reports the code it was given', () => {
  const settings: HubSettings = { ...DEFAULT_SETTINGS, lockout: { ...DEFAULT_SETTINGS.lockout, maxFailures: 2, maxFailuresPerAddress: 3 }, version: 1, etag: 'e', updatedAt: '', updatedBy: 'hub' };
  async function gate(): Promise<{ gate: AccessGate; events: AuthEvent[] }> {
    const events = new SecurityEvents();
    const seen: AuthEvent[] = [];
    events.on((e) => {
      if (e.type === 'auth') seen.push(e);
    });
    const g = new AccessGate(settings, { devices, service: {} as never, operators: {} as never, connections: {} as never, events, clock, log: () => undefined, counters: await memoryCounters() });
    return { gate: g, events: seen };
  }
  const peer = { remote: '192.0.2.7', protocol: 'dps-https' as const };

  it('guarded: the thrower decides the code, not the words of its reason; an uncoded 401 is other', async () => {
    const { gate: g, events } = await gate();
    const attempt = { subject: 'registration' as const, identity: 'r1', method: 'symmetricKey' };
    await assert.rejects(g.guarded(attempt, peer, async () => Promise.reject(unauthorized('bad_credentials', 'certificate revoked, expired, locked, disabled by hub settings'))));
    await assert.rejects(g.guarded(attempt, peer, async () => Promise.reject(new HubError('IotHubUnauthorizedAccess', 'Unauthorized', { cause: 'signature expired' }))));
    assert.deepEqual(
      events.map((e) => e.reasonCode),
      ['bad_credentials', 'other'],
    );
  });

  it('refusedBeforeAuth: recorded with its code and bounded identity, never counted toward lockout', async () => {
    const { gate: g, events } = await gate();
    for (let i = 0; i < 10; i++) {
      g.refusedBeforeAuth({ subject: 'device', identity: `d1${'x'.repeat(400)}`, method: 'sas', failure: { code: 'scope', reason: 'username names another hub (old.example.com)' } }, { remote: '192.0.2.8', protocol: 'mqtt' });
    }
    assert.equal(events.length, 10);
    assert.deepEqual({ ...events[0], at: 0 }, {
      type: 'auth',
      at: 0,
      subject: 'device',
      identity: `d1${'x'.repeat(258)}`,
      outcome: 'failure',
      reason: 'username names another hub (old.example.com)',
      reasonCode: 'scope',
      remote: '192.0.2.8',
      protocol: 'mqtt',
      method: 'sas',
    });
    assert.deepEqual(g.lockout.check({ address: '192.0.2.8', identity: `device:d1${'x'.repeat(400)}` }), { locked: false });
    assert.deepEqual(g.lockout.check({ address: '192.0.2.8' }), { locked: false });
  });

  it('device authentication through the gate: the device id does not pick the code; a lock is locked_out', async () => {
    const { gate: g, events } = await gate();
    const at = { remote: '192.0.2.9', protocol: 'mqtt' as const };
    for (let i = 0; i < 3; i++) await g.authenticate({ deviceId: 'probe-revoked', moduleId: null, sasToken: sas('probe-revoked', WRONG), peerChain: undefined }, at);
    assert.deepEqual(
      events.map((e) => e.reasonCode),
      ['bad_credentials', 'bad_credentials', 'locked_out'],
    );
  });
});
