/**
 * `npm run bench:bus [-- --messages N --requests N]`: what the bus costs, in-process and on the
 * NATS at 127.0.0.1:4222 (GATEHOUSE_TEST_NATS_URL): typed notifications per second from one
 * publisher to one subscriber (JSON envelope included), request/reply round trips between two
 * nodes' connections, and a direct method through MethodService from one node to a session held
 * by the other (no device network: the session answers at once), p50/p99.
 */
import { randomUUID } from 'node:crypto';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Bus } from '../src/bus/bus.js';
import { LocalBus } from '../src/bus/local/local-bus.js';
import { connectNatsBus } from '../src/bus/nats/nats-bus.js';
import { HubBus, SUBJECTS } from '../src/bus/subjects.js';
import type { JsonObject, JsonValue } from '../src/core/json.js';
import { ConnectionTable, type LiveSession } from '../src/hub/connections.js';
import { MethodService } from '../src/hub/methods/method-service.js';
import { MessageTally } from '../src/core/tally.js';
import { arg, percentile, writeBenchmarkSection } from './support.js';

const NATS = process.env.GATEHOUSE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
const MESSAGES = arg('messages', 100_000);
const REQUESTS = arg('requests', 2_000);

interface Row {
  bus: string;
  perSecond: number;
  rttP50: number;
  rttP99: number;
  methodP50: number;
  methodP99: number;
}

async function throughput(pub: HubBus, sub: HubBus): Promise<number> {
  let got = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const s = sub.subscribe(SUBJECTS.c2dEnqueued, () => {
    if (++got === MESSAGES) done();
  });
  await sub.bus.flush();
  const t0 = performance.now();
  for (let i = 0; i < MESSAGES; i++) {
    pub.publish(SUBJECTS.c2dEnqueued, { deviceId: `device-${i % 1000}`, cause: 'sent' });
    // Let the NATS client write out now and then, as a server's event loop would.
    if (i % 5000 === 4999) await new Promise((r) => setImmediate(r));
  }
  await all;
  const s1 = (performance.now() - t0) / 1000;
  s.unsubscribe();
  return MESSAGES / s1;
}

async function roundTrips(asker: Bus, answerer: Bus, prefix: string): Promise<number[]> {
  const subject = `${prefix}.rtt`;
  answerer.subscribe(subject, (m) => void m.respond(m.data));
  await answerer.flush();
  const payload = new TextEncoder().encode(JSON.stringify({ node: 'x', data: { deviceId: 'd', methodName: 'm', payload: { a: 1 } } }));
  const out: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const t = performance.now();
    await asker.request(subject, payload, { timeoutMs: 5000 });
    out.push(performance.now() - t);
  }
  return out.sort((a, b) => a - b);
}

async function methodTrips(caller: HubBus, holder: HubBus): Promise<number[]> {
  const holderConnections = new ConnectionTable(holder, new MessageTally());
  const holderMethods = new MethodService(holderConnections, holder, new MessageTally());
  const callerMethods = new MethodService(new ConnectionTable(caller, new MessageTally()), caller, new MessageTally());
  const session: LiveSession = {
    deviceId: 'bench-device',
    moduleId: null,
    close: () => undefined,
    pushDesired: (_p: JsonObject) => true,
    sendMethodRequest(_name: string, payload: JsonValue, requestId: string) {
      queueMicrotask(() => holderMethods.respond('bench-device', null, requestId, 200, payload));
      return true;
    },
    notifyC2d: () => undefined,
    acceptsMethods: () => true,
  };
  holderConnections.register(session);
  await holder.bus.flush();
  const out: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const t = performance.now();
    await callerMethods.invoke('bench-device', null, { methodName: 'ping', payload: { i }, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 0 });
    out.push(performance.now() - t);
  }
  return out.sort((a, b) => a - b);
}

async function measure(name: string, open: (node: string) => Promise<Bus>): Promise<Row> {
  const prefix = `bench${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const a = await open('node-a');
  // In-process, both "nodes" are one bus (one process); on NATS, two connections.
  const b = a.kind === 'local' ? a : await open('node-b');
  const hubA = new HubBus(a, prefix);
  const hubB = new HubBus(b, prefix);
  try {
    const perSecond = await throughput(hubA, hubB);
    const rtt = await roundTrips(a, b, prefix);
    const method = await methodTrips(hubA, hubB);
    return { bus: name, perSecond, rttP50: percentile(rtt, 50), rttP99: percentile(rtt, 99), methodP50: percentile(method, 50), methodP99: percentile(method, 99) };
  } finally {
    await a.close();
    if (b !== a) await b.close();
  }
}

const rows = [
  await measure('in-process', async (node) => new LocalBus({ nodeId: node })),
  await measure(`NATS (${NATS.replace(/\/\/[^@]*@/, '//')})`, (node) => connectNatsBus({ nodeId: node, url: NATS })),
];
const ms = (v: number) => v.toFixed(3);
const table = [
  '| bus | notifications/s (1 publisher → 1 subscriber) | request/reply p50 ms | p99 ms | method, node A → session on node B, p50 ms | p99 ms |',
  '|---|---:|---:|---:|---:|---:|',
  ...rows.map((r) => `| ${r.bus} | ${Math.round(r.perSecond).toLocaleString('en-US')} | ${ms(r.rttP50)} | ${ms(r.rttP99)} | ${ms(r.methodP50)} | ${ms(r.methodP99)} |`),
].join('\n');
console.log(table);
if (process.argv.includes('--write')) {
  writeBenchmarkSection(
    '## Bus: notifications and round trips (bench/bus)',
    `## Bus: notifications and round trips (bench/bus)

\`npm run bench:bus\` (${MESSAGES.toLocaleString('en-US')} notifications, ${REQUESTS.toLocaleString('en-US')} sequential requests and methods), on ${cpus().length} cores shared with other work, NATS on loopback. A notification is a \`c2d.enqueued\` with its JSON envelope; the method goes through MethodService on one node to a session held by the other node's connection registry, which answers at once (no device network), so it is the bus's share of a cross-node direct method.

${table}
`,
  );
}
