/**
 * Configuration: the device's persisted settings, stored like the EEPROM block of the founding
 * notes. One binary block:
 *
 *   0  magic "GHGC"        4 bytes
 *   4  format version      u16 (1)
 *   6  reserved            u16 (0)
 *   8  payload length      u32
 *  12  payload             JSON, UTF-8; secret fields sealed (AES-256-GCM, device-unique key)
 *  ..  CRC-32              u32 over everything before it
 *
 * Written atomically (never half a block after a power cut). A missing, truncated, foreign or
 * corrupt block, or one that does not decrypt with this device's key, loads as factory defaults
 * and says why.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { z } from 'zod';
import { writeFileAtomic } from './atomic-file.js';

export const MAGIC = Buffer.from('GHGC');
export const FORMAT_VERSION = 1;
const HEADER = 12;
const SEALED = 'sealed:v1:';

const durationMs = (min: number, max: number, what: string) =>
  z.number({ error: `${what} must be a number of milliseconds` }).int(`${what} must be whole milliseconds`).min(min, `${what} must be at least ${min} ms`).max(max, `${what} must be at most ${max} ms`);

const hubSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('connectionString'),
    /** HostName=...;DeviceId=...;SharedAccessKey=... or x509=true with a bundle. */
    connectionString: z.string().min(1, 'the connection string is empty').max(1024),
  }),
  z.object({
    kind: z.literal('dps'),
    provisioningHost: z.string().min(1, 'the provisioning host is empty').max(253),
    idScope: z.string().regex(/^0ne[0-9A-Fa-f]{8}$/, 'the ID scope looks like 0ne + 8 hex digits'),
    registrationId: z.string().regex(/^[a-z0-9.\-_]{1,128}$/i, 'the registration id is 1-128 of letters, digits, . - _'),
    attestation: z.discriminatedUnion('type', [
      z.object({ type: z.literal('symmetricKey'), key: z.string().min(1, 'the symmetric key is empty') }),
      z.object({ type: z.literal('x509'), certPem: z.string().includes('BEGIN CERTIFICATE', { message: 'the certificate is not PEM' }), chainPem: z.string().optional(), keyPem: z.string().includes('PRIVATE KEY', { message: 'the private key is not PEM' }) }),
    ]),
    /** EST renewal: the hub's base URL and the group label (the certificate authenticates). */
    est: z.object({ url: z.string().url(), group: z.string().min(1) }).optional(),
  }),
]);

export const configSchema = z.object({
  /** `setup` until configured (and after a factory reset), then `web` or `hub`. */
  mode: z.enum(['setup', 'web', 'hub']),
  network: z.object({ ssid: z.string().min(1, 'the network name is empty').max(32, 'a Wi-Fi network name is at most 32 bytes'), password: z.string().max(63, 'a WPA2 passphrase is at most 63 characters') }).optional(),
  hub: hubSchema.optional(),
  relay: z.object({ pulseMs: durationMs(50, 60_000, 'the relay pulse') }),
  button: z
    .object({ softResetMs: durationMs(1000, 60_000, 'the soft-reset press'), factoryResetMs: durationMs(2000, 120_000, 'the factory-reset press') })
    .refine((b) => b.factoryResetMs > b.softResetMs, { message: 'the factory-reset press must be longer than the soft-reset press', path: ['factoryResetMs'] }),
});

export type DeviceConfig = z.infer<typeof configSchema>;

export const DEFAULT_CONFIG: DeviceConfig = {
  mode: 'setup',
  relay: { pulseMs: 1000 },
  button: { softResetMs: 5000, factoryResetMs: 20_000 },
};

/** Every problem with a candidate configuration, one message each, by field. */
export function validateConfig(candidate: unknown): { ok: true; config: DeviceConfig } | { ok: false; problems: Array<{ field: string; message: string }> } {
  const r = configSchema.safeParse(candidate);
  if (r.success) {
    if (r.data.mode === 'hub' && r.data.hub === undefined) return { ok: false, problems: [{ field: 'hub', message: 'hub mode needs a connection string or DPS settings' }] };
    if (r.data.mode !== 'setup' && r.data.network === undefined) return { ok: false, problems: [{ field: 'network.ssid', message: 'choose the Wi-Fi network the device joins' }] };
    return { ok: true, config: r.data };
  }
  return { ok: false, problems: r.error.issues.map((i) => ({ field: i.path.join('.') || 'config', message: i.message })) };
}

/** Secret fields, by path: sealed at rest, never logged. */
const SECRET_PATHS = ['network.password', 'hub.connectionString', 'hub.attestation.key', 'hub.attestation.keyPem'];

function mapSecrets(config: unknown, fn: (value: string, path: string) => string): unknown {
  const copy = structuredClone(config) as Record<string, unknown>;
  for (const path of SECRET_PATHS) {
    const parts = path.split('.');
    let node: Record<string, unknown> | undefined = copy;
    for (const p of parts.slice(0, -1)) node = node?.[p] as Record<string, unknown> | undefined;
    const last = parts[parts.length - 1] ?? '';
    if (node !== undefined && typeof node[last] === 'string') node[last] = fn(node[last], path);
  }
  return copy;
}

function seal(key: Buffer, value: string, path: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(Buffer.from(path));
  const ct = Buffer.concat([c.update(value, 'utf8'), c.final()]);
  return SEALED + Buffer.concat([iv, c.getAuthTag(), ct]).toString('base64');
}

function unseal(key: Buffer, value: string, path: string): string {
  if (!value.startsWith(SEALED)) throw new Error(`${path} is stored in clear text`);
  const raw = Buffer.from(value.slice(SEALED.length), 'base64');
  const d = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
  d.setAAD(Buffer.from(path));
  d.setAuthTag(raw.subarray(12, 28));
  return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
}

export function encodeBlock(config: DeviceConfig, key: Buffer): Buffer {
  const payload = Buffer.from(JSON.stringify(mapSecrets(config, (v, p) => seal(key, v, p))), 'utf8');
  const header = Buffer.alloc(HEADER);
  MAGIC.copy(header, 0);
  header.writeUInt16BE(FORMAT_VERSION, 4);
  header.writeUInt16BE(0, 6);
  header.writeUInt32BE(payload.length, 8);
  const body = Buffer.concat([header, payload]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body) >>> 0, 0);
  return Buffer.concat([body, crc]);
}

/** The configuration in a block, or why it cannot be used. */
export function decodeBlock(block: Buffer, key: Buffer): { ok: true; config: DeviceConfig } | { ok: false; reason: string } {
  if (block.length < HEADER + 4) return { ok: false, reason: `the block has ${block.length} bytes, fewer than a header` };
  if (!block.subarray(0, 4).equals(MAGIC)) return { ok: false, reason: 'the block does not start with the magic number' };
  const version = block.readUInt16BE(4);
  if (version !== FORMAT_VERSION) return { ok: false, reason: `format version ${version} is not ${FORMAT_VERSION}` };
  const length = block.readUInt32BE(8);
  if (block.length !== HEADER + length + 4) return { ok: false, reason: `the block is ${block.length} bytes, not the ${HEADER + length + 4} its header says (truncated or padded)` };
  const stored = block.readUInt32BE(HEADER + length);
  const actual = crc32(block.subarray(0, HEADER + length)) >>> 0;
  if (stored !== actual) return { ok: false, reason: `CRC mismatch (stored ${stored.toString(16)}, computed ${actual.toString(16)})` };
  let parsed: unknown;
  try {
    parsed = mapSecrets(JSON.parse(block.subarray(HEADER, HEADER + length).toString('utf8')), (v, p) => unseal(key, v, p));
  } catch (err) {
    return { ok: false, reason: `the settings do not decrypt with this device's key (${(err as Error).message})` };
  }
  const v = validateConfig(parsed);
  if (!v.ok) return { ok: false, reason: `the stored settings are invalid: ${v.problems.map((p) => `${p.field}: ${p.message}`).join('; ')}` };
  return { ok: true, config: v.config };
}

export interface LoadedConfig {
  config: DeviceConfig;
  source: 'stored' | 'defaults';
  /** Why the defaults were used (missing file, CRC mismatch, ...). */
  reason?: string;
}

/** Persisted settings in one file, sealed with the device-unique key. */
export class ConfigurationStore {
  constructor(
    private readonly file: string,
    private readonly key: Buffer,
  ) {}

  load(): LoadedConfig {
    if (!existsSync(this.file)) return { config: structuredClone(DEFAULT_CONFIG), source: 'defaults', reason: 'no stored settings (first boot or after a factory reset)' };
    let block: Buffer;
    try {
      block = readFileSync(this.file);
    } catch (err) {
      return { config: structuredClone(DEFAULT_CONFIG), source: 'defaults', reason: `cannot read the settings: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
    }
    const r = decodeBlock(block, this.key);
    return r.ok ? { config: r.config, source: 'stored' } : { config: structuredClone(DEFAULT_CONFIG), source: 'defaults', reason: r.reason };
  }

  save(config: DeviceConfig): void {
    const v = validateConfig(config);
    if (!v.ok) throw new Error(`invalid settings: ${v.problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`);
    writeFileAtomic(this.file, encodeBlock(v.config, this.key), 0o600);
  }

  /** Factory reset: the settings are gone; the next boot is a first boot. */
  wipe(): void {
    rmSync(this.file, { force: true });
  }
}
