/**
 * Audit entries in and out: security events become the row fields the chain covers (bounded,
 * cleaned text, redacted and canonical JSON), and rows become what the REST API and the CLI show.
 */
import { HubError } from '../core/errors.js';
import type { JsonValue } from '../core/json.js';
import type { AuditQuery, AuditRow, AuditStore } from '../store/audit-ports.js';
import type { AuditFields } from './audit-chain.js';
import { redactSecrets, type AuthEvent, type ChangeEvent } from '../core/security-events.js';

export type AuditFilters = Omit<AuditQuery, 'limit'> & { limit?: number };

export interface AuditPage {
  entries: Array<Record<string, JsonValue>>;
  /** The `before` cursor of the next (older) page, or null on the last page. */
  next: number | null;
}

/** An entry before it has a place in the chain. */
export type PendingEntry = Omit<AuditFields, 'seq'>;

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;
/** Longest kept text field (identities are at most 260 by contract; reasons are prose). */
const MAX_TEXT = 1024;
/** Longest kept before/after JSON; larger states are replaced by their size. */
const MAX_JSON = 64 * 1024;

const SUSPECT = /[\0\uD800-\uDFFF]/;

/** No NUL (PostgreSQL TEXT refuses it), no lone surrogates, bounded. */
function clean(v: string | undefined | null, max = MAX_TEXT): string | null {
  if (v === undefined || v === null) return null;
  const s = v.length > max ? v.slice(0, max) : v;
  if (!SUSPECT.test(s)) return s;
  return s.replace(/\0/g, '\uFFFD').replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** JSON with object keys sorted: the same state is always the same text. */
export function canonicalJson(v: JsonValue): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(v).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k] ?? null)}`).join(',')}}`;
}

function stateJson(v: unknown): string | null {
  if (v === undefined) return null;
  const text = canonicalJson(redactSecrets(v));
  return text.length <= MAX_JSON ? text : canonicalJson({ $truncated: true, length: text.length });
}

export function fromAuth(e: AuthEvent, at: number): PendingEntry {
  return {
    at,
    type: 'auth',
    subject: clean(e.subject),
    identity: clean(e.identity),
    outcome: e.outcome === 'success' ? 'success' : 'failure',
    reason: clean(e.reason),
    reasonCode: clean(e.reasonCode),
    remote: clean(e.remote),
    protocol: clean(e.protocol),
    method: clean(e.method),
    tls: clean(e.tls),
    actor: null,
    action: null,
    target: null,
    beforeJson: null,
    afterJson: null,
  };
}

export function fromChange(e: ChangeEvent, at: number): PendingEntry {
  return {
    at,
    type: 'change',
    subject: null,
    identity: null,
    outcome: null,
    reason: null,
    reasonCode: null,
    remote: clean(e.remote),
    protocol: null,
    method: null,
    tls: null,
    actor: clean(e.actor),
    action: clean(e.action),
    target: clean(e.target),
    beforeJson: stateJson(e.before),
    afterJson: stateJson(e.after),
  };
}

function parsedState(text: string | null): JsonValue {
  if (text === null) return null;
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    return text;
  }
}

/** A row as the REST API and the CLI show it: camelCase, ISO time, the fields its type uses. */
export function renderAuditEntry(r: AuditRow): Record<string, JsonValue> {
  const at = Number.isFinite(r.at) && Math.abs(r.at) <= 8.64e15 ? new Date(r.at).toISOString() : r.at;
  const base = { seq: r.seq, at, type: r.type };
  if (r.type === 'auth') {
    return {
      ...base,
      subject: r.subject,
      identity: r.identity,
      outcome: r.outcome,
      reason: r.reason,
      reasonCode: r.reasonCode,
      remote: r.remote,
      protocol: r.protocol,
      method: r.method,
      tls: r.tls,
    };
  }
  return { ...base, actor: r.actor, action: r.action, target: r.target, before: parsedState(r.beforeJson), after: parsedState(r.afterJson), remote: r.remote };
}

/** Newest first, `limit` (default 100, at most 1000) per page, `next` the cursor of the older one. */
export async function queryAuditLog(audit: AuditStore, filters: AuditFilters): Promise<AuditPage> {
  const limit = filters.limit ?? DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw new HubError('ArgumentInvalid', `limit must be a whole number from 1 to ${MAX_LIMIT}.`);
  const rows = await audit.query({ ...filters, limit: limit + 1 });
  const page = rows.slice(0, limit);
  return { entries: page.map(renderAuditEntry), next: rows.length > limit ? (page.at(-1)?.seq ?? null) : null };
}
