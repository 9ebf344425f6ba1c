/**
 * Audit log filters from text, the same for the REST query string and the CLI flags: a precise
 * ArgumentInvalid for each bad value, empty values meaning "not given".
 *
 * Times: ISO-8601 (`2026-05-01T12:00:00Z`), ms since the epoch, or relative to now (`-15m`,
 * `-1h`, `-7d`). `from` is inclusive, `to` exclusive.
 */
import { HubError } from '../core/errors.js';
import { MAX_LIMIT, type AuditFilters } from './audit-entries.js';

export const AUDIT_FILTER_NAMES = ['from', 'to', 'identity', 'outcome', 'type', 'actor', 'limit', 'before'] as const;
type FilterName = (typeof AUDIT_FILTER_NAMES)[number];

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const MAX_TEXT = 260;

const invalid = (message: string) => new HubError('ArgumentInvalid', message);

export function parseAuditTime(name: string, raw: string, now: number): number {
  const rel = /^-(\d{1,6})([smhd])$/.exec(raw);
  if (rel !== null) return now - Number(rel[1]) * (UNIT_MS[rel[2] ?? 's'] ?? 1000);
  if (/^\d{1,15}$/.test(raw)) return Number(raw);
  if (/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(raw)) {
    const t = Date.parse(raw);
    if (Number.isFinite(t)) return t;
  }
  throw invalid(`${name} must be an ISO-8601 time (2026-05-01T12:00:00Z), milliseconds since the epoch, or a time relative to now such as -15m, -1h or -7d; got '${raw.slice(0, 40)}'.`);
}

function positiveInt(name: string, raw: string, max: number, what: string): number {
  if (!/^\d{1,16}$/.test(raw) || Number(raw) < 1 || Number(raw) > max) throw invalid(`${name} must be ${what}; got '${raw.slice(0, 40)}'.`);
  return Number(raw);
}

/**
 * `raw` holds the filters by name (other keys: refused, except those in `ignore`). A repeated
 * parameter (an array) is refused rather than guessed at.
 */
export function parseAuditFilters(raw: Record<string, unknown>, now: number, ignore: readonly string[] = []): AuditFilters {
  const values = new Map<FilterName, string>();
  for (const [name, v] of Object.entries(raw)) {
    if (ignore.includes(name) || v === undefined) continue;
    if (!(AUDIT_FILTER_NAMES as readonly string[]).includes(name)) {
      throw invalid(`Unknown audit log filter '${name.slice(0, 40)}'; the filters are ${AUDIT_FILTER_NAMES.join(', ')}.`);
    }
    if (Array.isArray(v)) throw invalid(`${name} is given more than once.`);
    const text = String(v).trim();
    if (text !== '') values.set(name as FilterName, text);
  }
  const out: AuditFilters = {};
  const from = values.get('from');
  const to = values.get('to');
  if (from !== undefined) out.from = parseAuditTime('from', from, now);
  if (to !== undefined) out.to = parseAuditTime('to', to, now);
  if (out.from !== undefined && out.to !== undefined && out.from >= out.to) throw invalid('from must be earlier than to.');
  for (const name of ['identity', 'actor'] as const) {
    const v = values.get(name);
    if (v === undefined) continue;
    if (v.length > MAX_TEXT) throw invalid(`${name} must be at most ${MAX_TEXT} characters.`);
    out[name] = v;
  }
  const outcome = values.get('outcome');
  if (outcome !== undefined) {
    if (outcome !== 'success' && outcome !== 'failure') throw invalid(`outcome must be success or failure; got '${outcome.slice(0, 40)}'.`);
    out.outcome = outcome;
  }
  const type = values.get('type');
  if (type !== undefined) {
    if (type !== 'auth' && type !== 'change') throw invalid(`type must be auth or change; got '${type.slice(0, 40)}'.`);
    out.type = type;
  }
  const limit = values.get('limit');
  if (limit !== undefined) out.limit = positiveInt('limit', limit, MAX_LIMIT, `a whole number from 1 to ${MAX_LIMIT}`);
  const before = values.get('before');
  if (before !== undefined) out.before = positiveInt('before', before, Number.MAX_SAFE_INTEGER, 'a seq (a positive whole number), the next value of the previous page');
  return out;
}
