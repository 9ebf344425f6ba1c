/**
 * `npm run bench:routing-endpoints [-- --seconds S --batch B]`: what one dispatcher gets through
 * each endpoint type, delivering batches of B messages (300-byte JSON bodies) back to back, each
 * awaited before the next as the dispatcher does: messages/s and the batch latency p50/p99.
 *
 * Targets on this machine: an HTTPS receiver in this process (webhook `json` and `raw`), NATS
 * JetStream at 127.0.0.1:4222 (a stream of its own, file storage), PostgreSQL at 127.0.0.1:5432
 * (db `test`, a schema of its own), RabbitMQ at 127.0.0.1:5672 (a durable queue of its own), a
 * temp directory. Everything made is removed afterwards.
 *
 *   node dist/bench/routing-endpoints.js [--seconds 3] [--batch 100] [--write]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as natsConnect } from '@nats-io/transport-node';
import amqp from 'amqplib';
import pg from 'pg';
import { createDevRootCa, issueServerCertificate } from '../src/pki/dev-ca.js';
import { createSink } from '../src/routing/endpoints/create-sink.js';
import type { EndpointSink, RoutedMessage } from '../src/routing/endpoints/sink.js';
import type { AnyEndpoint } from '../src/routing/routing-config.js';
import { arg, percentile, writeBenchmarkSection } from './support.js';

const SECONDS = arg('seconds', 3);
const BATCH = arg('batch', 100);
const SECTION_TITLE = '## Routing: endpoint delivery per dispatcher (bench/routing-endpoints)';
const id = randomBytes(4).toString('hex');

function batch(from: number): RoutedMessage[] {
  return Array.from({ length: BATCH }, (_, k) => {
    const n = from + k;
    const body = Buffer.from(JSON.stringify({ ts: '2026-12-03T13:30:00.000Z', temperature: 20 + (n % 20), rh: 41, status: 'ok', battery: { level: n % 100 }, firmware: '2.4', location: { site: 'plant-7', line: 3 }, readings: [12.5, 33.1, 40], pad: 'x'.repeat(120) }));
    return {
      record: {
        deviceId: `sensor-${n % 50}`,
        moduleId: null,
        body,
        properties: { processingPath: 'hot' },
        systemProperties: { 'content-type': 'application/json', 'content-encoding': 'utf-8', 'message-id': `m-${n}`, 'iothub-connection-device-id': `sensor-${n % 50}` },
        partition: 0,
        sequenceNumber: n,
        offset: String(n),
        enqueuedTime: new Date().toISOString(),
      },
      enrichments: { site: 'plant-7' },
    };
  });
}

interface Row {
  what: string;
  perSecond: number;
  p50: number;
  p99: number;
}

async function measure(what: string, sink: EndpointSink): Promise<Row> {
  let n = 0;
  for (let i = 0; i < 5; i++, n += BATCH) await sink.deliver(batch(n)); // warm up: connect, create
  const latencies: number[] = [];
  const t0 = performance.now();
  let delivered = 0;
  while (performance.now() - t0 < SECONDS * 1000) {
    const b = batch(n);
    const s = performance.now();
    await sink.deliver(b);
    latencies.push(performance.now() - s);
    n += BATCH;
    delivered += BATCH;
  }
  const ms = performance.now() - t0;
  await sink.close();
  latencies.sort((a, b) => a - b);
  return { what, perSecond: (delivered / ms) * 1000, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const deps = { hubName: 'bench-hub' };
  const open = (e: AnyEndpoint) => createSink(e, deps);

  const ca = await createDevRootCa({ commonName: 'bench CA', validityDays: 1 });
  const cert = await issueServerCertificate(ca, { hostname: '127.0.0.1', validityDays: 1 });
  const server = https.createServer({ key: cert.keyPem, cert: cert.chainPem }, (req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/in`;
  for (const format of ['json', 'raw'] as const) {
    rows.push(await measure(`webhook ${format} (HTTPS, signed)`, open({ type: 'webhooks', config: { name: 'w', url, format, secret: 'bench-secret-0123456789', ca: ca.certPem } })));
  }
  server.close();

  const nc = await natsConnect({ servers: '127.0.0.1:4222' });
  const jsm = await jetstreamManager(nc);
  const stream = `gh-bench-${id}`;
  await jsm.streams.add({ name: stream, subjects: [`ghbench.${id}`] });
  try {
    rows.push(await measure('NATS JetStream (one publish acked at a time)', open({ type: 'natsJetStream', config: { name: 'n', servers: 'nats://127.0.0.1:4222', subject: `ghbench.${id}` } })));
  } finally {
    await jsm.streams.delete(stream);
    await nc.close();
  }

  const schema = `gh_bench_${id}`;
  try {
    rows.push(await measure('PostgreSQL (one INSERT per batch, synchronous_commit on)', open({ type: 'postgresTables', config: { name: 'p', connectionString: 'postgres://postgres@127.0.0.1:5432/test', table: `${schema}.telemetry` } })));
  } finally {
    const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  }

  const conn = await amqp.connect('amqp://guest:guest@127.0.0.1:5672');
  const ch = await conn.createChannel();
  const exchange = `gh-bench-${id}`;
  await ch.assertExchange(exchange, 'topic', { durable: false });
  await ch.assertQueue(exchange, { durable: true });
  await ch.bindQueue(exchange, exchange, '#');
  try {
    rows.push(await measure('RabbitMQ (confirms, persistent, durable queue)', open({ type: 'rabbitMqExchanges', config: { name: 'r', url: 'amqp://guest:guest@127.0.0.1:5672', exchange, routingKey: '{deviceId}' } })));
  } finally {
    await ch.deleteQueue(exchange);
    await ch.deleteExchange(exchange);
    await conn.close();
  }

  const dir = mkdtempSync(join(tmpdir(), 'gh-bench-files-'));
  try {
    rows.push(await measure('files (append + fdatasync per batch)', open({ type: 'files', config: { name: 'f', directory: dir, fileNameFormat: '{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}', batchFrequencyInSeconds: 300, maxChunkSizeInBytes: 314_572_800, encoding: 'json' } })));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const table = [
    '| endpoint | messages/s | batch p50 ms | batch p99 ms |',
    '|---|---:|---:|---:|',
    ...rows.map((r) => `| ${r.what} | ${Math.round(r.perSecond).toLocaleString('en-US')} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} |`),
  ].join('\n');
  const section = [
    SECTION_TITLE,
    '',
    `\`node dist/bench/routing-endpoints.js --seconds ${SECONDS} --batch ${BATCH}\` on ${cpu} (${cpus().length} cores, shared), Node ${process.version}.`,
    `One sink, batches of ${BATCH} messages of one partition (~300-byte JSON bodies) delivered back to back, each awaited`,
    'before the next, as one dispatcher (one endpoint, one partition) does; servers on the same machine.',
    '',
    table,
    '',
  ].join('\n');
  console.log(section);
  if (process.argv.includes('--write')) writeBenchmarkSection(SECTION_TITLE, section);
}

await main();
