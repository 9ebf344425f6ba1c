/**
 * bench/pki: device certificates signed per second (issue "Device PKI").
 *
 * (a) In process: CertificateAuthority.sign over a SQLite store, for ECDSA P-256 and RSA-2048
 *     device CSRs under a P-256 CA, and under an RSA-2048 CA. Every sign checks the CSR (parse,
 *     key policy, signature), builds and signs the certificate, and commits its record. CSRs are
 *     made before the measured window. Side by side, the ceiling: the same number of bare
 *     signatures with node:crypto by the same CA key (what signing costs with no PKI around it).
 * (b) Over EST against a `gatehouse start`: simpleenroll with a factory credential through the
 *     keep-alive EstClient the factory line uses, 8 in flight; CSRs made before the window.
 *
 *   node dist/bench/pki.js [--count 2000] [--est-count 1000] [--write]
 */
import { createPrivateKey, randomBytes, sign as nodeSign, type webcrypto } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as x509 from '@peculiar/x509';
import { SecretBox } from '../src/core/secret-box.js';
import { EstClient } from '../src/factory/est-client.js';
import { CertificateAuthority, type KeyAlg } from '../src/pki/authority.js';
import { CaCertificates } from '../src/pki/ca-certificates.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { cli, removeDir, startHubProcess } from '../test/support/hub-process.js';
import { arg, writeBenchmarkSection } from './support.js';
import { HubBus } from '../src/bus/subjects.js';
import { LocalBus } from '../src/bus/local/local-bus.js';

x509.cryptoProvider.set(globalThis.crypto);

const SECTION_TITLE = '## Device PKI: certificates signed per second (bench/pki)';
const HUB_ADDR = '127.0.62.1';

async function makeCsrs(count: number, alg: 'p256' | 'rsa2048', prefix: string): Promise<string[]> {
  const out: string[] = [];
  // RSA key generation is slow; a few keys are reused across CSRs (the signature still differs by CN).
  const keyCount = alg === 'rsa2048' ? Math.min(count, 16) : count;
  const keys: webcrypto.CryptoKeyPair[] = [];
  for (let i = 0; i < keyCount; i++) {
    const params = alg === 'rsa2048' ? { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' } : { name: 'ECDSA', namedCurve: 'P-256' };
    keys.push((await crypto.subtle.generateKey(params, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair);
  }
  for (let i = 0; i < count; i++) {
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: `CN=${prefix}${i}`,
      keys: keys[i % keyCount]!,
      signingAlgorithm: alg === 'rsa2048' ? { name: 'RSASSA-PKCS1-v1_5' } : ({ name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams),
    });
    out.push(csr.toString('pem'));
  }
  return out;
}

interface Row {
  what: string;
  count: number;
  perSecond: number;
  ceiling: number | undefined;
}

async function inProcess(count: number): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-bench-pki-'));
  const store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(randomBytes(32)));
  const clock = { now: () => Date.now() };
  const cas = new CaCertificates(store.certificates, clock);
  const authority = new CertificateAuthority(store, cas, clock, new HubBus(new LocalBus({ nodeId: 'bench' }), 'bench'));
  const rows: Row[] = [];
  try {
    for (const caAlg of ['p256', 'rsa2048'] as KeyAlg[]) {
      await authority.createCa({ name: `root-${caAlg}`, alg: caAlg });
      await authority.createCa({ name: `ca-${caAlg}`, parent: `root-${caAlg}`, alg: caAlg });
      const caKey = createPrivateKey(await authority.exportKey(`ca-${caAlg}`));
      for (const deviceAlg of ['p256', 'rsa2048'] as const) {
        const csrs = await makeCsrs(count, deviceAlg, `${caAlg}-${deviceAlg}-`);
        await authority.sign(csrs[0]!, { caName: `ca-${caAlg}`, deviceId: `${caAlg}-${deviceAlg}-0`, validityDays: 365 }); // warm
        const t0 = performance.now();
        for (let i = 1; i < count; i++) await authority.sign(csrs[i]!, { caName: `ca-${caAlg}`, deviceId: `${caAlg}-${deviceAlg}-${i}`, validityDays: 365 });
        const perSecond = (count - 1) / ((performance.now() - t0) / 1000);
        // The ceiling: bare signatures of a certificate-sized message with the same CA key.
        const tbs = randomBytes(400);
        const t1 = performance.now();
        for (let i = 1; i < count; i++) nodeSign('sha256', tbs, caKey);
        const ceiling = (count - 1) / ((performance.now() - t1) / 1000);
        rows.push({ what: `sign, ${deviceAlg === 'p256' ? 'ECDSA P-256' : 'RSA-2048'} device CSR, ${caAlg === 'p256' ? 'P-256' : 'RSA-2048'} CA`, count: count - 1, perSecond, ceiling });
      }
    }
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

async function overEst(count: number): Promise<Row> {
  const hub = await startHubProcess({ address: HUB_ADDR, useTestCa: false, extraArgs: ['--log-level', 'warn'] });
  try {
    const info = JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as { caFile: string; dpsConnectionString: string };
    const ca = readFileSync(info.caFile, 'utf8');
    for (const a of [['-n', 'bench-root'], ['-n', 'bench-ca', '--parent', 'bench-root']]) {
      const r = cli(['ca', 'create', '--data-dir', hub.dataDir, ...a]);
      if (r.status !== 0) throw new Error(r.stderr);
    }
    const { restClient, policyKey } = await import('../test/support/rest.js');
    const dps = restClient(HUB_ADDR, ca, policyKey(hub.dataDir, 'provisioningserviceowner'), 'provisioningserviceowner');
    const g = await dps('PUT', '/enrollmentGroups/bench-line', { enrollmentGroupId: 'bench-line', attestation: { type: 'x509', x509: { caReferences: { primary: 'bench-ca' } } } });
    if (g.status !== 200) throw new Error(`group: ${g.status}`);
    const created = cli(['est', 'credential', 'create', '--data-dir', hub.dataDir, '--group', 'bench-line', '--id', 'bench-station']);
    if (created.status !== 0) throw new Error(created.stderr);
    const password = (JSON.parse(created.stdout) as { password: string }).password;
    const csrs = await makeCsrs(count, 'p256', 'est-');
    const client = new EstClient({ host: HUB_ADDR, label: 'bench-line', ca, basic: { id: 'bench-station', password }, maxSockets: 8 });
    try {
      await client.enroll(csrs[0]!);
      let next = 1;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < count) await client.enroll(csrs[next++]!);
        }),
      );
      return { what: 'EST simpleenroll over HTTPS (P-256 devices, P-256 CA, 8 in flight, hub process)', count: count - 1, perSecond: (count - 1) / ((performance.now() - t0) / 1000), ceiling: undefined };
    } finally {
      client.close();
    }
  } finally {
    await hub.stop();
    removeDir(hub.dataDir);
  }
}

async function main(): Promise<void> {
  const count = arg('count', 2000);
  const estCount = arg('est-count', 1000);
  const rows = [...(await inProcess(count)), await overEst(estCount)];
  const table = [
    '| What | Certificates | Signed per second | Bare CA signatures per second (ceiling) | Ratio |',
    '|---|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.what} | ${r.count} | ${r.perSecond.toFixed(0)} | ${r.ceiling === undefined ? '—' : r.ceiling.toFixed(0)} | ${r.ceiling === undefined ? '—' : (r.perSecond / r.ceiling).toFixed(2)} |`),
  ].join('\n');
  process.stdout.write(`${table}\n`);
  if (process.argv.includes('--write')) {
    writeBenchmarkSection(
      SECTION_TITLE,
      `${SECTION_TITLE}

Measured ${new Date().toISOString().slice(0, 10)} on ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, Node ${process.version}, with \`npm run bench:pki\`.
In process, each signature checks the CSR (parse, key policy, proof of possession), builds and signs
the certificate, and commits its record to SQLite; the ceiling is bare \`crypto.sign\` with the same
CA key on a certificate-sized message, no PKI around it. Over EST, the hub process also authenticates
the factory credential, checks the registration id holds no other active certificate, and answers
certs-only CMS; the EstClient (the factory line's) runs in the same machine, 8 requests in flight.

${table}
`,
    );
  }
}

await main();
