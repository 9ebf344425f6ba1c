/**
 * Telemetry properties over MQTT, packet by packet (support/protocol-harness.ts: the hub's services
 * and the broker as `startHub` wires them): each message stored with exactly the properties of its
 * own topic's property bag and retain flag, whatever the connection sent before (the broker keeps
 * the last bag's parse per connection, so these are the cases where a shared parse would leak).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { partitionOf } from '../src/log/partition-key.js';
import { connectPacket, deviceToken } from './support/raw-mqtt.js';
import { startProtocolHarness, type ProtocolHarness } from './support/protocol-harness.js';

let h: ProtocolHarness;

before(async () => {
  h = await startProtocolHarness();
});

after(async () => {
  await h.close();
});

describe('MQTT telemetry properties', () => {
  it('each message has its own bag and retain flag, not the previous message of the connection', async () => {
    const key = await h.device('props-1');
    const c = h.mqtt();
    assert.equal(await c.connect(connectPacket(h.hostname, 'props-1', deviceToken(h.hostname, 'props-1', key))), 0);
    const sends: Array<[string, boolean]> = [
      ['a=1&$.ct=application%2Fjson', false],
      ['a=1&$.ct=application%2Fjson', true],
      ['a=1&$.ct=application%2Fjson', false],
      ['b=2', false],
      ['', false],
      ['a=1&$.ct=application%2Fjson', false],
    ];
    let id = 1;
    for (const [bag, retain] of sends) {
      c.send({ cmd: 'publish', topic: `devices/props-1/messages/events/${bag}`, payload: Buffer.from(`m${id}`), qos: 1, messageId: id, retain, dup: false });
      const ack = await c.next();
      assert.equal(ack?.cmd, 'puback');
      id++;
    }
    c.end();
    const log = h.prepared.eventLog.log;
    const records = (await log.read(partitionOf('props-1', log.partitionCount), 'earliest', 100)).filter((r) => r.deviceId === 'props-1');
    assert.deepEqual(
      records.map((r) => ({ body: r.body.toString(), app: r.properties, ct: r.systemProperties['content-type'] })),
      [
        { body: 'm1', app: { a: '1' }, ct: 'application/json' },
        { body: 'm2', app: { a: '1', 'mqtt-retain': 'true' }, ct: 'application/json' },
        { body: 'm3', app: { a: '1' }, ct: 'application/json' },
        { body: 'm4', app: { b: '2' }, ct: undefined },
        { body: 'm5', app: {}, ct: undefined },
        { body: 'm6', app: { a: '1' }, ct: 'application/json' },
      ],
    );
  });
});
