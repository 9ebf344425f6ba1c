/**
 * The Event Hubs-compatible endpoint's own message encoder (src/protocol/amqp/eventhub-encode.ts)
 * writes exactly the bytes rhea's generic encoder writes for the same message, for every shape a
 * log record takes: with and without message properties, module, application properties,
 * runtime metrics; short and long strings, Unicode, empty and large bodies, small and large
 * sequence numbers; and what decodes from them is what the SDK's rhea reads.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import rhea from 'rhea';
import type { LogRecord } from '../src/log/log-ports.js';
import { encodeEventHubMessage } from '../src/protocol/amqp/eventhub-encode.js';
import { eventHubMessage } from '../src/protocol/amqp/eventhub-message.js';

function record(over: Partial<LogRecord> = {}): LogRecord {
  return {
    deviceId: 'dev-1',
    moduleId: null,
    partition: 2,
    sequenceNumber: 5,
    offset: '1234',
    enqueuedTime: '2030-01-01T00:00:00.123Z',
    body: Buffer.from('{"temp":21}'),
    properties: {},
    systemProperties: {
      'iothub-connection-device-id': 'dev-1',
      'iothub-connection-auth-method': '{"scope":"device","type":"sas","issuer":"iothub"}',
      'iothub-connection-auth-generation-id': '638000000000000000',
      'iothub-enqueuedtime': '2030-01-01T00:00:00.120Z',
      'iothub-message-source': 'Telemetry',
    },
    ...over,
  };
}

const long = (n: number, c = 'x') => c.repeat(n);
const runtime = { partition: 2, beginningSequenceNumber: 0, lastEnqueuedSequenceNumber: 9_000_000_000, lastEnqueuedOffset: '99999', lastEnqueuedTimeUtc: '2030-01-01T00:00:01.000Z', isEmpty: false, retrievedAt: new Date('2030-01-01T00:00:02.000Z') };

const cases: Array<[string, LogRecord, typeof runtime | undefined]> = [
  ['a plain device message', record(), undefined],
  ['sequence number 0', record({ sequenceNumber: 0 }), undefined],
  ['sequence number 127', record({ sequenceNumber: 127 }), undefined],
  ['sequence number 128', record({ sequenceNumber: 128 }), undefined],
  ['sequence number 2^40', record({ sequenceNumber: 2 ** 40, offset: '1099511627776' }), undefined],
  [
    'every message property',
    record({
      systemProperties: {
        'message-id': 'm-1',
        'correlation-id': 'c-1',
        'user-id': 'üser',
        to: '/devices/dev-1/messages/events',
        'content-type': 'application/json',
        'content-encoding': 'utf-8',
        'absolute-expiry-time': '2030-02-01T00:00:00.000Z',
        'iothub-connection-device-id': 'dev-1',
        'iothub-enqueuedtime': '2030-01-01T00:00:00.120Z',
      },
    }),
    undefined,
  ],
  ['only a content type (a list with nulls before it)', record({ systemProperties: { 'content-type': 'application/json' } }), undefined],
  ['an expiry time that is not a time, an enqueued time that is not one', record({ systemProperties: { 'absolute-expiry-time': 'soon', 'iothub-enqueuedtime': 'later' } }), undefined],
  ['a module and application properties', record({ moduleId: 'mod', properties: { level: 'critical', 'ünïcode-kéy': 'välue ✓', empty: '' }, systemProperties: { 'iothub-connection-module-id': 'mod', 'iothub-connection-device-id': 'dev-1' } }), undefined],
  ['integer-like property names (JavaScript orders them first)', record({ properties: { b: '1', '7': 'seven', a: '2' }, systemProperties: { z: 'z', '3': 'three' } }), undefined],
  ['strings of 255 and 256 bytes, 85 and 86 three-byte characters', record({ properties: { s255: long(255), s256: long(256), u85: long(85, '€'), u86: long(86, '€'), [long(300)]: 'long key' }, systemProperties: { 'message-id': long(300), 'content-type': long(256), [long(256, 'k')]: 'v' } }), undefined],
  ['an empty body', record({ body: Buffer.alloc(0) }), undefined],
  ['a body of 256 bytes', record({ body: Buffer.alloc(256, 7) }), undefined],
  ['a body of 70 kB', record({ body: Buffer.alloc(70_000, 9) }), undefined],
  ['runtime metrics', record(), runtime],
  ['no system properties at all', record({ systemProperties: {} }), runtime],
  ['an x-opt- system property (handed to rhea)', record({ systemProperties: { 'x-opt-offset': 'mine' } }), undefined],
];

describe("the Event Hubs endpoint's message encoder", () => {
  for (const [name, r, rt] of cases) {
    it(`writes rhea's bytes: ${name}`, () => {
      const mine = encodeEventHubMessage(r, rt);
      const theirs = rhea.message.encode(eventHubMessage(r, rt));
      assert.equal(mine.toString('hex'), theirs.toString('hex'));
    });
  }

  it('decodes to the record: annotations, properties, application properties, body', () => {
    const r = cases[5]?.[1] as LogRecord;
    const m = rhea.message.decode(encodeEventHubMessage({ ...r, properties: { level: 'critical' } }));
    assert.equal(m.message_id, 'm-1');
    assert.equal(m.content_type, 'application/json');
    assert.deepEqual(m.application_properties, { level: 'critical' });
    assert.equal((m.message_annotations as Record<string, unknown>)['x-opt-offset'], '1234');
    assert.equal((m.message_annotations as Record<string, unknown>)['x-opt-sequence-number'], 5);
    assert.deepEqual((m.message_annotations as Record<string, unknown>)['x-opt-enqueued-time'], new Date('2030-01-01T00:00:00.123Z'));
    assert.equal(Buffer.from((m.body as { content: Buffer }).content).toString(), '{"temp":21}');
  });

  it('hands out a buffer of its own (the next message does not overwrite it)', () => {
    const a = encodeEventHubMessage(record({ body: Buffer.from('first') }));
    const copy = Buffer.from(a);
    encodeEventHubMessage(record({ body: Buffer.from('second, longer') }));
    assert.ok(a.equals(copy));
  });
});
