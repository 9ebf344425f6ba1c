/**
 * `gatehouse audit` on two real hubs: a deliberately weak one, seeded with each weakness the
 * posture audit knows, reports every one of them and exits 2; a hardened one (operators instead
 * of policies, no SAS, TLS 1.2, a narrow IP filter, X.509 devices from its own CA) has no high
 * finding and exits 0. The same findings are served at GET /posture. Weaknesses the REST API
 * refuses to create (a weak CA key) are checked on the assessment directly.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSasToken } from '../src/auth/sas.js';
import { assessPosture, type PostureInput } from '../src/posture/posture.js';
import { DEFAULT_SETTINGS } from '../src/core/settings.js';
import { cli, removeDir, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';
import { makeRoot, makeSelfSigned, thumbprints } from './support/pki.js';
import { connectPacket, connectRaw } from './support/raw-mqtt.js';
import { policyKey, restClient, type Rest } from './support/rest.js';

const WEAK = '127.0.53.1';
const HARD = '127.0.53.2';

function csr(cn: string): string {
  const dir = tempDir('gh-posture-csr');
  const r = spawnSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${cn}`, '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'csr.pem')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const pem = readFileSync(join(dir, 'csr.pem'), 'utf8');
  removeDir(dir);
  return pem;
}

async function ok(r: Promise<{ status: number; body: unknown }>, ...statuses: number[]): Promise<any> {
  const res = await r;
  assert.ok((statuses.length === 0 ? [200, 201, 204] : statuses).includes(res.status), `${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

function audit(hub: HubProcess): { status: number | null; json: { findings: Array<{ id: string; severity: string; fix: string }>; summary: { high: number } } } {
  const r = cli(['audit', '--data-dir', hub.dataDir, '-o', 'json']);
  assert.ok(r.status === 0 || r.status === 2, r.stderr);
  return { status: r.status, json: JSON.parse(r.stdout) };
}

describe('a deliberately weak hub', () => {
  let hub: HubProcess;
  let rest: Rest;
  let ca: string;

  before(async () => {
    hub = await startHubProcess({ address: WEAK });
    ca = readFileSync(hub.caFile, 'utf8');
    rest = restClient(WEAK, ca, policyKey(hub.dataDir));
    // Settings: legacy TLS, no audit log, no lockout, accept-all IP filter with a /8 rule.
    await ok(rest('PATCH', '/settings?allowLegacyTls=true', { minTlsVersion: '1.0', auditLog: { enabled: false }, lockout: { enabled: false }, ipFilter: { defaultAction: 'Accept', rules: [{ filterName: 'corp', action: 'Accept', ipMask: '10.0.0.0/8' }] } }));
    // Two devices sharing one key; one device with a 128-bit key.
    const shared = Buffer.alloc(32, 7).toString('base64');
    for (const id of ['twin-a', 'twin-b']) await ok(rest('PUT', `/devices/${id}`, { deviceId: id, authentication: { type: 'sas', symmetricKey: { primaryKey: shared, secondaryKey: Buffer.alloc(32, id === 'twin-a' ? 1 : 2).toString('base64') } } }));
    await ok(rest('PUT', '/devices/short-key', { deviceId: 'short-key', authentication: { type: 'sas', symmetricKey: { primaryKey: Buffer.alloc(16, 3).toString('base64'), secondaryKey: Buffer.alloc(16, 4).toString('base64') } } }));
    // Two devices registered with the same certificate.
    const cert = await makeSelfSigned('cloned');
    for (const id of ['clone-1', 'clone-2']) await ok(rest('PUT', `/devices/${id}`, { deviceId: id, authentication: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: thumbprints(cert.certPem).sha256 } } }));
    // A Gatehouse CA: one certificate revoked but still registered, one expiring in 10 days.
    await ok(rest('POST', '/certificateAuthorities', { name: 'weak-ca' }));
    const revoked = await ok(rest('POST', '/certificateAuthorities/weak-ca/sign', { csr: csr('revoked-dev'), deviceId: 'revoked-dev' }));
    await ok(rest('PUT', '/devices/revoked-dev', { deviceId: 'revoked-dev', authentication: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: revoked.thumbprint } } }));
    await ok(rest('POST', '/certificateAuthorities/weak-ca/revoke', { serial: revoked.serial, reason: 'keyCompromise' }));
    await ok(rest('POST', '/certificateAuthorities/weak-ca/sign', { csr: csr('soon-dev'), deviceId: 'soon-dev', validityDays: 10 }));
    // A symmetric-key enrollment group.
    const dps = restClient(WEAK, ca, policyKey(hub.dataDir, 'provisioningserviceowner'), 'provisioningserviceowner');
    await ok(dps('PUT', '/enrollmentGroups/sym-group', { enrollmentGroupId: 'sym-group', attestation: { type: 'symmetricKey' } }));
    // A device connecting with a token signed by the `device` policy: a fleet-wide secret in use.
    const token = generateSasToken({ resource: `${WEAK}/devices/twin-a`, key: policyKey(hub.dataDir, 'device'), keyName: 'device', expiry: Math.floor(Date.now() / 1000) + 600 });
    const c = await connectRaw(WEAK, ca, connectPacket(WEAK, 'twin-a', token));
    assert.equal(c.code, 0);
    c.client.end();
  });

  after(async () => {
    if (hub.proc.exitCode === null) await hub.stop();
    removeDir(hub.dataDir);
  });

  it('GET /posture reports the weaknesses while the hub runs', async () => {
    const body = await ok(rest('GET', '/posture'));
    const ids = new Set((body.findings as Array<{ id: string }>).map((f) => f.id));
    for (const id of ['tls.minimum', 'audit.disabled', 'devices.shared-key', 'policies.device-connect-used']) assert.ok(ids.has(id), `missing ${id}`);
    assert.ok(body.summary.high >= 4);
  });

  it('gatehouse audit reports each seeded weakness with a fix and exits 2', async () => {
    assert.equal(await hub.stop(), 0);
    const { status, json } = audit(hub);
    assert.equal(status, 2);
    const byId = new Map(json.findings.map((f) => [f.id, f]));
    const expected: Record<string, string> = {
      'tls.minimum': 'high',
      'audit.disabled': 'high',
      'devices.shared-key': 'high',
      'devices.shared-certificate': 'high',
      'certificates.revoked-registered': 'high',
      'dps.symmetric-key-group': 'high',
      'policies.device-connect-used': 'high',
      'lockout.disabled': 'medium',
      'auth.local': 'medium',
      'auth.device-sas': 'medium',
      'network.ip-filter-default': 'medium',
      'network.ip-filter-broad': 'medium',
      'devices.weak-key': 'medium',
      'certificates.expiring': 'low',
      'devices.never-seen': 'low',
      'auth.module-sas': 'low',
    };
    for (const [id, severity] of Object.entries(expected)) {
      const f = byId.get(id);
      assert.ok(f !== undefined, `missing finding ${id}`);
      assert.equal(f.severity, severity, id);
      assert.ok(f.fix.length > 10, `${id} has a fix`);
    }
    assert.match(JSON.stringify(byId.get('devices.shared-key')), /twin-a.*twin-b/);
    assert.match(JSON.stringify(byId.get('certificates.revoked-registered')), /revoked-dev/);
    const table = cli(['audit', '--data-dir', hub.dataDir]);
    assert.equal(table.status, 2);
    assert.match(table.stdout, /HIGH\s+audit\.disabled/);
  });
});

describe('a hardened hub', () => {
  let hub: HubProcess;

  before(async () => {
    hub = await startHubProcess({ address: HARD });
    const ca = readFileSync(hub.caFile, 'utf8');
    const rest = restClient(HARD, ca, policyKey(hub.dataDir));
    // An X.509 device from a registered, verified CA is the fleet; operators replace policies.
    await ok(rest('PUT', '/operators/admin', {}));
    await ok(rest('POST', '/roleAssignments', { assignee: 'admin', role: 'Owner' }));
    await ok(rest('PUT', '/operators/pipeline', {}));
    await ok(rest('POST', '/roleAssignments', { assignee: 'pipeline', role: 'IoT Hub Registry Contributor' }));
    await ok(rest('POST', '/certificateAuthorities', { name: 'fleet-ca' }));
    const issued = await ok(rest('POST', '/certificateAuthorities/fleet-ca/sign', { csr: csr('gate-1'), deviceId: 'gate-1' }));
    await ok(rest('PUT', '/devices/gate-1', { deviceId: 'gate-1', authentication: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: issued.thumbprint } } }));
    await ok(
      rest('PATCH', '/settings', {
        disableLocalAuth: true,
        disableDeviceSAS: true,
        disableModuleSAS: true,
        minTlsVersion: '1.2',
        ipFilter: {
          defaultAction: 'Reject',
          rules: [
            { filterName: 'operators', action: 'Accept', ipMask: '127.0.0.1/32' },
            { filterName: 'plant', action: 'Accept', ipMask: '127.0.53.0/24' },
          ],
        },
      }),
    );
    assert.equal(await hub.stop(), 0);
  });

  after(() => removeDir(hub.dataDir));

  it('gatehouse audit finds nothing high and exits 0', () => {
    const { status, json } = audit(hub);
    assert.equal(status, 0, JSON.stringify(json.findings.filter((f) => f.severity === 'high')));
    assert.equal(json.summary.high, 0);
    const ids = json.findings.map((f) => f.id);
    for (const gone of ['auth.local', 'auth.device-sas', 'network.ip-filter-default', 'tls.minimum']) assert.ok(!ids.includes(gone), `${gone} should be fixed`);
  });
});

describe('assessment of what the API refuses to create', () => {
  it('flags a weak CA key, an expired CA and many owners', async () => {
    const weak = await makeRoot('legacy-ca', { alg: 'rsa1024' });
    const base: PostureInput = {
      now: Date.now(),
      expiringDays: 30,
      settings: { ...DEFAULT_SETTINGS, version: 1, etag: 'e', updatedAt: '', updatedBy: 'test' },
      policies: [],
      devices: [],
      groups: [],
      cas: [
        { name: 'legacy-ca', certificatePem: weak.certPem, subject: 'CN=legacy-ca', thumbprint: '', thumbprintSha256: '', expiry: new Date(Date.now() - 86_400_000).toISOString(), isVerified: true, verificationCode: null, created: '', updated: '', etag: '', holdsKey: false },
      ],
      issued: [],
      operators: [],
      assignments: ['a', 'b', 'c', 'd'].map((p) => ({ id: p, principalId: p, roleDefinitionName: 'Owner' as const, scope: '/', createdAt: '', createdBy: '', etag: '' })),
      usage: undefined,
    };
    const ids = assessPosture(base).map((f) => `${f.severity}:${f.id}`);
    assert.ok(ids.includes('high:ca.weak-key'), ids.join());
    assert.ok(ids.includes('high:ca.expired'), ids.join());
    assert.ok(ids.includes('medium:roles.many-owners'), ids.join());
  });
});

describe('telemetry durability in the posture audit', () => {
  const input = (eventLog: PostureInput['eventLog']): PostureInput => ({
    now: Date.now(),
    expiringDays: 30,
    settings: { ...DEFAULT_SETTINGS, version: 1, etag: 'e', updatedAt: '', updatedBy: 'test' },
    policies: [],
    devices: [],
    groups: [],
    cas: [],
    issued: [],
    operators: [],
    assignments: [],
    usage: undefined,
    eventLog,
  });
  const durability = (eventLog: PostureInput['eventLog']) => assessPosture(input(eventLog)).filter((f) => f.id === 'telemetry.not-synced').map((f) => f.severity);

  it('flags an event log on JetStream with fewer than 3 replicas, and nothing else', () => {
    assert.deepEqual(durability({ store: 'jetstream', replicas: 1 }), ['medium']);
    assert.deepEqual(durability({ store: 'jetstream', replicas: 3 }), []);
    assert.deepEqual(durability({ store: 'sql', replicas: 0 }), []);
    assert.deepEqual(durability(undefined), []);
  });

  it('flags a SQL event log acknowledging from the OS cache (--telemetry-durability os-cache), and not fsync', () => {
    const relaxed = (eventLog: PostureInput['eventLog']) => assessPosture(input(eventLog)).filter((f) => f.id === 'telemetry.os-cache').map((f) => f.severity);
    assert.deepEqual(relaxed({ store: 'sql', replicas: 0, durability: 'os-cache' }), ['medium']);
    assert.deepEqual(relaxed({ store: 'sql', replicas: 0, durability: 'fsync' }), []);
    assert.deepEqual(relaxed({ store: 'jetstream', replicas: 3, durability: 'os-cache' }), []);
  });
});
