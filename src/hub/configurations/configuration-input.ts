/**
 * The Configuration document of Azure's service REST API (`/configurations/{id}`, api-version
 * 2021-04-12; the SDKs' Configuration class): checking what a caller sends, and rendering what the
 * hub returns. Pure.
 *
 * Rules (Azure's where documented, "automatic device management" and the SDKs' Configuration docs):
 * - id: 1-128 of lower-case ASCII letters, digits and `-:+%_#*?!(),=@;$'`.
 * - labels: string -> string, each 1-128 of ASCII letters, digits and `-:.+%_#*?!(),=@;'`; a
 *   key may not start with `$` (reserved).
 * - content: exactly one of `deviceContent` (device twins), `moduleContent` (module twins) or
 *   `modulesContent` (IoT Edge deployments: stored, not applied). In device and module content each
 *   key is `properties.desired` or `properties.desired.<path>` and its value what goes there.
 *   Content cannot change once created, like Azure's.
 * - targetCondition: a WHERE condition of the twin query language over `devices` (device
 *   configurations) or `devices.modules` (module configurations; a leading
 *   `FROM devices.modules WHERE` is accepted), `*` for every twin, or empty: none.
 * - priority: a non-negative integer; metrics: `{ queries: { name: query } }`, at most 20.
 */
import { HubError } from '../../core/errors.js';
import { isJsonObject, type JsonObject, type JsonValue } from '../../core/json.js';
import { printable } from '../../core/ids.js';
import type { ConfigurationRecord, StoredConfiguration } from '../../store/configuration-ports.js';
import { parseQuery, type ParsedQuery } from '../query/index.js';
import { checkSectionSize, validatePatch } from '../twins/twin-patch.js';

export const MAX_CONFIGURATIONS = 100;
export const MAX_METRICS = 20;
const ID = /^[a-z0-9\-:+%_#*?!(),=@;$']{1,128}$/;
const LABEL = /^[A-Za-z0-9\-:.+%_#*?!(),=@;']{1,128}$/;
const METRIC_NAME = /^[A-Za-z0-9\-:.+%_#*?!(),=@;']{1,128}$/;

export type ContentKind = 'deviceContent' | 'moduleContent' | 'modulesContent';
export const CONTENT_KINDS: readonly ContentKind[] = ['deviceContent', 'moduleContent', 'modulesContent'];

function invalid(message: string): HubError {
  return new HubError('ArgumentInvalid', message);
}

export function checkConfigurationId(id: string): void {
  if (!ID.test(id)) {
    throw invalid(`The configuration id '${printable(id.slice(0, 140))}' is invalid: use 1-128 lower-case letters, digits and -:+%_#*?!(),=@;$'.`);
  }
}

/** The kind of content a configuration carries. */
export function contentKind(content: JsonObject): ContentKind {
  const kinds = CONTENT_KINDS.filter((k) => content[k] !== undefined && content[k] !== null);
  if (kinds.length !== 1 || kinds[0] === undefined) throw invalid('content must hold exactly one of deviceContent, moduleContent or modulesContent.');
  return kinds[0];
}

/** Which twins a configuration's content and target condition are about. */
export function twinSource(content: JsonObject): 'devices' | 'devices.modules' {
  return contentKind(content) === 'moduleContent' ? 'devices.modules' : 'devices';
}

/** `properties.desired[.a.b]` -> `['a', 'b']`. */
export function desiredPath(key: string): string[] {
  if (key === 'properties.desired') return [];
  if (!key.startsWith('properties.desired.')) throw invalid(`The content key '${printable(key)}' must be properties.desired or start with properties.desired.`);
  const path = key.slice('properties.desired.'.length).split('.');
  if (path.some((s) => s === '')) throw invalid(`The content key '${printable(key)}' has an empty path segment.`);
  return path;
}

/** The desired-properties patch a twin content (`deviceContent` / `moduleContent`) amounts to. */
export function desiredPatchOf(twinContent: JsonObject): JsonObject {
  const patch: JsonObject = {};
  // Shorter paths first, so a key inside another key's object lands inside it.
  const keys = Object.keys(twinContent).sort((a, b) => a.length - b.length);
  for (const key of keys) {
    const value = twinContent[key] as JsonValue;
    const path = desiredPath(key);
    if (path.length === 0) {
      if (!isJsonObject(value)) throw invalid('The value of properties.desired must be a JSON object.');
      Object.assign(patch, structuredClone(value));
      continue;
    }
    let node = patch;
    for (const seg of path.slice(0, -1)) {
      const next = node[seg];
      if (!isJsonObject(next)) node[seg] = {};
      node = node[seg] as JsonObject;
    }
    node[path[path.length - 1] as string] = structuredClone(value);
  }
  return patch;
}

function checkContent(content: unknown): JsonObject {
  if (!isJsonObject(content)) throw invalid('content is required: a JSON object with deviceContent, moduleContent or modulesContent.');
  const kind = contentKind(content);
  const inner = content[kind];
  if (!isJsonObject(inner)) throw invalid(`content.${kind} must be a JSON object.`);
  if (kind !== 'modulesContent') {
    if (Object.keys(inner).length === 0) throw invalid(`content.${kind} is empty.`);
    const patch = validatePatch('properties.desired', desiredPatchOf(inner));
    checkSectionSize('properties.desired', patch);
  }
  const out: JsonObject = {};
  out[kind] = inner;
  return out;
}

function checkStringMap(value: unknown, what: string, re: RegExp, max: number | undefined): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (!isJsonObject(value)) throw invalid(`${what} must be a JSON object of strings.`);
  const entries = Object.entries(value);
  if (max !== undefined && entries.length > max) throw invalid(`${what} holds ${entries.length} entries; the limit is ${max}.`);
  const out: Record<string, string> = {};
  for (const [k, v] of entries) {
    if (typeof v !== 'string') throw invalid(`${what}.${printable(k)} must be a string.`);
    if (!re.test(k)) throw invalid(`The ${what} name '${printable(k)}' is invalid: 1-128 ASCII letters, digits and -:.+%_#*?!(),=@;' (no $).`);
    out[k] = v;
  }
  return out;
}

/** The target condition as a query over the configuration's twins; undefined for an empty condition (no twin). */
export function targetQuery(condition: string, source: 'devices' | 'devices.modules'): string | undefined {
  let cond = condition.trim();
  const from = /^FROM\s+devices\.modules\s+WHERE\s+/i.exec(cond);
  if (from !== null) cond = cond.slice(from[0].length);
  if (cond === '') return undefined;
  const select = source === 'devices' ? 'SELECT deviceId FROM devices' : 'SELECT deviceId, moduleId FROM devices.modules';
  return cond === '*' ? select : `${select} WHERE ${cond}`;
}

/** Azure's applied-count query: the twins whose `configurations` section says this one was applied. */
export function appliedQuery(id: string, source: 'devices' | 'devices.modules'): string {
  const select = source === 'devices' ? 'SELECT deviceId FROM devices' : 'SELECT deviceId, moduleId FROM devices.modules';
  return `${select} WHERE configurations.[[${id}]].status = 'Applied'`;
}

function parseAs(text: string, what: string): ParsedQuery {
  try {
    return parseQuery(text);
  } catch (err) {
    throw invalid(`${what} is not a valid query: ${(err as Error).message}`);
  }
}

/** Parses the target condition, throwing ArgumentInvalid that names it. */
export function parseTarget(condition: string, content: JsonObject): ParsedQuery | undefined {
  const source = twinSource(content);
  const text = targetQuery(condition, source);
  if (text === undefined) return undefined;
  const q = parseAs(text, 'targetCondition');
  if (q.source !== source) throw invalid(`targetCondition must be about ${source}.`);
  return q;
}

export function parseMetric(name: string, text: string): ParsedQuery {
  return parseAs(text, `The metric query '${printable(name)}'`);
}

/**
 * A configuration from a PUT body. `existing` is the stored one for an update: content and
 * creation time stay (content cannot change, as in Azure).
 */
export function configurationFromBody(id: string, body: unknown, now: string, etag: string, existing?: ConfigurationRecord): ConfigurationRecord {
  checkConfigurationId(id);
  if (!isJsonObject(body)) throw invalid('The configuration must be a JSON object.');
  if (body.id !== undefined && body.id !== id) throw invalid(`The body's id '${printable(String(body.id))}' differs from the id in the path '${id}'.`);
  const content = checkContent(body.content);
  if (existing !== undefined && JSON.stringify(canonical(content)) !== JSON.stringify(canonical(existing.content))) {
    throw invalid('The content of a configuration cannot be changed; create a new configuration.');
  }
  const schemaVersion = body.schemaVersion === undefined || body.schemaVersion === null ? '1.0' : body.schemaVersion;
  if (typeof schemaVersion !== 'string' || schemaVersion === '') throw invalid('schemaVersion must be a string such as "1.0".');
  const targetCondition = body.targetCondition === undefined || body.targetCondition === null ? '' : body.targetCondition;
  if (typeof targetCondition !== 'string') throw invalid('targetCondition must be a string.');
  parseTarget(targetCondition, content);
  const priority = body.priority === undefined || body.priority === null ? 0 : body.priority;
  if (typeof priority !== 'number' || !Number.isInteger(priority) || priority < 0 || priority > 2147483647) throw invalid('priority must be a non-negative integer.');
  const labels = checkStringMap(body.labels, 'labels', LABEL, undefined);
  for (const v of Object.values(labels)) if (!LABEL.test(v)) throw invalid(`The label value '${printable(v)}' is invalid: 1-128 ASCII letters, digits and -:.+%_#*?!(),=@;'.`);
  const metrics = body.metrics;
  if (metrics !== undefined && metrics !== null && !isJsonObject(metrics)) throw invalid('metrics must be a JSON object with queries.');
  const metricQueries = checkStringMap(isJsonObject(metrics) ? metrics.queries : undefined, 'metrics.queries', METRIC_NAME, MAX_METRICS);
  for (const [name, text] of Object.entries(metricQueries)) parseMetric(name, text);
  const contentType = typeof body.contentType === 'string' ? body.contentType : (existing?.contentType ?? null);
  return {
    id,
    schemaVersion,
    labels,
    content: existing?.content ?? content,
    contentType,
    targetCondition,
    priority,
    metricQueries,
    createdTimeUtc: existing?.createdTimeUtc ?? now,
    lastUpdatedTimeUtc: now,
    etag,
  };
}

function canonical(v: JsonValue): JsonValue {
  if (Array.isArray(v)) return v.map(canonical);
  if (!isJsonObject(v)) return v;
  const out: JsonObject = {};
  for (const k of Object.keys(v).sort()) out[k] = canonical(v[k] as JsonValue);
  return out;
}

/** The document the REST API returns. */
export function renderConfiguration(s: StoredConfiguration): JsonObject {
  const c = s.record;
  const source = twinSource(c.content);
  const target = targetQuery(c.targetCondition, source);
  const systemQueries: JsonObject = {};
  if (target !== undefined) systemQueries.targetedCount = target;
  if (contentKind(c.content) !== 'modulesContent') systemQueries.appliedCount = appliedQuery(c.id, source);
  const doc: JsonObject = {
    id: c.id,
    schemaVersion: c.schemaVersion,
    labels: c.labels,
    content: c.content,
    targetCondition: c.targetCondition,
    createdTimeUtc: c.createdTimeUtc,
    lastUpdatedTimeUtc: c.lastUpdatedTimeUtc,
    priority: c.priority,
    systemMetrics: { results: { targetedCount: s.results?.system.targetedCount ?? 0, appliedCount: s.results?.system.appliedCount ?? 0 }, queries: systemQueries },
    metrics: { results: Object.fromEntries(Object.keys(c.metricQueries).map((k) => [k, s.results?.custom[k] ?? 0])), queries: c.metricQueries },
    etag: c.etag,
  };
  if (c.contentType !== null) doc.contentType = c.contentType;
  return doc;
}
