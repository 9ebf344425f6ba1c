/**
 * Alert rules: what an operator may set (validated with zod, every refusal a 400 AlertRuleInvalid
 * naming the field), the defaults a new hub starts with, and how a rule is shown (never with its
 * webhook secret).
 *
 * Windowed kinds fire when MORE than `threshold` events fall in the last `windowSeconds`
 * ("more than 10 in 10 minutes": the 11th fires) and resolve when the count is back to at most
 * `threshold`:
 * - `authFailures`: failed authentications (SecurityEvents `auth`, outcome failure), across the
 *   hub (`scope: hub`) or per identity (`scope: device`, keyed `<subject>:<identity>`); with
 *   `reasons`, only failures of those reason codes (`cross_device`, `tls_version`, ...);
 * - `c2dDeadLetters`: cloud-to-device messages dead-lettered (delivery count exceeded);
 * - `disconnectStorm`: device sessions ending.
 * `certificateExpiry` fires per certificate (the CA certificates registered on the hub, and the newest
 * unrevoked certificate Gatehouse issued to each device) expiring within `days` days.
 */
import { z } from 'zod';
import { HubError } from '../core/errors.js';
import type { JsonObject } from '../core/json.js';
import type { AlertRuleKind, AlertRuleRecord } from '../store/alert-ports.js';
import { AUTH_FAILURE_CODES } from '../core/security-events.js';

export const ALERT_RULE_KINDS: readonly AlertRuleKind[] = ['authFailures', 'c2dDeadLetters', 'certificateExpiry', 'disconnectStorm'];
export const WINDOWED_KINDS: ReadonlySet<AlertRuleKind> = new Set(['authFailures', 'c2dDeadLetters', 'disconnectStorm']);
/** The key of hub-wide counts. */
export const HUB_KEY = 'hub';
export const RULE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
export const MAX_RULES = 100;
export const MAX_THRESHOLD = 1_000_000;
/** One day: longer windows would hold too many event times. */
export const MAX_WINDOW_SECONDS = 86_400;
export const MAX_EXPIRY_DAYS = 3650;

export function invalidRule(message: string): HubError {
  return new HubError('AlertRuleInvalid', message);
}

export function validateRuleName(name: string): string {
  if (!RULE_NAME.test(name)) throw invalidRule(`The rule name '${name.slice(0, 80)}' must be 1-64 of A-Z a-z 0-9 _ . -`);
  return name;
}

function isWebhookUrl(raw: string): boolean {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return false;
  }
  return (u.protocol === 'http:' || u.protocol === 'https:') && u.username === '' && u.password === '' && u.hostname !== '';
}

const threshold = z.number({ error: `must be an integer from 0 to ${MAX_THRESHOLD}` }).int(`must be an integer from 0 to ${MAX_THRESHOLD}`).min(0, `must be an integer from 0 to ${MAX_THRESHOLD}`).max(MAX_THRESHOLD, `must be an integer from 0 to ${MAX_THRESHOLD}`);
const windowSeconds = z
  .number({ error: `must be an integer from 1 to ${MAX_WINDOW_SECONDS}` })
  .int(`must be an integer from 1 to ${MAX_WINDOW_SECONDS}`)
  .min(1, `must be an integer from 1 to ${MAX_WINDOW_SECONDS}`)
  .max(MAX_WINDOW_SECONDS, `must be an integer from 1 to ${MAX_WINDOW_SECONDS}`);
const days = z.number({ error: `must be an integer from 1 to ${MAX_EXPIRY_DAYS}` }).int(`must be an integer from 1 to ${MAX_EXPIRY_DAYS}`).min(1, `must be an integer from 1 to ${MAX_EXPIRY_DAYS}`).max(MAX_EXPIRY_DAYS, `must be an integer from 1 to ${MAX_EXPIRY_DAYS}`);

const webhook = z.strictObject(
  {
    url: z
      .string({ error: 'must be a string' })
      .max(2048, 'must be at most 2048 characters')
      .refine(isWebhookUrl, 'must be an http:// or https:// URL without user name or password (sign with secret instead)'),
    /** Omitted: keep the current secret if the URL is unchanged; null: no secret. */
    secret: z.string({ error: 'must be a string or null' }).min(16, 'must be 16 to 256 characters').max(256, 'must be 16 to 256 characters').nullable().optional(),
  },
  { error: 'must be an object with url and optionally secret, or null' },
);

const common = {
  enabled: z.boolean({ error: 'must be true or false' }).optional(),
  actions: z
    .strictObject(
      {
        log: z.boolean({ error: 'must be true or false' }).optional(),
        webhook: webhook.nullable().optional(),
      },
      { error: 'must be an object with log and/or webhook' },
    )
    .optional(),
};

const SCHEMAS = {
  authFailures: z.strictObject({
    kind: z.literal('authFailures'),
    scope: z.enum(['hub', 'device'], { error: 'must be hub or device' }).optional(),
    reasons: z
      .array(z.enum(AUTH_FAILURE_CODES, { error: `must each be one of ${AUTH_FAILURE_CODES.join(', ')}` }), { error: 'must be a list of reason codes' })
      .min(1, 'must name at least one reason code (omit it for every failure)')
      .refine((r) => new Set(r).size === r.length, 'must not repeat a reason code')
      .optional(),
    threshold,
    windowSeconds,
    ...common,
  }),
  c2dDeadLetters: z.strictObject({ kind: z.literal('c2dDeadLetters'), threshold, windowSeconds, ...common }),
  disconnectStorm: z.strictObject({ kind: z.literal('disconnectStorm'), threshold, windowSeconds, ...common }),
  certificateExpiry: z.strictObject({ kind: z.literal('certificateExpiry'), days, ...common }),
} as const;

/** A rule as an operator sends it (PUT /alerts/rules/{name}). */
export interface AlertRuleInput {
  kind: AlertRuleKind;
  enabled: boolean;
  scope: 'hub' | 'device' | null;
  /** authFailures: only these reason codes; null: every failure. */
  reasons: string[] | null;
  threshold: number | null;
  windowSeconds: number | null;
  days: number | null;
  log: boolean;
  webhook: { url: string; secret: string | null | undefined } | null;
}

function valueAt(body: unknown, path: readonly PropertyKey[]): unknown {
  let v = body;
  for (const k of path) v = typeof v === 'object' && v !== null ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

function describeIssue(issue: z.core.$ZodIssue, body: unknown): string {
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const where = path === '' ? '' : ` in ${path}`;
    return `unknown field${issue.keys.length > 1 ? 's' : ''}${where}: ${issue.keys.join(', ')}`;
  }
  if (issue.code === 'invalid_type' && valueAt(body, issue.path) === undefined) return `${path} is required`;
  return `${path === '' ? 'the body' : path} ${issue.message}`;
}

/** Validates a rule body; AlertRuleInvalid with the first problem, naming the field. */
export function parseRuleInput(body: unknown): AlertRuleInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalidRule('The rule must be a JSON object with kind.');
  const kind = (body as { kind?: unknown }).kind;
  if (typeof kind !== 'string' || !(ALERT_RULE_KINDS as readonly string[]).includes(kind)) {
    throw invalidRule(`kind must be one of ${ALERT_RULE_KINDS.join(', ')}.`);
  }
  const parsed = SCHEMAS[kind as AlertRuleKind].safeParse(body);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw invalidRule(first === undefined ? 'The rule is invalid.' : `${describeIssue(first, body)}.`);
  }
  const r = parsed.data as {
    kind: AlertRuleKind;
    scope?: 'hub' | 'device';
    reasons?: string[];
    threshold?: number;
    windowSeconds?: number;
    days?: number;
    enabled?: boolean;
    actions?: { log?: boolean; webhook?: { url: string; secret?: string | null } | null };
  };
  const hook = r.actions?.webhook;
  return {
    kind: r.kind,
    enabled: r.enabled ?? true,
    scope: r.kind === 'authFailures' ? (r.scope ?? 'hub') : null,
    reasons: r.reasons ?? null,
    threshold: r.threshold ?? null,
    windowSeconds: r.windowSeconds ?? null,
    days: r.days ?? null,
    log: r.actions?.log ?? true,
    webhook: hook === undefined || hook === null ? null : { url: hook.url, secret: hook.secret },
  };
}

/** The rules a new hub starts with (created once; operators may change or delete them). */
export const DEFAULT_RULES: ReadonlyArray<{ name: string; input: AlertRuleInput }> = [
  { name: 'failed-logins-hub', input: windowed('authFailures', 10, 600, 'hub') },
  { name: 'failed-logins-device', input: windowed('authFailures', 10, 600, 'device') },
  { name: 'c2d-dead-letters', input: windowed('c2dDeadLetters', 0, 3600, null) },
  {
    name: 'certificates-expiring',
    input: { kind: 'certificateExpiry', enabled: true, scope: null, reasons: null, threshold: null, windowSeconds: null, days: 30, log: true, webhook: null },
  },
  { name: 'disconnect-storm', input: windowed('disconnectStorm', 100, 60, null) },
];

function windowed(kind: AlertRuleKind, threshold: number, windowSeconds: number, scope: 'hub' | 'device' | null): AlertRuleInput {
  return { kind, enabled: true, scope, reasons: null, threshold, windowSeconds, days: null, log: true, webhook: null };
}

/** The record to store for `input`; `previous` supplies the secret when the input keeps it. */
export function ruleRecord(name: string, input: AlertRuleInput, previous: AlertRuleRecord | undefined, now: string): AlertRuleRecord {
  let secret: string | null = null;
  if (input.webhook !== null) {
    // An omitted secret keeps the current one for the same URL, so a GET-edit-PUT round trip
    // (GET never shows the secret) does not silently drop it.
    secret = input.webhook.secret !== undefined ? input.webhook.secret : previous?.webhookUrl === input.webhook.url ? previous.webhookSecret : null;
  }
  return {
    name,
    kind: input.kind,
    enabled: input.enabled,
    scope: input.scope,
    reasons: input.reasons,
    threshold: input.threshold,
    windowSeconds: input.windowSeconds,
    days: input.days,
    log: input.log,
    webhookUrl: input.webhook?.url ?? null,
    webhookSecret: secret,
    created: previous?.created ?? now,
    updated: now,
  };
}

/** A rule as GET shows it: the webhook secret only as whether one is set. */
export function renderRule(r: AlertRuleRecord): JsonObject {
  return {
    name: r.name,
    kind: r.kind,
    enabled: r.enabled,
    ...(r.scope === null ? {} : { scope: r.scope }),
    ...(r.reasons === null ? {} : { reasons: r.reasons }),
    ...(r.threshold === null ? {} : { threshold: r.threshold }),
    ...(r.windowSeconds === null ? {} : { windowSeconds: r.windowSeconds }),
    ...(r.days === null ? {} : { days: r.days }),
    actions: {
      log: r.log,
      webhook: r.webhookUrl === null ? null : { url: r.webhookUrl, secretSet: r.webhookSecret !== null },
    },
    created: r.created,
    updated: r.updated,
  };
}

/** "45 s", "10 min", "1 h", "1 d". */
export function formatWindow(seconds: number): string {
  if (seconds % 86_400 === 0) return `${seconds / 86_400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

/** One line for the log, the webhook and the history. */
export function alertSummary(rule: AlertRuleRecord, key: string, state: 'fired' | 'resolved', value: number, details: JsonObject): string {
  const window = formatWindow(rule.windowSeconds ?? 0);
  const limit = `threshold ${rule.threshold ?? 0}`;
  const fired = state === 'fired';
  switch (rule.kind) {
    case 'authFailures': {
      const where = key === HUB_KEY ? 'across the hub' : `for ${key}`;
      const which = rule.reasons === null ? '' : ` (${rule.reasons.join(', ')})`;
      return fired
        ? `${value} failed authentications${which} in ${window} ${where} (${limit})`
        : `failed authentications${which} ${where} back to ${value} in ${window} (${limit})`;
    }
    case 'c2dDeadLetters':
      return fired ? `${value} cloud-to-device messages dead-lettered in ${window} (${limit})` : `dead-lettered cloud-to-device messages back to ${value} in ${window} (${limit})`;
    case 'disconnectStorm':
      return fired ? `${value} device disconnects in ${window} (${limit})` : `device disconnects back to ${value} in ${window} (${limit})`;
    case 'certificateExpiry': {
      const what =
        details.type === 'ca'
          ? `CA certificate '${String(details.name)}'`
          : `device certificate ${String(details.serial)} of '${String(details.deviceId)}' (CA '${String(details.caName)}')`;
      if (!fired) return `${what} no longer expires within ${rule.days ?? 0} days`;
      return value < 0 ? `${what} expired on ${String(details.notAfter)}` : `${what} expires in ${value} days, on ${String(details.notAfter)}`;
    }
  }
}

/** What an alert's webhook receives, firing or resolved. */
export type AlertPayload = {
  alert: {
    id: string;
    rule: string;
    kind: AlertRuleKind;
    key: string;
    state: 'fired' | 'resolved';
    value: number;
    threshold: number;
    windowSeconds: number | null;
    firedAt: string;
    resolvedAt?: string;
    hub: string;
    summary: string;
    details: JsonObject;
  };
};
