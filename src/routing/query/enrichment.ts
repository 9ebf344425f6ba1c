/**
 * Message enrichment values ("Message enrichments for device-to-cloud IoT Hub messages"): a static
 * string, `$iothubname`, or a twin path under `$twin.tags`, `$twin.properties.desired` or
 * `$twin.properties.reported` ("only $iothubname, $twin.tags, $twin.properties.desired, and
 * $twin.properties.reported are supported variables"). Conditions, operators and functions are not
 * allowed, and neither is any other `$` variable.
 *
 * Azure stamps the path text itself (e.g. "$twin.tags.location") when the twin lacks the path or the
 * device has no twin; `enrichmentValue` returns undefined then and leaves that choice to the caller.
 */
import type { JsonObject } from '../../core/json.js';
import { RoutingQueryError, type Expr, type Segment } from './ast.js';
import { lookup } from './input.js';
import { parseCondition } from './parser.js';

/** Azure's limit for an enrichment value is not documented; this keeps one within a route condition's. */
export const MAX_ENRICHMENT_VALUE_LENGTH = 1024;

type Parsed = { kind: 'static'; value: string } | { kind: 'hub' } | { kind: 'twin'; segments: Segment[] };

function isUnder(segments: readonly Segment[], prefix: readonly string[]): boolean {
  return prefix.every((p, i) => typeof segments[i] === 'string' && (segments[i] as string).toLowerCase() === p);
}

function parseValue(value: string): Parsed {
  if (value.length === 0) throw new RoutingQueryError('An enrichment value cannot be empty', 0);
  if (value.length > MAX_ENRICHMENT_VALUE_LENGTH) {
    throw new RoutingQueryError(`An enrichment value is at most ${MAX_ENRICHMENT_VALUE_LENGTH} characters long (got ${value.length})`, MAX_ENRICHMENT_VALUE_LENGTH);
  }
  if (!value.startsWith('$')) return { kind: 'static', value };
  if (value.toLowerCase() === '$iothubname') return { kind: 'hub' };
  let e: Expr;
  try {
    e = parseCondition(value);
  } catch (err) {
    const pos = err instanceof RoutingQueryError ? err.position : 0;
    throw new RoutingQueryError(`The enrichment value '${value}' is not $iothubname or a $twin path: ${(err as Error).message}`, pos);
  }
  if (e.kind !== 'path') throw new RoutingQueryError(`The enrichment value '${value}' is not supported: only $iothubname and $twin paths, no conditions, operators or functions`, 0);
  const ok =
    e.root.kind === 'twin' &&
    (isUnder(e.segments, ['tags']) || isUnder(e.segments, ['properties', 'desired']) || isUnder(e.segments, ['properties', 'reported']));
  if (!ok) {
    throw new RoutingQueryError(
      `The enrichment value '${value}' is not supported: a value starting with '$' must be $iothubname or a path under $twin.tags, $twin.properties.desired or $twin.properties.reported`,
      0,
    );
  }
  return { kind: 'twin', segments: e.segments };
}

/** Throws RoutingQueryError when Azure would refuse the value. */
export function validateEnrichmentValue(value: string): void {
  parseValue(value);
}

const cache = new Map<string, Parsed>();
const CACHE_LIMIT = 1000;

/**
 * The value an enrichment stamps: the static string, the hub's name, or the twin's value at the path
 * (a string as is, anything else as JSON); undefined when there is no twin or the twin lacks the
 * path. The value must have passed validateEnrichmentValue.
 */
export function enrichmentValue(value: string, input: { twin?: JsonObject; hubName: string }): string | undefined {
  let parsed = cache.get(value);
  if (parsed === undefined) {
    parsed = parseValue(value);
    if (cache.size >= CACHE_LIMIT) cache.clear();
    cache.set(value, parsed);
  }
  switch (parsed.kind) {
    case 'static':
      return parsed.value;
    case 'hub':
      return input.hubName;
    case 'twin': {
      let cur: unknown = input.twin;
      for (const seg of parsed.segments) {
        if (typeof seg === 'number') cur = Array.isArray(cur) ? (cur[seg] as unknown) : undefined;
        else cur = typeof cur === 'object' && cur !== null && !Array.isArray(cur) ? lookup(cur as Record<string, unknown>, seg) : undefined;
        if (cur === undefined) return undefined;
      }
      return typeof cur === 'string' ? cur : JSON.stringify(cur);
    }
  }
}
