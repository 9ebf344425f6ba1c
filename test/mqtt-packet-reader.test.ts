/**
 * The MQTT packet reader (src/protocol/mqtt/packet-reader.ts): what one connection sends must
 * never reach, or change how the hub reads, another's: a packet split across reads stays with its
 * connection while others are read, a v5 CONNECT does not switch the next connection's reads to
 * v5, and a malformed packet concerns the connection that sent it only. An idle connection gives
 * its parser back (memory per idle device); one in the middle of a packet never does.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { PacketReader, sweepIdleParsers } from '../src/protocol/mqtt/packet-reader.js';

function connection() {
  const packets: Packet[] = [];
  const errors: string[] = [];
  const reader = new PacketReader({ onPacket: (p) => packets.push(p), onParseError: (e) => errors.push(e.message) });
  return { reader, packets, errors };
}

const publish = (topic: string, payload: string, messageId: number) =>
  mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, messageId, retain: false, dup: false });

describe('MQTT packet reader', () => {
  it('a packet split across reads stays with its connection while others read whole packets', () => {
    const a = connection();
    const b = connection();
    const big = publish('devices/a/messages/events/', 'x'.repeat(3000), 7);
    assert.equal(a.reader.read(big.subarray(0, 100)), big.length - 3, 'the declared length of the packet still coming');
    assert.equal(b.reader.read(Buffer.concat([publish('devices/b/messages/events/', 'b1', 1), mqttPacket.generate({ cmd: 'pingreq' })])), -1);
    assert.equal(a.reader.read(big.subarray(100, 2000)), big.length - 3);
    assert.equal(b.reader.read(publish('devices/b/messages/events/', 'b2', 2)), -1);
    assert.equal(a.reader.read(big.subarray(2000)), -1);
    assert.deepEqual(
      b.packets.map((p) => (p.cmd === 'publish' ? `${p.topic} ${p.payload.toString()}` : p.cmd)),
      ['devices/b/messages/events/ b1', 'pingreq', 'devices/b/messages/events/ b2'],
    );
    assert.equal(a.packets.length, 1);
    const p = a.packets[0];
    assert.ok(p?.cmd === 'publish');
    assert.equal(p.messageId, 7);
    assert.equal(p.payload.toString(), 'x'.repeat(3000));
    assert.deepEqual([...a.errors, ...b.errors], []);
  });

  it("one connection's MQTT 5 CONNECT does not make the next connection's packets read as MQTT 5", () => {
    const v5 = connection();
    v5.reader.read(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'd5', clean: true, keepalive: 60 }, { protocolVersion: 5 }));
    assert.equal(v5.packets[0]?.cmd, 'connect');
    const v4 = connection();
    // Read as v5, a 3.1.1 PUBLISH's payload would lose its first bytes to a "properties length".
    v4.reader.read(publish('devices/d4/messages/events/', 'hello', 3));
    const p = v4.packets[0];
    assert.ok(p?.cmd === 'publish');
    assert.equal(p.payload.toString(), 'hello');
    assert.deepEqual(v4.errors, []);
  });

  it('a malformed packet is an error for its connection only', () => {
    const bad = connection();
    const good = connection();
    // PUBLISH with QoS 3 (both QoS bits set): malformed [MQTT-3.3.1-4].
    bad.reader.read(Buffer.from([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]));
    assert.equal(bad.errors.length, 1);
    good.reader.read(publish('devices/g/messages/events/', 'ok', 4));
    assert.deepEqual(good.errors, []);
    assert.equal(good.packets[0]?.cmd, 'publish');
  });

  it('an idle connection gives its parser back at the sweeps; a busy one, or one in the middle of a packet, keeps it', () => {
    const idle = connection();
    const busy = connection();
    const split = connection();
    const big = publish('devices/s/messages/events/', 'y'.repeat(2000), 9);
    idle.reader.read(publish('devices/i/messages/events/', 'i1', 1));
    busy.reader.read(publish('devices/b/messages/events/', 'b1', 1));
    assert.equal(split.reader.read(big.subarray(0, 500)), big.length - 3);
    sweepIdleParsers();
    assert.ok(idle.reader.holdsParser && busy.reader.holdsParser && split.reader.holdsParser, 'each read since the sweep before');
    busy.reader.read(publish('devices/b/messages/events/', 'b2', 2));
    sweepIdleParsers();
    assert.equal(idle.reader.holdsParser, false, 'idle for a whole interval: no parser');
    assert.equal(busy.reader.holdsParser, true, 'read in the last interval');
    assert.equal(split.reader.holdsParser, true, 'part of a packet is still coming');
    sweepIdleParsers();
    sweepIdleParsers();
    assert.equal(split.reader.holdsParser, true, 'however long the rest takes');
    assert.equal(split.reader.read(big.subarray(500)), -1);
    idle.reader.read(publish('devices/i/messages/events/', 'i2', 2));
    const bodies = (c: ReturnType<typeof connection>) => c.packets.map((p) => (p.cmd === 'publish' ? p.payload.toString() : p.cmd));
    assert.deepEqual(bodies(idle), ['i1', 'i2'], 'a new parser reads the next packet');
    assert.deepEqual(bodies(split), ['y'.repeat(2000)], 'the split packet whole, across four sweeps');
    assert.deepEqual([...idle.errors, ...busy.errors, ...split.errors], []);
    split.reader.dispose();
    assert.equal(split.reader.holdsParser, false);
  });
});
