/**
 * What the MQTT broker refuses, driven packet by packet over in-memory connections
 * (support/protocol-harness.ts: the hub's services and the broker as `startHub` wires them, no
 * process, no TLS): each case refused or closed with the right code and a reason in the log,
 * nothing failing inside, a well-behaved device on the same broker unaffected throughout.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Packet } from 'mqtt-packet';
import { connectPacket, deviceToken } from './support/raw-mqtt.js';
import { startProtocolHarness, type HarnessMqtt, type ProtocolHarness } from './support/protocol-harness.js';
import { generateSasToken } from '../src/auth/sas.js';
import { watchedConnections } from '../src/protocol/mqtt/deadlines.js';

let h: ProtocolHarness;
let HOST: string;
const keys = new Map<string, string>();
let control: HarnessMqtt;

async function device(id: string, status: 'enabled' | 'disabled' = 'enabled'): Promise<void> {
  keys.set(id, await h.device(id, status));
}

function key(id: string): string {
  const k = keys.get(id);
  assert.ok(k);
  return k;
}

async function connectRaw(packet: Packet): Promise<{ code: number | undefined; client: HarnessMqtt }> {
  const client = h.mqtt();
  return { code: await client.connect(packet), client };
}

async function connected(id: string): Promise<HarnessMqtt> {
  const { code, client } = await connectRaw(connectPacket(HOST, id, deviceToken(HOST, id, key(id))));
  assert.equal(code, 0);
  return client;
}

/** The control device still gets twin answers: the broker and its other sessions are fine. */
async function controlStillWorks(): Promise<void> {
  control.send({ cmd: 'publish', topic: '$iothub/twin/GET/?$rid=ctl', payload: Buffer.from(' '), qos: 0, retain: false, dup: false });
  const p = await control.next();
  assert.equal(p?.cmd, 'publish');
  assert.match(p?.cmd === 'publish' ? p.topic : '', /^\$iothub\/twin\/res\/200\/\?\$rid=ctl/);
}

/** The reason the broker logged when it closed `client`'s connection. */
function closeReason(client: HarnessMqtt, mark: number): string | undefined {
  const remote = client.connection.remoteAddress;
  const line = h.log.since(mark).find((l) => l.event === 'mqtt.closed' && l.remote === remote);
  return line === undefined ? undefined : String(line.reason);
}

before(async () => {
  h = await startProtocolHarness({ mqttConnectTimeout: 1 });
  HOST = h.hostname;
  for (const id of ['control', 'd1', 'd2', 'victim']) await device(id);
  await device('off', 'disabled');
  control = await connected('control');
  control.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$iothub/twin/res/#', qos: 0 }] });
  assert.equal((await control.next())?.cmd, 'suback');
});

after(async () => {
  control.end();
  await h.close();
});

describe('CONNECT refusals', () => {
  it('bad credentials are CONNACK 4 and look alike; a disabled device is 5', async () => {
    const wrongKey = Buffer.alloc(32, 1).toString('base64');
    const cases: Array<[string, ReturnType<typeof connectPacket>, number]> = [
      ['wrong key', connectPacket(HOST, 'd1', deviceToken(HOST, 'd1', wrongKey)), 4],
      ['expired token', connectPacket(HOST, 'd1', deviceToken(HOST, 'd1', key('d1'), Math.floor(Date.now() / 1000) - 5)), 4],
      ["another device's token", connectPacket(HOST, 'd1', deviceToken(HOST, 'd2', key('d2'))), 4],
      ['unknown device', connectPacket(HOST, 'ghost', deviceToken(HOST, 'ghost', wrongKey)), 4],
      ['no password, no certificate', connectPacket(HOST, 'd1', undefined), 4],
      ['username for another hub', { ...connectPacket(HOST, 'd1', deviceToken(HOST, 'd1', key('d1'))), username: 'evil.example.com/d1/?api-version=2021-04-12' }, 4],
      ['username for another device', { ...connectPacket(HOST, 'd1', deviceToken(HOST, 'd1', key('d1'))), username: `${HOST}/d2/?api-version=2021-04-12` }, 4],
      ['a policy without DeviceConnect', connectPacket(HOST, 'd1', generateSasToken({ resource: `${HOST}/devices/d1`, key: wrongKey, keyName: 'registryRead', expiry: Math.floor(Date.now() / 1000) + 60 })), 4],
      ['a disabled device with its right key', connectPacket(HOST, 'off', deviceToken(HOST, 'off', key('off'))), 5],
      ['MQTT 3.1', { ...connectPacket(HOST, 'd1', deviceToken(HOST, 'd1', key('d1'))), protocolId: 'MQIsdp', protocolVersion: 3 }, 1],
      ['a client id with a space', connectPacket(HOST, 'bad id', 'x'), 2],
    ];
    for (const [name, packet, expected] of cases) {
      const { code, client } = await connectRaw(packet);
      assert.equal(code, expected, name);
      await client.closed;
    }
    await controlStillWorks();
  });

  it('a refused CONNECT is logged with its reason and code, never with the token it carried', async () => {
    const token = deviceToken(HOST, 'd1', Buffer.alloc(32, 2).toString('base64'));
    const mark = h.log.mark();
    const { code, client } = await connectRaw(connectPacket(HOST, 'd1', token));
    assert.equal(code, 4);
    await client.closed;
    const denied = h.log.since(mark).find((l) => l.event === 'auth.denied' && l.clientId === 'd1');
    assert.ok(denied !== undefined, JSON.stringify(h.log.since(mark)));
    assert.equal(denied.returnCode, 4);
    assert.ok(typeof denied.reason === 'string' && denied.reason !== '');
    const sig = /sig=([^&]+)/.exec(token)?.[1];
    assert.ok(sig !== undefined);
    const logged = JSON.stringify(h.log.since(mark));
    assert.ok(!logged.includes(sig) && !logged.includes(decodeURIComponent(sig)), 'the signature is not in the log');
    assert.deepEqual(h.log.errorsSince(mark), []);
  });

  it('a socket that never sends CONNECT, or sends something else first, is closed', async () => {
    const silent = h.mqtt();
    await silent.closed; // mqttConnectTimeout 1
    const early = h.mqtt();
    early.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '#', qos: 0 }] });
    await early.closed;
    await controlStillWorks();
  });

  it('garbage bytes close that connection only', async () => {
    const g = h.mqtt();
    g.sendRaw(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x13, 0x37]));
    await g.closed;
    const c = await connected('d1');
    c.sendRaw(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await c.closed;
    await controlStillWorks();
  });
});

describe('a protocol violation closes that connection with the reason', () => {
  const cases: Array<[string, (c: HarnessMqtt) => void, RegExp]> = [
    ['a reserved packet type', (c) => c.sendRaw(Buffer.from([0xf0, 0x00])), /^malformed packet/],
    ['a remaining length over the packet limit', (c) => c.sendRaw(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f])), /exceeds/],
    ['a second CONNECT', (c) => c.send(connectPacket(HOST, 'd1', deviceToken(HOST, 'd1', key('d1')))), /second CONNECT \[MQTT-3\.1\.0-2\]/],
    ['a CONNACK from the client', (c) => c.send({ cmd: 'connack', returnCode: 0, sessionPresent: false }), /unexpected connack/],
  ];
  for (const [name, act, reason] of cases) {
    it(name, async () => {
      const c = await connected('d1');
      const mark = h.log.mark();
      act(c);
      await c.closed;
      assert.equal(c.connection.state, 'closed');
      assert.match(closeReason(c, mark) ?? '(no mqtt.closed line)', reason);
      assert.deepEqual(h.log.errorsSince(mark), [], 'nothing failed inside');
      await controlStillWorks();
    });
  }
});

describe('the fixed topic API', () => {
  it("publishing or subscribing on another device's topics, a # subscription, QoS 2, an oversized message: closed", async () => {
    const attempts: Array<[string, (c: HarnessMqtt) => void]> = [
      ['publish as another device', (c) => c.send({ cmd: 'publish', topic: 'devices/d2/messages/events/', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false })],
      ['subscribe to another device', (c) => c.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'devices/d2/messages/devicebound/#', qos: 1 }] })],
      ['subscribe #', (c) => c.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: '#', qos: 0 }] })],
      ['QoS 2', (c) => c.send({ cmd: 'publish', topic: 'devices/d1/messages/events/', payload: Buffer.from('x'), qos: 2, messageId: 4, retain: false, dup: false })],
      ['a free-form topic', (c) => c.send({ cmd: 'publish', topic: 'home/kitchen/temp', payload: Buffer.from('x'), qos: 0, retain: false, dup: false })],
      ['an oversized message', (c) => c.send({ cmd: 'publish', topic: 'devices/d1/messages/events/', payload: Buffer.alloc(300 * 1024, 1), qos: 1, messageId: 5, retain: false, dup: false })],
      ['a second CONNECT', (c) => c.send(connectPacket(HOST, 'd1', deviceToken(HOST, 'd1', key('d1'))))],
    ];
    for (const [name, act] of attempts) {
      const c = await connected('d1');
      act(c);
      const reply = await c.next();
      if (reply !== undefined) assert.notEqual(reply.cmd, 'puback', name);
      await c.closed;
      assert.ok(c.isClosed(), name);
    }
    await controlStillWorks();
  });

  it('its own filters are granted (QoS 2 requests get 1), UNSUBSCRIBE gets UNSUBACK', async () => {
    const c = await connected('d2');
    c.send({
      cmd: 'subscribe',
      messageId: 7,
      subscriptions: [
        { topic: 'devices/d2/messages/devicebound/#', qos: 2 },
        { topic: '$iothub/methods/POST/#', qos: 0 },
      ],
    });
    const suback = await c.next();
    assert.equal(suback?.cmd, 'suback');
    assert.deepEqual(suback?.cmd === 'suback' ? suback.granted : [], [1, 0]);
    c.send({ cmd: 'unsubscribe', messageId: 8, unsubscriptions: ['$iothub/methods/POST/#'] });
    assert.equal((await c.next())?.cmd, 'unsuback');
    c.send({ cmd: 'pingreq' });
    assert.equal((await c.next())?.cmd, 'pingresp');
    c.end();
  });
});

describe('sessions end when they must', () => {
  it('a new CONNECT for the same identity takes over the old one', async () => {
    const first = await connected('d2');
    const second = await connected('d2');
    await first.closed;
    assert.ok(!second.isClosed());
    second.end();
  });

  it('disabling a connected device drops it at once', async () => {
    const c = await connected('victim');
    await h.services.registry.updateDevice('victim', { deviceId: 'victim', status: 'disabled' }, '*');
    await c.closed;
    const again = await connectRaw(connectPacket(HOST, 'victim', deviceToken(HOST, 'victim', key('victim'))));
    assert.equal(again.code, 5);
    await controlStillWorks();
  });

  it("a SAS token's expiry closes the connection at that moment", async () => {
    const se = Math.floor(Date.now() / 1000) + 2;
    const { code, client } = await connectRaw(connectPacket(HOST, 'd1', deviceToken(HOST, 'd1', key('d1'), se)));
    assert.equal(code, 0);
    await client.closed;
    assert.ok(Date.now() >= se * 1000 - 50, 'not before the expiry');
    assert.ok(Date.now() < se * 1000 + 1500, 'promptly after the expiry');
  });

  it('keep-alive is enforced at 1.5 times the client value', async () => {
    const watched = watchedConnections();
    const start = Date.now();
    const { code, client } = await connectRaw({ ...connectPacket(HOST, 'd1', deviceToken(HOST, 'd1', key('d1'))), keepalive: 1 });
    assert.equal(code, 0);
    assert.equal(watchedConnections(), watched + 1, 'the deadline sweep watches the connection');
    await client.closed;
    const elapsed = Date.now() - start;
    assert.ok(elapsed >= 1400 && elapsed < 3000, `closed after ${elapsed} ms`);
    assert.equal(watchedConnections(), watched, 'a closed connection leaves the sweep');
  });
});

describe('twin errors', () => {
  it('a bad reported patch gets a JSON error body with errorCode (the SDK needs one)', async () => {
    const c = await connected('d1');
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$iothub/twin/res/#', qos: 0 }] });
    assert.equal((await c.next())?.cmd, 'suback');
    for (const [rid, body] of [
      ['bad-key', '{"a.b":1}'],
      ['not-json', '{oops'],
      ['too-big', JSON.stringify(Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, 'v'.repeat(1000)])))],
    ] as const) {
      c.send({ cmd: 'publish', topic: `$iothub/twin/PATCH/properties/reported/?$rid=${rid}`, payload: Buffer.from(body), qos: 0, retain: false, dup: false });
      const p = await c.next();
      assert.equal(p?.cmd, 'publish', rid);
      assert.match(p?.cmd === 'publish' ? p.topic : '', new RegExp(`^\\$iothub/twin/res/400/\\?\\$rid=${rid}$`));
      const err = JSON.parse(p?.cmd === 'publish' ? p.payload.toString() : '{}') as { errorCode?: number; message?: string };
      assert.ok(typeof err.errorCode === 'number' && err.errorCode >= 400000, rid);
      assert.ok(err.message, rid);
    }
    c.end();
  });
});
