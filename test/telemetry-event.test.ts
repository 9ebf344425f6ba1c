/**
 * telemetryEvent's stamps and the stored text of its system properties: the JSON it makes with a
 * connection's fixed stamps serialized once must be exactly what JSON.stringify of the properties
 * makes (the SQL log stores it instead, and the JetStream log in its record header), whatever the
 * device set.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DeviceIdentity } from '../src/auth/device-authenticator.js';
import { telemetryEvent } from '../src/hub/telemetry/telemetry-event.js';
import { decodeRecord, encodeRecord as encodeJetStreamRecord } from '../src/log/jetstream/record-codec.js';
import { encodeRecord } from '../src/log/log-ports.js';

const NOW = '2026-12-06T08:00:00.123Z';

function identity(over: Partial<DeviceIdentity> = {}): DeviceIdentity {
  return {
    deviceId: 'gate-7',
    moduleId: null,
    method: 'sas',
    generationId: '638123456789012345',
    expiresAt: undefined,
    authMethodStamp: '{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}',
    ...over,
  };
}

describe('telemetryEvent', () => {
  const cases: Array<[string, DeviceIdentity, Record<string, string>, string | undefined]> = [
    ['no system properties from the device', identity(), {}, undefined],
    ['message id, content type and encoding', identity(), { 'message-id': 'm-1', 'content-type': 'application/json', 'content-encoding': 'utf-8' }, undefined],
    ['values that JSON escapes', identity(), { 'message-id': 'quote " backslash \\ newline \n tab \t ü €', 'correlation-id': '\u0001' }, undefined],
    ['a module, with a model id', identity({ moduleId: 'camera/1', method: 'x509-ca' }), { 'message-id': 'm-2' }, 'dtmi:com:example:Gate;1'],
    ['a device with a model id', identity(), {}, 'dtmi:com:example:Gate;2'],
  ];
  for (const [name, id, system, modelId] of cases) {
    it(`stores the text JSON.stringify makes: ${name}`, () => {
      const m = telemetryEvent(id, Buffer.from('{}'), system, { app: 'x' }, NOW, undefined, modelId);
      assert.equal(m.systemJson, JSON.stringify(m.systemProperties));
      assert.equal(encodeRecord(m).systemProperties, JSON.stringify(m.systemProperties));
      // The cluster's log (JetStream) stores the same text in its record header, and reads back the same message.
      for (const endpoints of [undefined, ['events', 'archive ü']]) {
        const routed = endpoints === undefined ? m : { ...m, endpoints };
        const payload = Buffer.from(encodeJetStreamRecord(routed, 1765008000123));
        const n = payload.readUInt32BE(0);
        const meta = { d: m.deviceId, m: m.moduleId, p: m.properties, s: m.systemProperties, t: 1765008000123, ...(endpoints === undefined ? {} : { e: endpoints }) };
        assert.equal(payload.subarray(4, 4 + n).toString('utf8'), JSON.stringify(meta));
        const back = decodeRecord(payload);
        assert.deepEqual(back.systemProperties, m.systemProperties);
        assert.deepEqual([back.deviceId, back.moduleId, back.properties, back.body.toString(), back.enqueuedMs, back.endpoints], [m.deviceId, m.moduleId, m.properties, '{}', 1765008000123, endpoints]);
      }
      assert.equal(m.systemProperties['iothub-connection-device-id'], id.deviceId);
      assert.equal(m.systemProperties['iothub-enqueuedtime'], NOW);
      assert.equal(m.systemProperties['dt-dataschema'], modelId);
    });
  }

  it('the same identity twice, and a changed one: each message gets its own stamps', () => {
    const id = identity();
    const a = telemetryEvent(id, Buffer.alloc(0), {}, {}, NOW);
    const b = telemetryEvent(id, Buffer.alloc(0), { 'message-id': 'n' }, {}, '2026-12-06T08:00:01.000Z');
    assert.equal(b.systemJson, JSON.stringify(b.systemProperties));
    id.generationId = '1';
    const c = telemetryEvent(id, Buffer.alloc(0), {}, {}, NOW);
    assert.equal(c.systemJson, JSON.stringify(c.systemProperties));
    assert.notEqual(c.systemJson, a.systemJson);
  });

  it('a device key that is also a stamp: no prepared text, the stamp wins, the store serializes the object', () => {
    const m = telemetryEvent(identity(), Buffer.alloc(0), { 'iothub-enqueuedtime': 'forged', 'message-id': 'm' }, {}, NOW);
    assert.equal(m.systemJson, undefined);
    assert.equal(m.systemProperties['iothub-enqueuedtime'], NOW);
    assert.equal(encodeRecord(m).systemProperties, JSON.stringify(m.systemProperties));
  });
});
