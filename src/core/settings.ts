/**
 * Hub settings: the security switches Azure spreads over ARM properties (disableLocalAuth,
 * disableDeviceSAS, disableModuleSAS, minTlsVersion, IP filter rules, C2D defaults), here one
 * versioned resource that changes at run time and applies at once to every listener and to the
 * provisioning service. Stored as one JSON document in the meta table; every change bumps the
 * version and the etag, and a write under a stale etag fails.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { HubError } from './errors.js';

export const TLS_VERSIONS = ['1.0', '1.1', '1.2', '1.3'] as const;
export type TlsVersion = (typeof TLS_VERSIONS)[number];

/** Node's names for the TLS versions. */
export const NODE_TLS: Record<TlsVersion, 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3'> = {
  '1.0': 'TLSv1',
  '1.1': 'TLSv1.1',
  '1.2': 'TLSv1.2',
  '1.3': 'TLSv1.3',
};

/** `TLSv1.2` (as a socket reports it) -> 1.2; unknown -> 0. */
export function tlsRank(version: string | undefined): number {
  switch (version) {
    case 'TLSv1':
    case '1.0':
      return 1.0;
    case 'TLSv1.1':
    case '1.1':
      return 1.1;
    case 'TLSv1.2':
    case '1.2':
      return 1.2;
    case 'TLSv1.3':
    case '1.3':
      return 1.3;
    default:
      return 0;
  }
}

/** `a.b.c.d/n`, `a.b.c.d` (= /32), an IPv6 prefix or address. */
export function parseIpMask(mask: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [address = '', bits, extra] = mask.trim().split('/');
  if (extra !== undefined) return undefined;
  const v = isIP(address);
  if (v === 0) return undefined;
  const max = v === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) return undefined;
  return { address, prefix, family: v === 4 ? 'ipv4' : 'ipv6' };
}

const ipFilterRule = z.object({
  /** Unique, 1-128 characters (Azure's filterName). */
  filterName: z.string().min(1).max(128).regex(/^[A-Za-z0-9._-]+$/, 'filterName: letters, digits, . _ -'),
  action: z.enum(['Accept', 'Reject']),
  /** CIDR: 10.0.0.0/8, 192.168.1.7, 2001:db8::/32. */
  ipMask: z.string().refine((m) => parseIpMask(m) !== undefined, 'ipMask must be an IPv4 or IPv6 address or CIDR range'),
});

const durationIso = z.string().regex(/^PT(\d+H)?(\d+M)?(\d+S)?$/, 'an ISO 8601 duration like PT1H or PT30M').refine((d) => d !== 'PT', 'an ISO 8601 duration like PT1H');

export const settingsBody = z
  .object({
    disableLocalAuth: z.boolean(),
    disableDeviceSAS: z.boolean(),
    disableModuleSAS: z.boolean(),
    minTlsVersion: z.enum(TLS_VERSIONS),
    ipFilter: z
      .object({
        /** What an address no rule matches gets. */
        defaultAction: z.enum(['Accept', 'Reject']),
        /** In order; the first rule whose mask matches decides. At most 100 (Azure's limit). */
        rules: z.array(ipFilterRule).max(100),
      })
      .strict()
      .refine((f) => new Set(f.rules.map((r) => r.filterName.toLowerCase())).size === f.rules.length, 'ipFilter rule names must be unique'),
    c2d: z
      .object({
        /** TTL of a message sent without one (Azure default PT1H, at most PT48H). */
        defaultTtlAsIso8601: durationIso,
        /** Deliveries before a message is dead-lettered (1-100, Azure default 10). */
        maxDeliveryCount: z.number().int().min(1).max(100),
      })
      .strict(),
    /**
     * File upload [DOCS: Configure IoT Hub file uploads]: Azure's enableFileUploadNotifications,
     * messagingEndpoints.fileNotifications (ttlAsIso8601, maxDeliveryCount) and
     * storageEndpoints.$default.sasTtlAsIso8601.
     */
    fileUpload: z
      .object({
        /** Whether a completed upload sends a notification to the service (filenotifications link). */
        notifications: z.boolean(),
        /** How long a notification waits for a receiver (PT1M to PT48H, Azure default PT1H). */
        notificationTtlAsIso8601: durationIso,
        /** Deliveries of a notification before it is dropped (1-100, Azure default 10). */
        notificationMaxDeliveryCount: z.number().int().min(1).max(100),
        /** How long the SAS URI a device gets stays valid (PT1M to PT24H, Azure default PT1H). */
        sasTtlAsIso8601: durationIso,
      })
      .strict(),
    auditLog: z.object({ enabled: z.boolean() }).strict(),
    lockout: z
      .object({
        enabled: z.boolean(),
        /** Failures from one address for one (claimed) identity in the window before that address is locked for it. */
        maxFailures: z.number().int().min(1).max(1000),
        /** Failures from one address (IPv6: one /64) in the window before it is locked for what it failed at (NAT: set it higher). */
        maxFailuresPerAddress: z.number().int().min(1).max(100_000),
        windowSeconds: z.number().int().min(10).max(86_400),
        /** First lockout; each further one within a day doubles it, up to maxLockoutSeconds. */
        lockoutSeconds: z.number().int().min(1).max(86_400),
        maxLockoutSeconds: z.number().int().min(1).max(604_800),
      })
      .strict(),
  })
  .strict();

export type HubSettingsBody = z.infer<typeof settingsBody>;
export type IpFilterRule = z.infer<typeof ipFilterRule>;

export interface HubSettings extends HubSettingsBody {
  version: number;
  etag: string;
  updatedAt: string;
  /** `policy:<name>`, `operator:<id>`, `cli`, `hub` (defaults). */
  updatedBy: string;
}

export const DEFAULT_SETTINGS: HubSettingsBody = {
  disableLocalAuth: false,
  disableDeviceSAS: false,
  disableModuleSAS: false,
  minTlsVersion: '1.2',
  ipFilter: { defaultAction: 'Accept', rules: [] },
  c2d: { defaultTtlAsIso8601: 'PT1H', maxDeliveryCount: 10 },
  fileUpload: { notifications: true, notificationTtlAsIso8601: 'PT1H', notificationMaxDeliveryCount: 10, sasTtlAsIso8601: 'PT1H' },
  auditLog: { enabled: true },
  lockout: { enabled: true, maxFailures: 10, maxFailuresPerAddress: 100, windowSeconds: 600, lockoutSeconds: 60, maxLockoutSeconds: 3600 },
};

/** ISO 8601 duration (PT#H#M#S) in ms. */
export function isoDurationMs(d: string): number {
  const m = /^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$/.exec(d);
  if (m === null) return NaN;
  return ((Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0)) * 60 + Number(m[3] ?? 0)) * 1000;
}

/** Deep merge of a JSON merge patch (RFC 7386) onto the settings body; arrays replace. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const base = target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete base[k];
    else base[k] = mergePatch(base[k], v);
  }
  return base;
}

/** Validates a full settings body: every problem in one ArgumentInvalid. */
export function parseSettingsBody(value: unknown): HubSettingsBody {
  const r = settingsBody.safeParse(value);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);
    throw new HubError('ArgumentInvalid', `Invalid settings: ${problems.join('; ')}`);
  }
  const lock = r.data.lockout;
  if (lock.maxLockoutSeconds < lock.lockoutSeconds) throw new HubError('ArgumentInvalid', 'Invalid settings: lockout.maxLockoutSeconds is below lockout.lockoutSeconds');
  const ttl = isoDurationMs(r.data.c2d.defaultTtlAsIso8601);
  if (!(ttl >= 60_000 && ttl <= 48 * 3600_000)) throw new HubError('ArgumentInvalid', 'Invalid settings: c2d.defaultTtlAsIso8601 must be between PT1M and PT48H');
  const notificationTtl = isoDurationMs(r.data.fileUpload.notificationTtlAsIso8601);
  if (!(notificationTtl >= 60_000 && notificationTtl <= 48 * 3600_000)) throw new HubError('ArgumentInvalid', 'Invalid settings: fileUpload.notificationTtlAsIso8601 must be between PT1M and PT48H');
  const sasTtl = isoDurationMs(r.data.fileUpload.sasTtlAsIso8601);
  if (!(sasTtl >= 60_000 && sasTtl <= 24 * 3600_000)) throw new HubError('ArgumentInvalid', 'Invalid settings: fileUpload.sasTtlAsIso8601 must be between PT1M and PT24H');
  return r.data;
}

export function bodyOf(s: HubSettings): HubSettingsBody {
  const { version: _v, etag: _e, updatedAt: _u, updatedBy: _b, ...body } = s;
  return body;
}
