/**
 * Attack suite (issue 14): attacks on the service side that the hub refuses, over the service REST
 * API and AMQP CBS put-token (what azure-iothub's Client uses), with raw clients against a real hub
 * process: a policy token with a forged signature (answered exactly like an unknown policy), a
 * token for another hub host, an expired token, a device token on the service API, a token scoped
 * to one device used on another, and shared access policies switched off (disableLocalAuth), where
 * policy-signed device tokens are refused too while operators' bearer tokens and device keys work.
 * Each refusal has its audit row (type auth, outcome failure, reason, remote, protocol, no
 * credential), and the legitimate caller still gets in afterwards.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { generateSasToken } from '../src/auth/sas.js';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { deviceToken } from './support/raw-mqtt.js';
import { errorCode, errorMessage, policyKey, restClient, type Rest, type RestResult } from './support/rest.js';
import { ACCEPTED, amqpClient, auditMark, DEVICE_DOORS, expectAuditFailures, policyKeyOf, presentDevice, REFUSED, relaxLockout, tokenSecrets, type ExpectedRow } from './support/attack.js';

const HOST = '127.0.80.1';
const WRONG_KEY = randomBytes(32).toString('base64');
const inSeconds = (s: number) => Math.floor(Date.now() / 1000) + s;

let hub: HubProcess;
let ca: string;
let rest: Rest;
let ownerKey: string;
let deviceKey: string;

/** A REST call with exactly this Authorization header. */
function withHeader(authorization: string): Rest {
  const r = restClient(HOST, ca, 'unused');
  return (method, path, body, opts = {}) => r(method, path, body, { ...opts, auth: false, headers: { ...opts.headers, authorization } });
}

/** What a refused REST caller sees, normalized (the tracking id and time differ per answer). */
function answer(r: RestResult): string {
  return `${r.status} ${errorCode(r) ?? '-'} ${errorMessage(r)} ${(r.body as { errorCode?: number } | undefined)?.errorCode ?? '-'}`;
}
const REST_REFUSED = '401 IotHubUnauthorizedAccess Unauthorized 401002';

/** CBS put-token of a service token (audience: the hub host) on a fresh AMQP connection. */
async function servicePutToken(token: string): Promise<string> {
  const amqp = await amqpClient(HOST, ca);
  try {
    const r = await amqp.putToken(HOST, token);
    if (r.status !== 200) return `put-token ${r.status} ${r.description}`;
    // Granted: the service's C2D link attaches.
    return `put-token 200, devicebound ${await amqp.attach('sender', '/messages/devicebound')}`;
  } finally {
    amqp.close();
  }
}
const AMQP_REFUSED = 'put-token 401 Unauthorized';
const AMQP_ACCEPTED = 'put-token 200, devicebound attached';

async function legitimateStillWorks(): Promise<void> {
  assert.equal((await rest('GET', '/devices/victim')).status, 200, 'REST with the real policy key');
  assert.equal(await servicePutToken(generateSasToken({ resource: HOST, key: ownerKey, keyName: 'iothubowner', expiry: inSeconds(600) })), AMQP_ACCEPTED);
}

/** Tries one service token on REST and AMQP; both refused; returns the two audit rows to expect. */
async function refusedEverywhere(token: string, row: Omit<ExpectedRow, 'protocol' | 'subject'>): Promise<ExpectedRow[]> {
  assert.equal(answer(await withHeader(token)('GET', '/devices/victim')), REST_REFUSED, 'REST');
  assert.equal(await servicePutToken(token), AMQP_REFUSED, 'AMQP put-token');
  return [
    { subject: 'policy', protocol: 'https', ...row },
    { subject: 'policy', protocol: 'amqp', ...row },
  ];
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  ownerKey = policyKey(hub.dataDir);
  rest = restClient(HOST, ca, ownerKey);
  await relaxLockout(rest);
  const d = await rest('PUT', '/devices/victim', { deviceId: 'victim' });
  assert.equal(d.status, 200);
  deviceKey = (d.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey;
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('service token attacks (REST and AMQP)', () => {
  it('a policy token with a forged signature is refused exactly like one for an unknown policy', async () => {
    const mark = await auditMark(rest);
    const forged = generateSasToken({ resource: HOST, key: WRONG_KEY, keyName: 'iothubowner', expiry: inSeconds(600) });
    const unknown = generateSasToken({ resource: HOST, key: WRONG_KEY, keyName: 'nosuchpolicy', expiry: inSeconds(600) });
    const rows = [
      ...(await refusedEverywhere(forged, { identity: 'iothubowner', reasonCode: 'bad_credentials', reason: /bad signature for policy iothubowner/ })),
      ...(await refusedEverywhere(unknown, { identity: 'nosuchpolicy', reasonCode: 'unknown_identity', reason: /unknown policy nosuchpolicy/ })),
    ];
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(forged), ...tokenSecrets(unknown), WRONG_KEY]);
    await legitimateStillWorks();
  });

  it("a token for another hub host, signed with the policy's real key: refused", async () => {
    const mark = await auditMark(rest);
    const foreign = generateSasToken({ resource: 'evil.example.com', key: ownerKey, keyName: 'iothubowner', expiry: inSeconds(600) });
    const rows = await refusedEverywhere(foreign, { identity: 'iothubowner', reasonCode: 'scope', reason: /token for another host \(evil\.example\.com\)/ });
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(foreign), ownerKey]);
    await legitimateStillWorks();
  });

  it('an expired policy token: refused', async () => {
    const mark = await auditMark(rest);
    const expired = generateSasToken({ resource: HOST, key: ownerKey, keyName: 'iothubowner', expiry: inSeconds(-5) });
    const rows = await refusedEverywhere(expired, { identity: 'iothubowner', reasonCode: 'expired', reason: /expired token for policy iothubowner/ });
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(expired), ownerKey]);
    await legitimateStillWorks();
  });

  it("a device's own valid token on the service API: refused", async () => {
    const mark = await auditMark(rest);
    const token = deviceToken(HOST, 'victim', deviceKey);
    // A device token names no policy: the row's identity is empty.
    const rows = await refusedEverywhere(token, { identity: '', reasonCode: 'scope', reason: /service call with a device-scoped token/ });
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(token), deviceKey]);
  });

  it('a policy token scoped to one device, used on another (existing or not, alike): refused', async () => {
    const mark = await auditMark(rest);
    const scoped = generateSasToken({ resource: `${HOST}/devices/victim`, key: ownerKey, keyName: 'iothubowner', expiry: inSeconds(600) });
    const caller = withHeader(scoped);
    assert.equal((await caller('GET', '/devices/victim')).status, 200, 'its own device');
    assert.equal((await rest('PUT', '/devices/bystander', { deviceId: 'bystander' })).status, 200);
    assert.equal(answer(await caller('GET', '/devices/bystander')), REST_REFUSED);
    assert.equal(answer(await caller('GET', '/devices/nobody')), REST_REFUSED, 'an unknown device looks the same');
    await expectAuditFailures(
      rest,
      mark,
      [
        { subject: 'policy', identity: 'iothubowner', protocol: 'https', reasonCode: 'scope', reason: /token scope \/devices\/victim does not cover \/devices\/bystander/ },
        { subject: 'policy', identity: 'iothubowner', protocol: 'https', reasonCode: 'scope', reason: /does not cover \/devices\/nobody/ },
      ],
      tokenSecrets(scoped),
    );
  });
});

describe('disableLocalAuth', () => {
  it('refuses policy tokens on REST and AMQP and policy-signed device tokens at every device door; bearer tokens and device keys work', async () => {
    assert.equal((await rest('PUT', '/operators/owner', {})).status, 201);
    assert.equal((await rest('POST', '/roleAssignments', { assignee: 'owner', role: 'Owner' })).status, 201);
    const issued = await rest('POST', '/operators/owner/tokens', { expiresInSeconds: 600 });
    assert.equal(issued.status, 200);
    const bearerToken = (issued.body as { token: string }).token;
    const operator = withHeader(`Bearer ${bearerToken}`);
    const devicePolicyKey = await policyKeyOf(rest, 'device');
    assert.equal((await rest('PATCH', '/settings', { disableLocalAuth: true })).status, 200);
    try {
      const mark = await auditMark(operator);
      const ownerToken = generateSasToken({ resource: HOST, key: ownerKey, keyName: 'iothubowner', expiry: inSeconds(600) });
      const rows = await refusedEverywhere(ownerToken, {
        identity: 'iothubowner',
        reasonCode: 'auth_method_disabled',
        reason: /shared access policies are disabled by hub settings \(disableLocalAuth\)/,
      });
      const policySigned = generateSasToken({ resource: `${HOST}/devices/victim`, key: devicePolicyKey, keyName: 'device', expiry: inSeconds(600) });
      for (const door of DEVICE_DOORS) {
        assert.equal(await presentDevice(door, HOST, ca, { deviceId: 'victim' }, policySigned), REFUSED[door], `${door}: policy-signed device token`);
        rows.push({ subject: 'device', identity: 'victim', protocol: door, reasonCode: 'auth_method_disabled', reason: /policy-signed SAS tokens are disabled by hub settings \(disableLocalAuth\)/ });
      }
      await expectAuditFailures(operator, mark, rows, [...tokenSecrets(ownerToken), ...tokenSecrets(policySigned), ownerKey]);

      // Operators and devices are not local auth.
      assert.equal((await operator('GET', '/devices/victim')).status, 200);
      assert.equal(await servicePutToken(`Bearer ${bearerToken}`), AMQP_ACCEPTED);
      for (const door of DEVICE_DOORS) assert.equal(await presentDevice(door, HOST, ca, { deviceId: 'victim' }, deviceToken(HOST, 'victim', deviceKey)), ACCEPTED[door], `${door}: the device's own key`);
    } finally {
      assert.equal((await operator('PATCH', '/settings', { disableLocalAuth: false })).status, 200);
    }
    await legitimateStillWorks();
  });
});
