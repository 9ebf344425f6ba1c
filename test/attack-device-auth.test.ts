/**
 * Attack suite (issue 14): device SAS attacks the hub refuses, each tried at every device door
 * (MQTT, MQTT over WebSocket, device HTTPS, AMQP CBS put-token) with raw clients against a real
 * hub process. Each case asserts the refusal as the client sees it, that an unknown device gets
 * exactly the same answer (nothing tells whether the device exists), the audit row of every
 * attempt (type auth, outcome failure, reason code and reason, remote address, protocol, no
 * credential), and that the legitimate device still gets in afterwards.
 *
 * Cross-device topics (publish, subscribe, another device's method call) are here too; their audit
 * rows come with branch i14-lockout, so those assertions live in their own describe.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import type { Packet } from 'mqtt-packet';
import { generateSasToken } from '../src/auth/sas.js';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { connectPacket, connectRaw, deviceToken, type RawMqtt } from './support/raw-mqtt.js';
import { policyKey, restClient, type Rest } from './support/rest.js';
import {
  ACCEPTED,
  amqpClient,
  auditMark,
  DEVICE_DOORS,
  expectAuditFailures,
  policyKeyOf,
  presentDevice,
  rawMqttWs,
  REFUSED,
  relaxLockout,
  tokenSecrets,
  type DeviceDoor,
  type ExpectedRow,
  type RawMqttWs,
} from './support/attack.js';

const HOST = '127.0.79.1';
const WRONG_KEY = randomBytes(32).toString('base64');
const inSeconds = (s: number) => Math.floor(Date.now() / 1000) + s;

let hub: HubProcess;
let ca: string;
let rest: Rest;
const keys = new Map<string, string>();

function key(id: string): string {
  const k = keys.get(id);
  assert.ok(k !== undefined, `no key for ${id}`);
  return k;
}

async function createDevice(id: string): Promise<void> {
  const r = await rest('PUT', `/devices/${id}`, { deviceId: id });
  assert.equal(r.status, 200, r.raw.toString());
  keys.set(id, (r.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey);
}

function present(door: DeviceDoor, deviceId: string, token: string, moduleId: string | null = null): Promise<string> {
  return presentDevice(door, HOST, ca, { deviceId, moduleId }, token);
}

/** Every door lets the device in with its own key. */
async function legitimateStillWorks(id: string): Promise<void> {
  const token = deviceToken(HOST, id, key(id));
  for (const door of DEVICE_DOORS) assert.equal(await present(door, id, token), ACCEPTED[door], `${door}: ${id} with its own key`);
}

/**
 * Tries `token` for `deviceId` and an unknown device's equivalent at every door: both refused
 * with the same answer; returns the audit rows to expect, in order.
 */
async function refusedAlike(
  deviceId: string,
  token: string,
  ghostId: string,
  ghostToken: string,
  row: { reasonCode?: string; reason: RegExp },
  ghostRow: { reasonCode?: string; reason: RegExp } = row,
): Promise<ExpectedRow[]> {
  const rows: ExpectedRow[] = [];
  for (const door of DEVICE_DOORS) {
    assert.equal(await present(door, deviceId, token), REFUSED[door], `${door}: ${deviceId}`);
    assert.equal(await present(door, ghostId, ghostToken), REFUSED[door], `${door}: the unknown device ${ghostId} gets the same answer`);
    rows.push({ subject: 'device', identity: deviceId, protocol: door, ...row }, { subject: 'device', identity: ghostId, protocol: door, ...ghostRow });
  }
  return rows;
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  await relaxLockout(rest);
  for (const id of ['d1', 'd2', 'gw']) await createDevice(id);
  const m = await rest('PUT', '/devices/gw/modules/m1', { deviceId: 'gw', moduleId: 'm1' });
  assert.equal(m.status, 200, m.raw.toString());
  keys.set('gw/m1', (m.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey);
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('device SAS attacks', () => {
  it('forged SAS (the right resource, a wrong key): refused at every door like an unknown device; the real key still works', async () => {
    const mark = await auditMark(rest);
    const forged = deviceToken(HOST, 'd1', WRONG_KEY);
    const ghost = deviceToken(HOST, 'ghost-forged', WRONG_KEY);
    const rows = await refusedAlike('d1', forged, 'ghost-forged', ghost, { reasonCode: 'bad_credentials', reason: /bad signature/ });
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(forged), ...tokenSecrets(ghost), WRONG_KEY]);
    await legitimateStillWorks('d1');
  });

  it("cross-device token (d2's valid token presented as d1): refused at every door", async () => {
    const mark = await auditMark(rest);
    const d2Token = deviceToken(HOST, 'd2', key('d2'));
    const rows = await refusedAlike('d1', d2Token, 'ghost-cross', d2Token, { reasonCode: 'scope', reason: /SAS scope \/devices\/d2 does not cover/ });
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(d2Token), key('d2')]);
    await legitimateStillWorks('d1');
    await legitimateStillWorks('d2');
  });

  it("a token for another hub host, signed with the device's real key: refused at every door", async () => {
    const mark = await auditMark(rest);
    const foreign = generateSasToken({ resource: 'evil.example.com/devices/d1', key: key('d1'), expiry: inSeconds(600) });
    const ghost = generateSasToken({ resource: 'evil.example.com/devices/ghost-host', key: WRONG_KEY, expiry: inSeconds(600) });
    const rows = await refusedAlike('d1', foreign, 'ghost-host', ghost, { reasonCode: 'scope', reason: /another host/ });
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(foreign), key('d1')]);
    await legitimateStillWorks('d1');
  });

  it('a policy-signed device token with a forged signature: refused like an unknown policy; the real policy token works', async () => {
    const mark = await auditMark(rest);
    const forged = generateSasToken({ resource: `${HOST}/devices/d1`, key: WRONG_KEY, keyName: 'device', expiry: inSeconds(600) });
    const unknownPolicy = generateSasToken({ resource: `${HOST}/devices/d1`, key: WRONG_KEY, keyName: 'nosuchpolicy', expiry: inSeconds(600) });
    const rows: ExpectedRow[] = [];
    for (const door of DEVICE_DOORS) {
      assert.equal(await present(door, 'd1', forged), REFUSED[door], `${door}: forged policy signature`);
      assert.equal(await present(door, 'd1', unknownPolicy), REFUSED[door], `${door}: unknown policy`);
      rows.push(
        { subject: 'device', identity: 'd1', protocol: door, reasonCode: 'bad_credentials', reason: /bad signature or unknown policy device$/ },
        { subject: 'device', identity: 'd1', protocol: door, reasonCode: 'bad_credentials', reason: /bad signature or unknown policy nosuchpolicy/ },
      );
    }
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(forged), ...tokenSecrets(unknownPolicy)]);
    const real = generateSasToken({ resource: `${HOST}/devices/d1`, key: await policyKeyOf(rest, 'device'), keyName: 'device', expiry: inSeconds(600) });
    for (const door of DEVICE_DOORS) assert.equal(await present(door, 'd1', real), ACCEPTED[door], `${door}: the device policy's own token`);
  });

  it('an expired token (right key): refused at every door like an unknown device', async () => {
    const mark = await auditMark(rest);
    const expired = deviceToken(HOST, 'd1', key('d1'), inSeconds(-5));
    const ghost = deviceToken(HOST, 'ghost-old', WRONG_KEY, inSeconds(-5));
    const rows = await refusedAlike('d1', expired, 'ghost-old', ghost, { reasonCode: 'expired', reason: /expired SAS token/ }, { reasonCode: 'bad_credentials', reason: /bad signature/ });
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(expired), key('d1')]);
    await legitimateStillWorks('d1');
  });

  it('a token valid for 100 years is accepted (Azure sets no maximum) and its session is served; an expiry beyond 12 digits is refused', async () => {
    const century = deviceToken(HOST, 'd2', key('d2'), inSeconds(100 * 365 * 86_400));
    for (const door of DEVICE_DOORS) assert.equal(await present(door, 'd2', century), ACCEPTED[door], door);
    // The session lives on: no expiry timer overflowed into an immediate close.
    const { code, client } = await connectRaw(HOST, ca, connectPacket(HOST, 'd2', century));
    assert.equal(code, 0);
    client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$iothub/twin/res/#', qos: 0 }] });
    assert.equal((await client.next())?.cmd, 'suback');
    await new Promise((r) => setTimeout(r, 1000));
    client.send({ cmd: 'publish', topic: '$iothub/twin/GET/?$rid=late', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false });
    const twin = await client.next();
    assert.match(twin?.cmd === 'publish' ? twin.topic : '', /^\$iothub\/twin\/res\/200\//);
    client.end();
    const amqp = await amqpClient(HOST, ca);
    try {
      assert.equal((await amqp.putToken(`${HOST}/devices/d2`, century)).status, 200);
      assert.equal(await amqp.attach('sender', '/devices/d2/messages/events', 1000), 'attached');
    } finally {
      amqp.close();
    }

    // A millisecond timestamp where seconds belong (13 digits): a malformed token, not a long-lived one.
    const mark = await auditMark(rest);
    const ms = deviceToken(HOST, 'd2', key('d2'), Date.now() + 3_600_000);
    const rows: ExpectedRow[] = [];
    for (const door of DEVICE_DOORS) {
      assert.equal(await present(door, 'd2', ms), REFUSED[door], door);
      // The reason code is 'other' today, not 'malformed': see the known gaps below.
      rows.push({ subject: 'device', identity: 'd2', protocol: door, reason: /SAS expiry is not an integer/ });
    }
    await expectAuditFailures(rest, mark, rows, tokenSecrets(ms));
  });

  it('replaying a valid token after the device is disabled, deleted, and re-created under the same id', async () => {
    await createDevice('temp');
    const token = deviceToken(HOST, 'temp', key('temp'));
    const live = await connectRaw(HOST, ca, connectPacket(HOST, 'temp', token));
    assert.equal(live.code, 0);
    const got = await rest('GET', '/devices/temp');
    assert.equal((await rest('PUT', '/devices/temp', { ...(got.body as object), status: 'disabled' }, { headers: { 'if-match': '*' } })).status, 200);
    await live.client.closed;

    // Disabled: only a holder of valid credentials learns it (MQTT 5); a forged token gets the usual answer.
    let mark = await auditMark(rest);
    const disabledAnswer: Record<DeviceDoor, string> = { ...REFUSED, mqtt: 'CONNACK 5', 'mqtt-ws': 'CONNACK 5' };
    const rows: ExpectedRow[] = [];
    for (const door of DEVICE_DOORS) {
      assert.equal(await present(door, 'temp', token), disabledAnswer[door], `${door}: disabled`);
      assert.equal(await present(door, 'temp', deviceToken(HOST, 'temp', WRONG_KEY)), REFUSED[door], `${door}: disabled, forged token`);
      rows.push(
        { subject: 'device', identity: 'temp', protocol: door, reasonCode: 'disabled', reason: /device temp is disabled/ },
        { subject: 'device', identity: 'temp', protocol: door, reasonCode: 'bad_credentials', reason: /bad signature/ },
      );
    }
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(token), key('temp')]);

    // Deleted: the token is as good as a stranger's.
    assert.equal((await rest('DELETE', '/devices/temp')).status, 204);
    mark = await auditMark(rest);
    const deletedRows = await refusedAlike('temp', token, 'ghost-deleted', deviceToken(HOST, 'ghost-deleted', key('temp')), { reasonCode: 'bad_credentials', reason: /bad signature, unknown identity/ });
    await expectAuditFailures(rest, mark, deletedRows, tokenSecrets(token));

    // Re-created under the same id: new keys, the old token stays dead.
    const oldKey = key('temp');
    await createDevice('temp');
    assert.notEqual(key('temp'), oldKey);
    mark = await auditMark(rest);
    const recreated: ExpectedRow[] = [];
    for (const door of DEVICE_DOORS) {
      assert.equal(await present(door, 'temp', token), REFUSED[door], `${door}: old token after re-creation`);
      recreated.push({ subject: 'device', identity: 'temp', protocol: door, reasonCode: 'bad_credentials', reason: /bad signature/ });
    }
    await expectAuditFailures(rest, mark, recreated, tokenSecrets(token));
    await legitimateStillWorks('temp');
  });

  it("a module's token used as its parent device, and the device's token used as its module: refused", async () => {
    const mark = await auditMark(rest);
    const moduleToken = generateSasToken({ resource: `${HOST}/devices/gw/modules/m1`, key: key('gw/m1'), expiry: inSeconds(600) });
    const deviceTok = deviceToken(HOST, 'gw', key('gw'));
    const rows: ExpectedRow[] = [];
    for (const door of DEVICE_DOORS) {
      assert.equal(await present(door, 'gw', moduleToken), REFUSED[door], `${door}: module token as the device`);
      rows.push({ subject: 'device', identity: 'gw', protocol: door, reasonCode: 'scope', reason: /does not cover \/devices\/gw$/ });
      if (door === 'https-device') continue; // no module routes on device HTTPS
      assert.equal(await present(door, 'gw', deviceTok, 'm1'), REFUSED[door], `${door}: device token as the module`);
      rows.push({ subject: 'module', identity: 'gw/m1', protocol: door, reasonCode: 'bad_credentials', reason: /bad signature/ });
    }
    await expectAuditFailures(rest, mark, rows, [...tokenSecrets(moduleToken), ...tokenSecrets(deviceTok), key('gw/m1'), key('gw')]);
    for (const door of ['mqtt', 'mqtt-ws', 'amqp'] as const) assert.equal(await present(door, 'gw', moduleToken, 'm1'), ACCEPTED[door], `${door}: the module as itself`);
    await legitimateStillWorks('gw');
  });

  it("disableDeviceSAS: a device's own key is refused at every door like an unknown device; modules keep their keys; switched back, the key works", async () => {
    assert.equal((await rest('PATCH', '/settings', { disableDeviceSAS: true })).status, 200);
    try {
      const mark = await auditMark(rest);
      const token = deviceToken(HOST, 'd1', key('d1'));
      const rows = await refusedAlike(
        'd1',
        token,
        'ghost-nosas',
        deviceToken(HOST, 'ghost-nosas', WRONG_KEY),
        { reasonCode: 'auth_method_disabled', reason: /device SAS keys are disabled by hub settings \(disableDeviceSAS\)/ },
        { reasonCode: 'bad_credentials', reason: /bad signature/ },
      );
      await expectAuditFailures(rest, mark, rows, [...tokenSecrets(token), key('d1')]);
      const moduleToken = generateSasToken({ resource: `${HOST}/devices/gw/modules/m1`, key: key('gw/m1'), expiry: inSeconds(600) });
      assert.equal(await present('mqtt', 'gw', moduleToken, 'm1'), ACCEPTED.mqtt, 'disableModuleSAS is a switch of its own');
    } finally {
      assert.equal((await rest('PATCH', '/settings', { disableDeviceSAS: false })).status, 200);
    }
    await legitimateStillWorks('d1');
  });
});

describe('cross-device topics and links are refused', () => {
  let victim: RawMqtt;

  before(async () => {
    victim = (await connectRaw(HOST, ca, connectPacket(HOST, 'd2', deviceToken(HOST, 'd2', key('d2'))))).client;
    victim.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$iothub/methods/POST/#', qos: 0 }] });
    assert.equal((await victim.next())?.cmd, 'suback');
  });

  after(() => victim.end());

  it("MQTT and MQTT over WebSocket: publishing or subscribing on another device's or module's topics closes the connection, with no acknowledgement", async () => {
    const attempts: Array<[string, string | null, (c: { send: RawMqtt['send'] }) => void]> = [
      ['publish telemetry as d2', null, (c) => c.send({ cmd: 'publish', topic: 'devices/d2/messages/events/', payload: Buffer.from('x'), qos: 1, messageId: 11, retain: false, dup: false })],
      ["subscribe to d2's C2D", null, (c) => c.send({ cmd: 'subscribe', messageId: 12, subscriptions: [{ topic: 'devices/d2/messages/devicebound/#', qos: 1 }] })],
      ["subscribe to a module's inputs on gw", null, (c) => c.send({ cmd: 'subscribe', messageId: 13, subscriptions: [{ topic: 'devices/gw/modules/m1/inputs/#', qos: 1 }] })],
      ['publish as module gw/m1', null, (c) => c.send({ cmd: 'publish', topic: 'devices/gw/modules/m1/messages/events/', payload: Buffer.from('x'), qos: 1, messageId: 14, retain: false, dup: false })],
      ['write desired properties (a service right)', null, (c) => c.send({ cmd: 'publish', topic: '$iothub/twin/PATCH/properties/desired/?$rid=1', payload: Buffer.from('{"open":true}'), qos: 1, messageId: 15, retain: false, dup: false })],
      ["module gw/m1 publishing as its parent device", 'm1', (c) => c.send({ cmd: 'publish', topic: 'devices/gw/messages/events/', payload: Buffer.from('x'), qos: 1, messageId: 16, retain: false, dup: false })],
    ];
    for (const transport of ['mqtt', 'mqtt-ws'] as const) {
      for (const [name, moduleId, act] of attempts) {
        const deviceId = moduleId === null ? 'd1' : 'gw';
        const token =
          moduleId === null ? deviceToken(HOST, deviceId, key(deviceId)) : generateSasToken({ resource: `${HOST}/devices/gw/modules/${moduleId}`, key: key(`gw/${moduleId}`), expiry: inSeconds(600) });
        const c: RawMqtt | RawMqttWs = transport === 'mqtt' ? (await connectRaw(HOST, ca, connectPacket(HOST, deviceId, token, moduleId ?? undefined))).client : await rawMqttWs(HOST, ca);
        if (transport === 'mqtt-ws') {
          c.send(connectPacket(HOST, deviceId, token, moduleId ?? undefined));
          assert.equal((await c.next())?.cmd, 'connack');
        }
        act(c);
        const reply = await c.next();
        assert.equal(reply, undefined, `${transport} ${name}: closed without ${reply?.cmd ?? ''}`);
        await c.closed;
      }
    }
  });

  it("answering another device's direct method call: the answer is ignored; the service gets the real device's", async () => {
    const service = iothub.Client.fromConnectionString(hub.connectionString);
    const call = service.invokeDeviceMethod('d2', { methodName: 'unlock', payload: null, responseTimeoutInSeconds: 10 });
    const request = await victim.next();
    const rid = /\$rid=([^&]+)/.exec(request?.cmd === 'publish' ? request.topic : '')?.[1];
    assert.ok(rid !== undefined, 'the victim got the request');
    const attacker = (await connectRaw(HOST, ca, connectPacket(HOST, 'd1', deviceToken(HOST, 'd1', key('d1'))))).client;
    attacker.send({ cmd: 'publish', topic: `$iothub/methods/res/200/?$rid=${rid}`, payload: Buffer.from('{"unlocked":"by d1"}'), qos: 0, retain: false, dup: false });
    await new Promise((r) => setTimeout(r, 200));
    victim.send({ cmd: 'publish', topic: `$iothub/methods/res/403/?$rid=${rid}`, payload: Buffer.from('{"unlocked":false}'), qos: 0, retain: false, dup: false });
    const { result } = await call;
    assert.deepEqual(result, { status: 403, payload: { unlocked: false } });
    attacker.end();
    await service.close();
  });

  it("AMQP: with its own token on the connection, a device cannot attach to another device's telemetry or C2D (the connection is closed); its own link attaches", async () => {
    const withToken = async () => {
      const amqp = await amqpClient(HOST, ca);
      assert.equal((await amqp.putToken(`${HOST}/devices/d1`, deviceToken(HOST, 'd1', key('d1')))).status, 200);
      return amqp;
    };
    for (const [role, address] of [
      ['sender', '/devices/d2/messages/events'],
      ['receiver', '/devices/d2/messages/devicebound'],
      ['receiver', '/devices/gw/modules/m1/messages/events'],
    ] as const) {
      const amqp = await withToken();
      // The hub closes the connection: cleanly (a close frame) or by dropping it.
      const closed = new Promise<void>((resolve) => {
        amqp.conn.once('connection_close', () => resolve());
        amqp.conn.once('disconnected', () => resolve());
      });
      try {
        assert.match(await amqp.attach(role, address, 2000), /^(amqp:unauthorized-access|disconnected)$/, address);
        await closed;
      } finally {
        amqp.close();
      }
    }
    const amqp = await withToken();
    try {
      assert.equal(await amqp.attach('sender', '/devices/d1/messages/events'), 'attached');
    } finally {
      amqp.close();
    }
  });
});

// Needs branch i14-lockout (audit rows for cross-device publish and subscribe).
describe('cross-device topics are audited (needs i14-lockout)', () => {
  it('a refused cross-device publish and subscribe each leave an auth failure row naming the topic', async () => {
    const mark = await auditMark(rest);
    const token = deviceToken(HOST, 'd1', key('d1'));
    const packets: Packet[] = [
      { cmd: 'publish', topic: 'devices/d2/messages/events/', payload: Buffer.from('x'), qos: 1, messageId: 21, retain: false, dup: false },
      { cmd: 'subscribe', messageId: 22, subscriptions: [{ topic: 'devices/d2/messages/devicebound/#', qos: 1 }] },
    ];
    for (const packet of packets) {
      const { code, client } = await connectRaw(HOST, ca, connectPacket(HOST, 'd1', token));
      assert.equal(code, 0);
      client.send(packet);
      await client.closed;
    }
    const rows = await expectAuditFailures(
      rest,
      mark,
      [
        { subject: 'device', identity: 'd1', protocol: 'mqtt', reasonCode: /^(?!other$)\w+$/, reason: /devices\/d2\/messages\/events/ },
        { subject: 'device', identity: 'd1', protocol: 'mqtt', reasonCode: /^(?!other$)\w+$/, reason: /devices\/d2\/messages\/devicebound/ },
      ],
      tokenSecrets(token),
    );
    assert.equal(rows.length, 2);
  });
});

// Refused today, but not recorded as they should be. `todo`: they run and report, without failing
// the suite, until someone fixes the cause (then drop the todo).
describe('known gaps in the audit of device refusals', () => {
  it("the reason code is decided by words in the reason text, which carry names the attacker picks", { todo: 'classify where the failure is decided (STYLE: failure reasons are values, not sentences)' }, async () => {
    const mark = await auditMark(rest);
    const rows: ExpectedRow[] = [];
    for (const id of ['probe-revoked', 'probe-locked', 'probe-expired', 'probe-disabled']) {
      assert.equal(await present('mqtt', id, deviceToken(HOST, id, WRONG_KEY)), REFUSED.mqtt);
      rows.push({ subject: 'device', identity: id, protocol: 'mqtt', reasonCode: 'bad_credentials' });
    }
    await expectAuditFailures(rest, mark, rows, [], 500);
  });

  it('a token whose expiry is not a time in seconds is classified malformed', { todo: "classified 'other' today" }, async () => {
    const mark = await auditMark(rest);
    assert.equal(await present('mqtt', 'd2', deviceToken(HOST, 'd2', key('d2'), Date.now())), REFUSED.mqtt);
    await expectAuditFailures(rest, mark, [{ subject: 'device', identity: 'd2', protocol: 'mqtt', reasonCode: 'malformed' }], [], 500);
  });

  it('an MQTT CONNECT whose username names another hub is audited', { todo: 'refused before the gate: no audit row' }, async () => {
    const mark = await auditMark(rest);
    const { code, client } = await connectRaw(HOST, ca, { ...connectPacket(HOST, 'd1', deviceToken(HOST, 'd1', key('d1'))), username: 'evil.example.com/d1/?api-version=2021-04-12' });
    assert.equal(code, 4);
    client.end();
    await expectAuditFailures(rest, mark, [{ subject: 'device', identity: 'd1', protocol: 'mqtt' }], [], 500);
  });

  it('an AMQP put-token whose audience names another hub is audited', { todo: 'refused before the gate: no audit row' }, async () => {
    const mark = await auditMark(rest);
    const amqp = await amqpClient(HOST, ca);
    try {
      assert.deepEqual(await amqp.putToken('evil.example.com/devices/d1', deviceToken('evil.example.com', 'd1', key('d1'))), { status: 401, description: 'Unauthorized' });
    } finally {
      amqp.close();
    }
    await expectAuditFailures(rest, mark, [{ subject: 'device', identity: 'd1', protocol: 'amqp' }], [], 500);
  });

  it("an AMQP link to another device's address is audited", { todo: 'refused with amqp:unauthorized-access, no audit row' }, async () => {
    const mark = await auditMark(rest);
    const amqp = await amqpClient(HOST, ca);
    try {
      assert.equal((await amqp.putToken(`${HOST}/devices/d1`, deviceToken(HOST, 'd1', key('d1')))).status, 200);
      assert.equal(await amqp.attach('receiver', '/devices/d2/messages/devicebound'), 'amqp:unauthorized-access');
    } finally {
      amqp.close();
    }
    await expectAuditFailures(rest, mark, [{ subject: 'device', identity: 'd1', protocol: 'amqp', reason: /devices\/d2/ }], [], 500);
  });
});
