/**
 * The factory line (issue "Device PKI", step 4). A station plays N devices on the line: each
 * device makes its own key pair and CSR (`DeviceOnTheLine`, standing in for the device's secure
 * element and flash); the station sees only the CSR, submits it over EST with its factory
 * credential, and hands the certificate and chain back to the device, which writes its bundle:
 *
 *   OUT/devices/<id>/device.key   the device's private key (0600), written by the device
 *   OUT/devices/<id>/device.csr   its request
 *   OUT/devices/<id>/device.crt   the certificate the hub's CA signed
 *   OUT/devices/<id>/chain.pem    certificate + CA chain, leaf first (what TLS presents)
 *   OUT/devices/<id>/bundle.json  registration id, ID scope, provisioning host, serial, expiry
 *   OUT/manifest.json, manifest.csv  every device: id, serial, thumbprint, expiry
 *
 * Resumable: a device with a bundle is done; one with a key but no bundle resubmits the same CSR,
 * and EST answers a repeated key with the certificate it already issued, so an interruption
 * between signing and writing loses nothing and signs nothing twice. Every file is written to a
 * temporary name and renamed, so a crash never leaves half a file.
 */
import { createPrivateKey, KeyObject, X509Certificate, type webcrypto } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { EstClient, EstError } from './est-client.js';

x509.cryptoProvider.set(globalThis.crypto);

export type DeviceKeyAlg = 'p256' | 'rsa2048';

export interface FactoryRunOptions {
  group: string;
  count: number;
  out: string;
  /** host[:port] of the hub (EST, and the provisioning host written into bundles). */
  host: string;
  idScope: string;
  ca?: string;
  basic?: { id: string; password: string };
  clientCert?: { cert: string; key: string };
  /** Device ids are prefix + a zero-padded number (default: the group id and '-'). */
  prefix?: string;
  /** First number (default 1). */
  first?: number;
  alg?: DeviceKeyAlg;
  /** At most this many devices per second (default: as fast as the hub answers). */
  rate?: number;
  /** Devices in flight (default 8). */
  concurrency?: number;
  onProgress?: (p: FactoryProgress) => void;
}

export interface FactoryProgress {
  done: number;
  total: number;
  issued: number;
  resumed: number;
  failed: number;
  perSecond: number;
}

export interface ManifestEntry {
  deviceId: string;
  serial: string;
  thumbprint: string;
  notAfter: string;
}

export interface Bundle extends ManifestEntry {
  registrationId: string;
  idScope: string;
  provisioningHost: string;
  enrollmentGroupId: string;
  key: string;
  certificate: string;
  chain: string;
}

export interface FactoryResult {
  issued: number;
  resumed: number;
  failures: Array<{ deviceId: string; error: string }>;
  manifest: ManifestEntry[];
  seconds: number;
}

function writeAtomic(file: string, data: string, mode = 0o644): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, file);
}

/** One device on the line: its key is made here and stays in its own directory. */
export class DeviceOnTheLine {
  constructor(
    readonly deviceId: string,
    readonly dir: string,
  ) {}

  get done(): boolean {
    return existsSync(join(this.dir, 'bundle.json'));
  }

  /** The device's CSR, making its key first unless it already has one (a resumed run). */
  async csr(alg: DeviceKeyAlg): Promise<{ csrPem: string; resumed: boolean }> {
    const csrFile = join(this.dir, 'device.csr');
    if (existsSync(csrFile) && existsSync(join(this.dir, 'device.key'))) return { csrPem: readFileSync(csrFile, 'utf8'), resumed: true };
    mkdirSync(this.dir, { recursive: true });
    const params =
      alg === 'rsa2048'
        ? { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' }
        : { name: 'ECDSA', namedCurve: 'P-256' };
    const keys = (await crypto.subtle.generateKey(params, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: new x509.Name([{ CN: [this.deviceId] }]),
      keys,
      signingAlgorithm: alg === 'rsa2048' ? { name: 'RSASSA-PKCS1-v1_5' } : ({ name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams),
    });
    // The key first: a CSR on disk always has its key beside it.
    writeAtomic(join(this.dir, 'device.key'), KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
    const csrPem = `${csr.toString('pem')}\n`;
    writeAtomic(csrFile, csrPem);
    return { csrPem, resumed: false };
  }

  /** Stores what the station handed back, bundle last (its presence means done). */
  store(certPem: string, caChain: string[], meta: { idScope: string; provisioningHost: string; enrollmentGroupId: string }): Bundle {
    const cert = new X509Certificate(certPem);
    // The hub's CA signed what this device asked for, with this device's key.
    if (!cert.checkPrivateKey(createPrivateKey(readFileSync(join(this.dir, 'device.key'), 'utf8')))) {
      throw new Error(`the certificate returned for ${this.deviceId} does not carry its key`);
    }
    writeAtomic(join(this.dir, 'device.crt'), certPem);
    writeAtomic(join(this.dir, 'chain.pem'), certPem + caChain.map((c) => `${c.trim()}\n`).join(''));
    const bundle: Bundle = {
      deviceId: this.deviceId,
      registrationId: this.deviceId,
      serial: cert.serialNumber.toLowerCase(),
      thumbprint: cert.fingerprint256.replace(/:/g, ''),
      notAfter: new Date(cert.validTo).toISOString(),
      ...meta,
      key: 'device.key',
      certificate: 'device.crt',
      chain: 'chain.pem',
    };
    writeAtomic(join(this.dir, 'bundle.json'), `${JSON.stringify(bundle, null, 2)}\n`);
    return bundle;
  }
}

/** The device ids of a run: prefix + number, zero-padded to the width of the last one. */
export function deviceIds(prefix: string, first: number, count: number): string[] {
  const width = String(first + count - 1).length;
  return Array.from({ length: count }, (_, i) => `${prefix}${String(first + i).padStart(Math.max(4, width), '0')}`);
}

/** Every bundle under OUT, as manifest rows in device id order. */
export function readManifest(out: string): ManifestEntry[] {
  const dir = join(out, 'devices');
  if (!existsSync(dir)) return [];
  const rows: ManifestEntry[] = [];
  for (const id of readdirSync(dir).sort()) {
    const file = join(dir, id, 'bundle.json');
    if (!existsSync(file)) continue;
    const b = JSON.parse(readFileSync(file, 'utf8')) as Bundle;
    rows.push({ deviceId: b.deviceId, serial: b.serial, thumbprint: b.thumbprint, notAfter: b.notAfter });
  }
  return rows;
}

function csvField(v: string): string {
  return /[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

export function writeManifest(out: string, rows: ManifestEntry[]): void {
  writeAtomic(join(out, 'manifest.json'), `${JSON.stringify(rows, null, 2)}\n`);
  const csv = ['deviceId,serial,thumbprint,notAfter', ...rows.map((r) => [r.deviceId, r.serial, r.thumbprint, r.notAfter].map(csvField).join(','))];
  writeAtomic(join(out, 'manifest.csv'), `${csv.join('\n')}\n`);
}

export async function runFactory(opts: FactoryRunOptions): Promise<FactoryResult> {
  if (!Number.isInteger(opts.count) || opts.count < 1) throw new Error('count must be a positive whole number');
  const started = Date.now();
  const ids = deviceIds(opts.prefix ?? `${opts.group}-`, opts.first ?? 1, opts.count);
  mkdirSync(join(opts.out, 'devices'), { recursive: true });
  const est = new EstClient({
    host: opts.host,
    label: opts.group,
    ...(opts.ca === undefined ? {} : { ca: opts.ca }),
    ...(opts.basic === undefined ? {} : { basic: opts.basic }),
    ...(opts.clientCert === undefined ? {} : { clientCert: opts.clientCert }),
    maxSockets: opts.concurrency ?? 8,
  });
  const progress: FactoryProgress = { done: 0, total: ids.length, issued: 0, resumed: 0, failed: 0, perSecond: 0 };
  const failures: FactoryResult['failures'] = [];
  const meta = { idScope: opts.idScope, provisioningHost: opts.host, enrollmentGroupId: opts.group };
  let fatal: Error | undefined;
  let nextSlot = Date.now();
  const interval = opts.rate === undefined ? 0 : 1000 / opts.rate;
  let cursor = 0;
  try {
    const caChain = await est.caCerts();
    const report = () => {
      progress.perSecond = progress.issued / Math.max(0.001, (Date.now() - started) / 1000);
      opts.onProgress?.({ ...progress });
    };
    const worker = async () => {
      while (fatal === undefined && cursor < ids.length) {
        const id = ids[cursor++]!;
        const device = new DeviceOnTheLine(id, join(opts.out, 'devices', id));
        if (device.done) {
          progress.done++;
          progress.resumed++;
          report();
          continue;
        }
        if (interval > 0) {
          const wait = nextSlot - Date.now();
          nextSlot = Math.max(Date.now(), nextSlot) + interval;
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        }
        try {
          const { csrPem } = await device.csr(opts.alg ?? 'p256');
          const certPem = await est.enroll(csrPem);
          device.store(certPem, caChain, meta);
          progress.issued++;
        } catch (err) {
          // A refused credential refuses every device: stop the line instead of failing N times.
          if (err instanceof EstError && (err.status === 401 || err.status === 403)) fatal = err;
          failures.push({ deviceId: id, error: (err as Error).message });
          progress.failed++;
        }
        progress.done++;
        report();
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 8, ids.length) }, worker));
  } finally {
    est.close();
  }
  if (fatal !== undefined) throw fatal;
  const manifest = readManifest(opts.out);
  writeManifest(opts.out, manifest);
  return { issued: progress.issued, resumed: progress.resumed, failures, manifest, seconds: (Date.now() - started) / 1000 };
}
