/**
 * `npm run bench:eventhub-encode [-- --seconds S]`: what encoding one telemetry record for an Event
 * Hubs reader costs on the hub's main thread (src/protocol/amqp/eventhub-encode.ts), side by side
 * with rhea's generic encoder of the same message (`message.encode(eventHubMessage(r))`, what the
 * hub used before it had its own; the two give the same bytes, test/eventhub-encode.test.ts).
 *
 * Records as telemetry makes them: a JSON body of 120 bytes, the system properties an MQTT device's
 * message carries (content type and encoding, the connection's device id, auth method and
 * generation id, the enqueued time, the source), and, in the second row, three application
 * properties, one of them not ASCII. The third row adds the runtime metrics a reader can ask for.
 *
 *   node dist/bench/eventhub-encode.js [--seconds 1] [--write]
 */
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import rhea from 'rhea';
import type { LogRecord } from '../src/log/log-ports.js';
import { encodeEventHubMessage } from '../src/protocol/amqp/eventhub-encode.js';
import { eventHubMessage } from '../src/protocol/amqp/eventhub-message.js';
import { arg, table, writeBenchmarkSection } from './support.js';

const SECONDS = arg('seconds', 1);
const SECTION_TITLE = '## Event Hubs endpoint: a record encoded for a reader (bench/eventhub-encode)';

function record(i: number, properties: Record<string, string> = {}): LogRecord {
  const deviceId = `device-${String(i % 100).padStart(4, '0')}`;
  return {
    deviceId,
    moduleId: null,
    partition: i % 4,
    sequenceNumber: 1_000_000 + i,
    offset: String(400_000_000 + i * 300),
    enqueuedTime: '2026-12-06T23:00:00.123Z',
    body: Buffer.from(JSON.stringify({ temperature: 20 + (i % 20), status: i % 7 === 0 ? 'alarm' : 'ok', battery: { level: i % 100 }, firmware: '2.4.1', location: { site: 'plant-7', line: 3 } })),
    properties,
    systemProperties: {
      'content-type': 'application/json',
      'content-encoding': 'utf-8',
      'iothub-connection-device-id': deviceId,
      'iothub-connection-auth-method': '{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}',
      'iothub-connection-auth-generation-id': '638000000000000042',
      'iothub-enqueuedtime': '2026-12-06T23:00:00.120Z',
      'iothub-message-source': 'Telemetry',
    },
  };
}

const runtime = { partition: 2, beginningSequenceNumber: 0, lastEnqueuedSequenceNumber: 9_000_000, lastEnqueuedOffset: '2700000000', lastEnqueuedTimeUtc: '2026-12-06T23:00:01.000Z', isEmpty: false, retrievedAt: new Date('2026-12-06T23:00:02.000Z') };

/** Encodes for SECONDS (after a warm-up of a fifth of that); returns ns per record. */
function measure(records: LogRecord[], encode: (r: LogRecord) => Buffer): number {
  let sink = 0;
  const run = (ms: number): number => {
    let n = 0;
    const end = performance.now() + ms;
    while (performance.now() < end) {
      for (const r of records) sink += encode(r).length;
      n += records.length;
    }
    return n;
  };
  run(SECONDS * 200);
  const t0 = performance.now();
  const n = run(SECONDS * 1000);
  const ns = ((performance.now() - t0) * 1e6) / n;
  if (sink < 0) console.log(sink);
  return ns;
}

const scenarios: Array<[string, LogRecord[], typeof runtime | undefined]> = [
  ['device telemetry, no application properties', Array.from({ length: 97 }, (_, i) => record(i)), undefined],
  ['with 3 application properties (one not ASCII)', Array.from({ length: 97 }, (_, i) => record(i, { level: 'critical', site: 'plant-7', note: 'température élevée' })), undefined],
  ['with the runtime metrics a reader asked for', Array.from({ length: 97 }, (_, i) => record(i)), runtime],
];

const rows: string[][] = [];
for (const [name, records, rt] of scenarios) {
  const ours = measure(records, (r) => encodeEventHubMessage(r, rt));
  const rheas = measure(records, (r) => rhea.message.encode(eventHubMessage(r, rt)));
  const bytes = encodeEventHubMessage(records[0] as LogRecord, rt).length;
  rows.push([name, `${bytes} B`, `${(ours / 1000).toFixed(2)} µs`, `${(rheas / 1000).toFixed(2)} µs`, `${(rheas / ours).toFixed(1)}×`]);
}

const section =
  `${SECTION_TITLE}\n\n` +
  `Measured ${new Date().toISOString().slice(0, 10)} on ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, one thread, ${SECONDS} s per cell after a warm-up.\n\n` +
  table(['record', 'encoded', 'eventhub-encode.ts per record', "rhea's message.encode(eventHubMessage(r)) per record", 'ours faster by'], rows) +
  '\n';
console.log(section);
if (process.argv.includes('--write')) writeBenchmarkSection(SECTION_TITLE, section);
