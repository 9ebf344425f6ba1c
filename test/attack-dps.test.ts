/**
 * Attack suite (issue 14): provisioning (DPS) attacks the hub refuses today, over the DPS MQTT
 * CONNECT and the DPS HTTPS register call, with raw clients against a real hub process: a wrong
 * symmetric key (answered exactly like a registration id nobody enrolled), the group key used
 * directly instead of the key derived from it, a valid token used for another registration id or
 * ID scope, an expired token, symmetric keys switched off (disableDeviceSAS), and X.509
 * registrations with a certificate nobody enrolled: a stranger's self-signed one, one under a fake
 * root with the group root's name, the wrong certificate for an individual enrollment. Each
 * refusal has its audit row (subject registration, protocol dps-mqtt or dps-https, reason, no
 * credential); the legitimate device still registers afterwards.
 *
 * DPS takeover attempts (re-registering another device's id) are issue 14's provisioning branch.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { IConnectPacket } from 'mqtt-packet';
import { generateSasToken } from '../src/auth/sas.js';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { chainPem, makeLeaf, makeRoot, makeSelfSigned, type TestCert } from './support/pki.js';
import { connectRaw } from './support/raw-mqtt.js';
import { errorCode, errorMessage, policyKey, restClient, type Rest } from './support/rest.js';
import { auditMark, expectAuditFailures, relaxLockout, tokenSecrets, type ExpectedRow } from './support/attack.js';

const HOST = '127.0.83.1';
const WRONG_KEY = randomBytes(64).toString('base64');
const inSeconds = (s: number) => Math.floor(Date.now() / 1000) + s;

type Door = 'dps-mqtt' | 'dps-https';
const DOORS: readonly Door[] = ['dps-mqtt', 'dps-https'];
const REFUSED: Readonly<Record<Door, string>> = { 'dps-mqtt': 'CONNACK 4', 'dps-https': 'HTTP 401 IotHubUnauthorizedAccess Unauthorized 401002' };
const ACCEPTED: Readonly<Record<Door, string>> = { 'dps-mqtt': 'CONNACK 0', 'dps-https': 'HTTP 200 assigned' };

let hub: HubProcess;
let ca: string;
let rest: Rest;
let dps: Rest;
let idScope: string;
let individualKey: string;
let groupKey: string;
let groupRoot: TestCert;
let enrolledCert: TestCert;

type Credential = { cert: string; key: string };

function dpsToken(registrationId: string, key: string, expiry = inSeconds(600), scope = idScope): string {
  return generateSasToken({ resource: `${scope}/registrations/${registrationId}`, key, keyName: 'registration', expiry });
}

function derive(key: string, registrationId: string): string {
  return createHmac('sha256', Buffer.from(key, 'base64')).update(registrationId).digest('base64');
}

/** Registers at one door with a token or (token undefined) a client certificate; what the client sees, normalized. */
async function register(door: Door, registrationId: string, token: string | undefined, tls?: Credential): Promise<string> {
  if (door === 'dps-mqtt') {
    const packet: IConnectPacket = {
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId: registrationId,
      keepalive: 60,
      username: `${idScope}/registrations/${registrationId}/api-version=2019-03-31&ClientVersion=attack`,
      ...(token === undefined ? {} : { password: Buffer.from(token) }),
    };
    const { code, client } = await connectRaw(HOST, ca, packet, tls);
    client.end();
    await client.closed;
    return `CONNACK ${String(code)}`;
  }
  const http = restClient(HOST, ca, 'unused');
  const r = await http('PUT', `/${idScope}/registrations/${registrationId}/register`, { registrationId }, { auth: false, headers: token === undefined ? {} : { authorization: token }, ...(tls === undefined ? {} : { tlsCert: tls }) });
  if (r.status < 400) return `HTTP ${r.status} ${String((r.body as { status?: string } | undefined)?.status)}`;
  return `HTTP ${r.status} ${errorCode(r) ?? '-'} ${errorMessage(r)} ${(r.body as { errorCode?: number } | undefined)?.errorCode ?? '-'}`;
}

/** Tries the credential at both doors: refused; returns the audit rows to expect. */
async function refusedAtBoth(registrationId: string, token: string | undefined, row: Omit<ExpectedRow, 'protocol' | 'subject' | 'identity'>, tls?: Credential): Promise<ExpectedRow[]> {
  const rows: ExpectedRow[] = [];
  for (const door of DOORS) {
    assert.equal(await register(door, registrationId, token, tls), REFUSED[door], `${door}: ${registrationId}`);
    rows.push({ subject: 'registration', identity: registrationId, protocol: door, ...row });
  }
  return rows;
}

async function registers(registrationId: string, token: string | undefined, tls?: Credential): Promise<void> {
  for (const door of DOORS) assert.equal(await register(door, registrationId, token, tls), ACCEPTED[door], `${door}: ${registrationId}, legitimately`);
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  dps = restClient(HOST, ca, policyKey(hub.dataDir, 'provisioningserviceowner'), 'provisioningserviceowner');
  await relaxLockout(rest);
  idScope = (JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as { idScope: string }).idScope;

  const ind = await dps('PUT', '/enrollments/dps-ind', { registrationId: 'dps-ind', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: '', secondaryKey: '' } } });
  assert.equal(ind.status, 200, ind.raw.toString());
  individualKey = (ind.body as { attestation: { symmetricKey: { primaryKey: string } } }).attestation.symmetricKey.primaryKey;
  const grp = await dps('PUT', '/enrollmentGroups/dps-grp', { enrollmentGroupId: 'dps-grp', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: '', secondaryKey: '' } } });
  assert.equal(grp.status, 200, grp.raw.toString());
  groupKey = (grp.body as { attestation: { symmetricKey: { primaryKey: string } } }).attestation.symmetricKey.primaryKey;

  groupRoot = await makeRoot('Attack DPS Root');
  const xg = await dps('PUT', '/enrollmentGroups/dps-x509-grp', { enrollmentGroupId: 'dps-x509-grp', attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: groupRoot.certPem } } } } });
  assert.equal(xg.status, 200, xg.raw.toString());
  enrolledCert = await makeSelfSigned('dps-x-ind');
  const xi = await dps('PUT', '/enrollments/dps-x-ind', { registrationId: 'dps-x-ind', attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: enrolledCert.certPem } } } } });
  assert.equal(xi.status, 200, xi.raw.toString());
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('DPS symmetric-key attacks', () => {
  it('a wrong key for an enrolled registration id is refused exactly like a registration id nobody enrolled', async () => {
    const mark = await auditMark(rest);
    const forged = dpsToken('dps-ind', WRONG_KEY);
    const stranger = dpsToken('dps-nobody', WRONG_KEY);
    const rows: ExpectedRow[] = [];
    for (const door of DOORS) {
      assert.equal(await register(door, 'dps-ind', forged), REFUSED[door], `${door}: wrong key`);
      assert.equal(await register(door, 'dps-nobody', stranger), REFUSED[door], `${door}: nobody enrolled it, same answer`);
      rows.push(
        { subject: 'registration', identity: 'dps-ind', protocol: door, reasonCode: 'bad_credentials', reason: /bad signature \(individual\)/ },
        { subject: 'registration', identity: 'dps-nobody', protocol: door, reasonCode: 'bad_credentials', reason: /no enrollment matches/ },
      );
    }
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(forged), ...tokenSecrets(stranger), WRONG_KEY]);
    await registers('dps-ind', dpsToken('dps-ind', individualKey));
  });

  it('the group key used directly (not the key derived from it for the registration id) never works', async () => {
    const mark = await auditMark(rest);
    const direct = dpsToken('grp-member-1', groupKey);
    const rows = await refusedAtBoth('grp-member-1', direct, { reasonCode: 'bad_credentials', reason: /no enrollment matches/ });
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(direct), groupKey]);
    await registers('grp-member-1', dpsToken('grp-member-1', derive(groupKey, 'grp-member-1')));
  });

  it("a valid token used for another registration id, or minted for another ID scope: refused", async () => {
    const mark = await auditMark(rest);
    const others = dpsToken('grp-member-2', derive(groupKey, 'grp-member-2'));
    const otherScope = dpsToken('dps-ind', individualKey, inSeconds(600), '0ne00000000');
    const rows = [
      ...(await refusedAtBoth('grp-member-3', others, { reasonCode: 'scope', reason: /token scope is not this registration/ })),
      ...(await refusedAtBoth('dps-ind', otherScope, { reasonCode: 'scope', reason: /token scope is not this registration/ })),
    ];
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(others), ...tokenSecrets(otherScope), individualKey]);
    await registers('grp-member-2', others);
  });

  it('an expired token with the right key: refused', async () => {
    const mark = await auditMark(rest);
    const expired = dpsToken('dps-ind', individualKey, inSeconds(-5));
    const rows = await refusedAtBoth('dps-ind', expired, { reasonCode: 'expired', reason: /expired token/ });
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(expired), individualKey]);
  });

  it('disableDeviceSAS: the right key (individual or derived) is refused; switched back, it works', async () => {
    assert.equal((await rest('PATCH', '/settings', { disableDeviceSAS: true })).status, 200);
    try {
      const mark = await auditMark(rest);
      const token = dpsToken('dps-ind', individualKey);
      const derived = dpsToken('grp-member-4', derive(groupKey, 'grp-member-4'));
      const rows = [
        ...(await refusedAtBoth('dps-ind', token, { reasonCode: 'auth_method_disabled', reason: /symmetric key attestation is disabled on this provisioning service/ })),
        ...(await refusedAtBoth('grp-member-4', derived, { reasonCode: 'auth_method_disabled', reason: /symmetric key attestation is disabled/ })),
      ];
      await expectAuditFailures(rest, mark, rows, [...tokenSecrets(token), ...tokenSecrets(derived), individualKey]);
    } finally {
      assert.equal((await rest('PATCH', '/settings', { disableDeviceSAS: false })).status, 200);
    }
    await registers('dps-ind', dpsToken('dps-ind', individualKey));
  });
});

describe('DPS X.509 attacks', () => {
  it("a certificate nobody enrolled, one under a fake root with the group root's name, and another certificate for an individual enrollment: refused", async () => {
    const mark = await auditMark(rest);
    const stranger = await makeSelfSigned('dps-x-stranger');
    const fakeRoot = await makeRoot('Attack DPS Root');
    const fake = await makeLeaf(fakeRoot, 'dps-x-member');
    const impostor = await makeSelfSigned('dps-x-ind');
    const rows = [
      ...(await refusedAtBoth('dps-x-stranger', undefined, { reasonCode: 'bad_credentials', reason: /chain/ }, { cert: stranger.certPem, key: stranger.keyPem })),
      ...(await refusedAtBoth('dps-x-member', undefined, { reasonCode: 'bad_credentials', reason: /chain/ }, { cert: chainPem(fake, fakeRoot), key: fake.keyPem })),
      ...(await refusedAtBoth('dps-x-ind', undefined, { reasonCode: 'bad_credentials', reason: /not the enrollment's client certificate/ }, { cert: impostor.certPem, key: impostor.keyPem })),
    ];
    await expectAuditFailures(rest, mark, rows, [stranger.keyPem, fake.keyPem, impostor.keyPem]);
    const member = await makeLeaf(groupRoot, 'dps-x-member');
    await registers('dps-x-member', undefined, { cert: chainPem(member, groupRoot), key: member.keyPem });
    await registers('dps-x-ind', undefined, { cert: enrolledCert.certPem, key: enrolledCert.keyPem });
  });
});

// The reason code is decided where the refusal is decided; a refusal before the gate is audited too.
describe('the audit of provisioning refusals: reason codes and refusals before the gate', () => {
  it('refusals are classified: no matching enrollment is bad_credentials, symmetric keys switched off is auth_method_disabled', async () => {
    const mark = await auditMark(rest);
    assert.equal(await register('dps-https', 'grp-member-5', dpsToken('grp-member-5', groupKey)), REFUSED['dps-https']);
    assert.equal((await rest('PATCH', '/settings', { disableDeviceSAS: true })).status, 200);
    try {
      assert.equal(await register('dps-https', 'dps-ind', dpsToken('dps-ind', individualKey)), REFUSED['dps-https']);
    } finally {
      assert.equal((await rest('PATCH', '/settings', { disableDeviceSAS: false })).status, 200);
    }
    await expectAuditFailures(
      rest,
      mark,
      [
        { subject: 'registration', identity: 'grp-member-5', protocol: 'dps-https', reasonCode: 'bad_credentials' },
        { subject: 'registration', identity: 'dps-ind', protocol: 'dps-https', reasonCode: 'auth_method_disabled' },
      ],
      [],
      500,
    );
  });

  it('a registration under an unknown ID scope is audited (scope), over HTTPS and MQTT', async () => {
    const mark = await auditMark(rest);
    const token = dpsToken('dps-ind', individualKey, inSeconds(600), '0ne00000000');
    const http = restClient(HOST, ca, 'unused');
    const r = await http('PUT', '/0ne00000000/registrations/dps-ind/register', { registrationId: 'dps-ind' }, { auth: false, headers: { authorization: token } });
    assert.equal(r.status, 401);
    assert.equal(errorMessage(r), 'Unauthorized');
    const packet: IConnectPacket = {
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true,
      clientId: 'dps-ind',
      keepalive: 60,
      username: '0ne00000000/registrations/dps-ind/api-version=2019-03-31&ClientVersion=attack',
      password: Buffer.from(token),
    };
    const { code, client } = await connectRaw(HOST, ca, packet);
    client.end();
    assert.equal(code, 4);
    await expectAuditFailures(
      rest,
      mark,
      [
        { subject: 'registration', identity: 'dps-ind', protocol: 'dps-https', reasonCode: 'scope', reason: /unknown ID scope 0ne00000000/ },
        { subject: 'registration', identity: 'dps-ind', protocol: 'dps-mqtt', reasonCode: 'scope', reason: /unknown ID scope 0ne00000000/ },
      ],
      [...tokenSecrets(token), individualKey],
      500,
    );
  });
});
