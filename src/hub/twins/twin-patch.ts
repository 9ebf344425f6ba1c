/**
 * Twin section merge and limits [DOCS: Understand and use device twins in IoT Hub]
 * [DOCS: IoT Hub quotas and throttling].
 *
 * - PATCH merges recursively; `null` deletes a key.
 * - Keys: UTF-8, case-sensitive, at most 1 KB, no control characters, `.`, `$` or space.
 * - Values: boolean, number, string, object (and arrays, which later revisions of the doc allow);
 *   strings at most 4 KB; integers within ±2^52.
 * - Depth: at most 10 levels of objects in tags, desired and reported.
 * - Size: tags 8 KB, desired 32 KB, reported 32 KB, counted as the doc says: key and value
 *   lengths, numbers 8 bytes, booleans 4 bytes, strings by character count.
 *
 * `$metadata` mirrors the section: every object node carries `$lastUpdated` (and in desired
 * `$lastUpdatedVersion`), every leaf is `{ $lastUpdated, $lastUpdatedVersion? }`.
 */
import { HubError } from '../../core/errors.js';
import { isJsonObject, type JsonObject, type JsonValue } from '../../core/json.js';
import { printable } from '../../core/ids.js';

export type TwinSection = 'tags' | 'properties.desired' | 'properties.reported';

export const SECTION_LIMITS: Record<TwinSection, number> = {
  tags: 8 * 1024,
  'properties.desired': 32 * 1024,
  'properties.reported': 32 * 1024,
};
export const MAX_DEPTH = 10;
export const MAX_KEY_BYTES = 1024;
export const MAX_STRING_CHARS = 4 * 1024;
const MAX_INT = 4503599627370495;
const MIN_INT = -4503599627370496;

/** Keys the service writes itself; a client may echo them back and they are ignored. */
const SYSTEM_KEYS = new Set(['$metadata', '$version', '$etag']);

function invalid(message: string): HubError {
  return new HubError('ArgumentInvalid', message);
}

/** Validates a patch for one section before anything is applied. */
export function validatePatch(section: TwinSection, patch: unknown): JsonObject {
  if (!isJsonObject(patch)) throw invalid(`${section} must be a JSON object.`);
  walk(patch, section, 1);
  return patch;
}

function walk(obj: JsonObject, path: string, depth: number): void {
  if (depth > MAX_DEPTH) throw invalid(`${path} is nested deeper than ${MAX_DEPTH} levels.`);
  for (const [key, value] of Object.entries(obj)) {
    if (depth === 1 && SYSTEM_KEYS.has(key)) continue;
    checkKey(key, path);
    const child = `${path}.${key}`;
    checkValue(value, child, depth);
  }
}

function checkKey(key: string, path: string): void {
  if (key.length === 0) throw invalid(`${path} has an empty key.`);
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw invalid(`A key in ${path} is longer than ${MAX_KEY_BYTES} bytes.`);
  if (/[.$ \u0000-\u001f\u007f]/.test(key)) {
    throw invalid(`The key '${printable(key)}' in ${path} contains '.', '$', a space or a control character.`);
  }
}

function checkValue(value: JsonValue, path: string, depth: number): void {
  if (value === null || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw invalid(`${path} is not a finite number.`);
    if (Number.isInteger(value) && (value > MAX_INT || value < MIN_INT)) {
      throw invalid(`${path} is outside the integer range [${MIN_INT}, ${MAX_INT}].`);
    }
    return;
  }
  if (typeof value === 'string') {
    if (value.length > MAX_STRING_CHARS) throw invalid(`${path} is a string longer than ${MAX_STRING_CHARS} characters.`);
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      if (v === null) throw invalid(`${path}[${i}] is null; arrays cannot hold null.`);
      checkValue(v, `${path}[${i}]`, depth + 1);
    });
    return;
  }
  walk(value, path, depth + 1);
}

/** Size as the twin doc counts it. */
export function sectionSize(value: JsonValue): number {
  if (value === null) return 0;
  if (typeof value === 'boolean') return 4;
  if (typeof value === 'number') return 8;
  if (typeof value === 'string') return value.replace(/[\u0000-\u001f]/g, '').length;
  if (Array.isArray(value)) return value.reduce<number>((n, v) => n + sectionSize(v), 0);
  let n = 0;
  for (const [k, v] of Object.entries(value)) n += k.length + sectionSize(v);
  return n;
}

export function checkSectionSize(section: TwinSection, value: JsonObject): void {
  const size = sectionSize(value);
  const limit = SECTION_LIMITS[section];
  if (size > limit) throw invalid(`${section} would be ${size} bytes, over the limit of ${limit} bytes.`);
}

function leafMeta(now: string, version: number | undefined): JsonObject {
  return version === undefined ? { $lastUpdated: now } : { $lastUpdated: now, $lastUpdatedVersion: version };
}

/** Fresh metadata for a whole value written at once. */
export function metadataFor(value: JsonValue, now: string, version: number | undefined): JsonObject {
  const meta = leafMeta(now, version);
  if (isJsonObject(value)) {
    for (const [k, v] of Object.entries(value)) meta[k] = metadataFor(v, now, version);
  }
  return meta;
}

/**
 * Merges `patch` into `target` (both mutated copies owned by the caller) and keeps `meta` in step.
 * Returns true when anything changed.
 */
export function mergeInto(
  target: JsonObject,
  meta: JsonObject,
  patch: JsonObject,
  now: string,
  version: number | undefined,
  depth = 1,
): boolean {
  let changed = false;
  for (const [key, value] of Object.entries(patch)) {
    if (depth === 1 && SYSTEM_KEYS.has(key)) continue;
    if (value === null) {
      if (key in target) {
        delete target[key];
        delete meta[key];
        changed = true;
      }
      continue;
    }
    if (isJsonObject(value)) {
      let child = target[key];
      if (!isJsonObject(child)) {
        child = {};
        target[key] = child;
        meta[key] = leafMeta(now, version);
        changed = true;
      }
      let childMeta = meta[key];
      if (!isJsonObject(childMeta)) {
        childMeta = leafMeta(now, version);
        meta[key] = childMeta;
      }
      if (mergeInto(child, childMeta, value, now, version, depth + 1)) changed = true;
      continue;
    }
    if (JSON.stringify(target[key]) !== JSON.stringify(value)) changed = true;
    target[key] = value;
    meta[key] = leafMeta(now, version);
  }
  if (changed) Object.assign(meta, leafMeta(now, version));
  return changed;
}

/** Deep copy for JSON data. */
export function clone<T extends JsonValue>(v: T): T {
  return structuredClone(v);
}
