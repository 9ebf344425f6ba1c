/**
 * Attack suite (issue 14): X.509 device attacks the hub refuses, each tried at every door that
 * takes a client certificate (MQTT, MQTT over WebSocket, device HTTPS, AMQP link attach) with
 * certificates made at test time: a self-signed certificate whose thumbprint is not registered, a
 * chain to an unregistered CA, to a registered but unverified CA, a CN that is not the device id,
 * a revoked certificate at connect, and a certificate revoked during live sessions (each dropped,
 * the revocation in the audit log with who did it). An unknown device gets the same answer; every
 * refusal has its audit row; the legitimate certificate still works.
 */
import assert from 'node:assert/strict';
import { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import * as x509 from '@peculiar/x509';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { chainPem, makeLeaf, makeRoot, makeSelfSigned, thumbprints, type TestCert } from './support/pki.js';
import { connectPacket, connectRaw } from './support/raw-mqtt.js';
import { policyKey, restClient, type Rest } from './support/rest.js';
import { amqpClient, auditMark, DEVICE_DOORS, expectAuditFailures, presentDevice, rawMqttWs, REFUSED, relaxLockout, sleep, type AuditEntry, type DeviceDoor, type ExpectedRow } from './support/attack.js';

const HOST = '127.0.81.1';

const CERT_REFUSED: Readonly<Record<DeviceDoor, string>> = { ...REFUSED, amqp: 'link amqp:unauthorized-access' };
const CERT_ACCEPTED: Readonly<Record<DeviceDoor, string>> = { mqtt: 'CONNACK 0', 'mqtt-ws': 'CONNACK 0', 'https-device': 'HTTP 204', amqp: 'link attached' };

let hub: HubProcess;
let ca: string;
let rest: Rest;
let self: TestCert;
let factory: TestCert;
let pending: TestCert;

type Credential = { cert: string; key: string };
const credential = (leaf: TestCert, ...chain: TestCert[]): Credential => ({ cert: chainPem(leaf, ...chain), key: leaf.keyPem });

function present(door: DeviceDoor, deviceId: string, tls: Credential): Promise<string> {
  return presentDevice(door, HOST, ca, { deviceId }, undefined, tls);
}

/** Presents `tls` as `deviceId` and `ghostTls` as an unknown device at every door: refused alike. */
async function refusedAlike(deviceId: string, tls: Credential, reason: RegExp, ghostId: string, ghostTls: Credential): Promise<ExpectedRow[]> {
  const rows: ExpectedRow[] = [];
  for (const door of DEVICE_DOORS) {
    assert.equal(await present(door, deviceId, tls), CERT_REFUSED[door], `${door}: ${deviceId}`);
    assert.equal(await present(door, ghostId, ghostTls), CERT_REFUSED[door], `${door}: the unknown device ${ghostId} gets the same answer`);
    rows.push(
      { subject: 'device', identity: deviceId, protocol: door, reasonCode: 'bad_credentials', reason },
      { subject: 'device', identity: ghostId, protocol: door, reasonCode: 'unknown_identity', reason: new RegExp(`unknown identity ${ghostId}`) },
    );
  }
  return rows;
}

async function stillWorks(deviceId: string, tls: Credential): Promise<void> {
  for (const door of DEVICE_DOORS) assert.equal(await present(door, deviceId, tls), CERT_ACCEPTED[door], `${door}: ${deviceId} with its own certificate`);
}

async function registerCa(name: string, root: TestCert, isVerified: boolean): Promise<void> {
  const r = await rest('PUT', `/certificates/${name}`, { properties: { certificate: root.certPem, isVerified } });
  assert.equal(r.status, 200, r.raw.toString());
}

async function createDevice(id: string, authentication: unknown): Promise<void> {
  const r = await rest('PUT', `/devices/${id}`, { deviceId: id, authentication });
  assert.equal(r.status, 200, r.raw.toString());
}

/** A key pair and CSR made here; the hub's own CA signs it (the factory flow). */
async function hubIssued(deviceId: string): Promise<Credential & { serial: string }> {
  const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${deviceId}`, keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } });
  const r = await rest('POST', '/certificateAuthorities/hub-ca/sign', { csr: csr.toString('pem'), deviceId });
  assert.equal(r.status, 200, r.raw.toString());
  const issued = r.body as { serial: string; chain: string };
  await createDevice(deviceId, { type: 'certificateAuthority' });
  return { cert: issued.chain, key: KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString(), serial: issued.serial };
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  await relaxLockout(rest);
  self = await makeSelfSigned('x-self');
  await createDevice('x-self', { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: thumbprints(self.certPem).sha256 } });
  factory = await makeRoot('Attack Factory Root');
  pending = await makeRoot('Attack Pending Root');
  await registerCa('factory', factory, true);
  await registerCa('pending', pending, false);
  await createDevice('x-ca', { type: 'certificateAuthority' });
  assert.equal((await rest('POST', '/certificateAuthorities', { name: 'hub-ca' })).status, 201);
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('X.509 device attacks', () => {
  it('a self-signed certificate with an unregistered thumbprint: refused at every door like an unknown device', async () => {
    const mark = await auditMark(rest);
    const stranger = await makeSelfSigned('x-self');
    const ghost = await makeSelfSigned('ghost-self');
    const rows = await refusedAlike('x-self', credential(stranger), /thumbprint mismatch for x-self/, 'ghost-self', credential(ghost));
    await expectAuditFailures(rest, mark, rows, [stranger.keyPem, ghost.keyPem]);
    await stillWorks('x-self', credential(self));
  });

  it('a chain to an unregistered CA (same subject as the real one, another key): refused', async () => {
    const mark = await auditMark(rest);
    const rogueRoot = await makeRoot('Attack Factory Root');
    const rogue = await makeLeaf(rogueRoot, 'x-ca');
    const ghost = await makeLeaf(rogueRoot, 'ghost-ca');
    const rows = await refusedAlike('x-ca', credential(rogue, rogueRoot), /chain for x-ca: the chain does not lead to a verified CA/, 'ghost-ca', credential(ghost, rogueRoot));
    await expectAuditFailures(rest, mark, rows, [rogue.keyPem]);
    await stillWorks('x-ca', credential(await makeLeaf(factory, 'x-ca'), factory));
  });

  it('a chain to a CA registered on the hub but never verified (no proof of possession): refused', async () => {
    const mark = await auditMark(rest);
    const leaf = await makeLeaf(pending, 'x-ca');
    const ghost = await makeLeaf(pending, 'ghost-pending');
    const rows = await refusedAlike('x-ca', credential(leaf, pending), /chain for x-ca: the chain does not lead to a verified CA/, 'ghost-pending', credential(ghost, pending));
    await expectAuditFailures(rest, mark, rows, [leaf.keyPem]);
  });

  it('a certificate from the verified CA whose CN is another device id: refused', async () => {
    const mark = await auditMark(rest);
    const other = await makeLeaf(factory, 'someone-else');
    const ghost = await makeLeaf(factory, 'ghost-cn');
    const rows = await refusedAlike('x-ca', credential(other, factory), /certificate CN 'someone-else' is not x-ca/, 'ghost-cn', credential(ghost, factory));
    await expectAuditFailures(rest, mark, rows, [other.keyPem]);
    await stillWorks('x-ca', credential(await makeLeaf(factory, 'x-ca'), factory));
  });

  it('a certificate the hub issued and then revoked: refused at connect', async () => {
    const issued = await hubIssued('x-rev');
    await stillWorks('x-rev', issued);
    assert.equal((await rest('POST', '/certificateAuthorities/hub-ca/revoke', { serial: issued.serial, reason: 'keyCompromise' })).status, 200);
    const mark = await auditMark(rest);
    const rows: ExpectedRow[] = [];
    for (const door of DEVICE_DOORS) {
      assert.equal(await present(door, 'x-rev', issued), CERT_REFUSED[door], door);
      rows.push({ subject: 'device', identity: 'x-rev', protocol: door, reasonCode: 'revoked', reason: new RegExp(`certificate ${issued.serial} of x-rev is revoked`, 'i') });
    }
    await expectAuditFailures(rest, mark, rows, [issued.key]);
  });

  it('revoking a certificate drops its live MQTT, MQTT-over-WebSocket and AMQP sessions; the revocation is audited; reconnects are refused', async () => {
    const viaMqtt = await hubIssued('x-live-mqtt');
    const viaWs = await hubIssued('x-live-ws');
    const viaAmqp = await hubIssued('x-live-amqp');
    const bystander = await hubIssued('x-bystander');

    const mqtt = await connectRaw(HOST, ca, connectPacket(HOST, 'x-live-mqtt', undefined), viaMqtt);
    assert.equal(mqtt.code, 0);
    const ws = await rawMqttWs(HOST, ca, viaWs);
    ws.send(connectPacket(HOST, 'x-live-ws', undefined));
    const connack = await ws.next();
    assert.equal(connack?.cmd === 'connack' ? connack.returnCode : undefined, 0);
    const amqp = await amqpClient(HOST, ca, viaAmqp);
    const link = await amqp.hold('sender', '/devices/x-live-amqp/messages/events');
    const other = await connectRaw(HOST, ca, connectPacket(HOST, 'x-bystander', undefined), bystander);
    assert.equal(other.code, 0);

    const mark = await auditMark(rest);
    for (const c of [viaMqtt, viaWs, viaAmqp]) {
      assert.equal((await rest('POST', '/certificateAuthorities/hub-ca/revoke', { serial: c.serial, reason: 'keyCompromise' })).status, 200);
    }
    const within = <T>(what: string, p: Promise<T>) => Promise.race([p, sleep(5000).then(() => assert.fail(`${what} still open 5 s after the revocation`))]);
    await within('the MQTT session', mqtt.client.closed);
    await within('the MQTT-over-WebSocket session', ws.closed);
    assert.match(await within('the AMQP link', link.detached), /^(amqp:link:detach-forced|disconnected)$/);
    amqp.close();
    assert.equal(other.client.isClosed(), false, 'a device whose certificate was not revoked keeps its session');
    other.client.end();

    // Who revoked what is in the audit log (change rows), and each reconnect is an auth failure.
    let changes: Array<AuditEntry & { after?: unknown }> = [];
    for (let i = 0; i < 50 && changes.length < 3; i += 1) {
      if (i > 0) await sleep(100);
      const r = await rest('GET', '/auditLog?type=change&limit=100');
      changes = (r.body as { entries: Array<AuditEntry & { after?: unknown }> }).entries.filter((e) => e.seq > mark && e.target === 'certificateAuthorities/hub-ca/revoke');
    }
    assert.equal(changes.length, 3, JSON.stringify(changes));
    for (const e of changes) assert.equal(e.actor, 'policy:iothubowner');
    const revokedSerials = changes.map((e) => JSON.stringify(e.after));
    for (const c of [viaMqtt, viaWs, viaAmqp]) assert.ok(revokedSerials.some((a) => a.includes(c.serial)), `the row names serial ${c.serial}`);
    const rows: ExpectedRow[] = [];
    for (const [id, c, door] of [
      ['x-live-mqtt', viaMqtt, 'mqtt'],
      ['x-live-ws', viaWs, 'mqtt-ws'],
      ['x-live-amqp', viaAmqp, 'amqp'],
    ] as const) {
      assert.equal(await present(door, id, c), CERT_REFUSED[door], `${door}: reconnect after revocation`);
      rows.push({ subject: 'device', identity: id, protocol: door, reasonCode: 'revoked', reason: /is revoked/ });
    }
    await expectAuditFailures(rest, mark, rows, [viaMqtt.key, viaWs.key, viaAmqp.key]);
  });
});
