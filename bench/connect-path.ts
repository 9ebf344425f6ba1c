/**
 * bench/connect-path: what the hub's own code costs per MQTT connect, without TLS (issue 19, item
 * 4). The broker and the hub's services in one process (test/support/protocol-harness.ts: SQLite,
 * the local bus, in-memory streams instead of sockets), N devices connecting and disconnecting in
 * turn with bounded concurrency: CONNECT (SAS token, or a self-signed X.509 certificate given as
 * the TLS peer chain), CONNACK, DISCONNECT, the server side closed. Prints the process CPU
 * (user + system, from process.cpuUsage) per connect, which includes the client side of the
 * in-memory pair (mqtt-packet, the same in every build). Builds are compared by running this file
 * from each build's dist in alternation; TLS costs the same in both and is left out.
 *
 *   node dist/bench/connect-path.js [--devices 500] [--connects 4000] [--concurrency 32] [--x509 1]
 */
import { X509Certificate } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { startProtocolHarness } from '../test/support/protocol-harness.js';
import { connectPacket } from '../test/support/mqtt-packets.js';
import { deviceToken } from '../test/support/raw-mqtt.js';
import { makeSelfSigned, thumbprints } from '../test/support/pki.js';
import { arg, runPool } from './support.js';

const nDevices = arg('devices', 500);
const nConnects = arg('connects', 4000);
const concurrency = arg('concurrency', 32);
const withX509 = arg('x509', 1) > 0;

const h = await startProtocolHarness();
const sas: Array<{ id: string; token: string }> = [];
for (let i = 0; i < nDevices; i++) {
  const id = `cp-${i}`;
  const key = await h.device(id);
  sas.push({ id, token: deviceToken(h.hostname, id, key, Math.floor(Date.now() / 1000) + 3600) });
}
const x509: Array<{ id: string; chain: X509Certificate[] }> = [];
for (let i = 0; withX509 && i < nDevices; i++) {
  const id = `cpx-${i}`;
  const c = await makeSelfSigned(id);
  const tp = thumbprints(c.certPem).sha1;
  await h.services.registry.createDevice(id, { deviceId: id, authentication: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: tp, secondaryThumbprint: tp } } });
  x509.push({ id, chain: [new X509Certificate(c.certPem)] });
}

async function run(kind: 'sas' | 'x509', n: number): Promise<{ us: number; errors: number; seconds: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await runPool(n, concurrency, performance.now() + 120_000, async (i) => {
    const d = kind === 'sas' ? sas[i % sas.length]! : x509[i % x509.length]!;
    const conn = h.mqtt(kind === 'sas' ? {} : { chain: (d as { chain: X509Certificate[] }).chain });
    const code = await conn.connect(connectPacket(h.hostname, d.id, kind === 'sas' ? (d as { token: string }).token : undefined));
    if (code !== 0) throw new Error(`CONNACK ${String(code)}`);
    conn.send({ cmd: 'disconnect' });
    await conn.closed;
  });
  const c = process.cpuUsage(c0);
  return { us: (c.user + c.system) / n, errors: r.errors, seconds: (performance.now() - t0) / 1000 };
}

const out: string[] = [];
for (const kind of withX509 ? (['sas', 'x509'] as const) : (['sas'] as const)) {
  await run(kind, Math.min(nConnects, 1000)); // warm-up: JIT, and every device connected once
  const r = await run(kind, nConnects);
  out.push(`${kind} ${r.us.toFixed(0)} µs/connect (${nConnects} connects in ${r.seconds.toFixed(1)} s, ${r.errors} failed)`);
}
await h.close();
process.stdout.write(`${out.join('; ')}\n`);
process.exit(0);
