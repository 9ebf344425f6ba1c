/**
 * A hub stand-in for the file endpoint's crash test: delivers batches of partition 0 to a file
 * sink on the directory in argv[2] as fast as it can, and prints `acked <last sequence number>`
 * after each deliver resolved, until it is killed.
 */
import { createFileSink } from '../../src/routing/endpoints/file-sink.js';
import { routedBatch } from '../../src/routing/endpoints/sink.case.js';

const directory = process.argv[2]!;
const sink = createFileSink({ name: 'crash', directory, fileNameFormat: '{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}', batchFrequencyInSeconds: 60, maxChunkSizeInBytes: 10_485_760, encoding: 'json' }, { hubName: 'case-hub' });
const padding = 'x'.repeat(4000);
let next = 0;
for (;;) {
  const batch = routedBatch(0, next, 100).map((m) => ({ ...m, enrichments: { ...m.enrichments, padding } }));
  await sink.deliver(batch);
  next += batch.length;
  process.stdout.write(`acked ${next - 1}\n`);
}
