/**
 * The routing query language as the engine uses it: one import point for src/routing/query/.
 * TEMPORARY until the query-lang branch lands: only `true` / `false` conditions and static
 * enrichment values. Replaced by re-exports from ./query/ at the merge.
 */
import type { JsonObject } from '../core/json.js';

export interface RoutingInput {
  body: Buffer;
  properties: Record<string, string>;
  systemProperties: Record<string, string>;
  twin?: JsonObject;
}

export interface CompiledCondition {
  text: string;
  usesTwin: boolean;
  usesBody: boolean;
  matches(input: RoutingInput): boolean;
  explain(input: RoutingInput): { matched: boolean; reason?: string };
}

export class RoutingQueryError extends Error {
  constructor(
    message: string,
    readonly position = 0,
  ) {
    super(message);
  }
}

export function compileCondition(text: string): CompiledCondition {
  const t = text.trim().toLowerCase();
  if (t !== 'true' && t !== 'false') throw new RoutingQueryError(`unsupported condition: ${text}`);
  const v = t === 'true';
  return { text, usesTwin: false, usesBody: false, matches: () => v, explain: () => (v ? { matched: true } : { matched: false, reason: 'the condition is false' }) };
}

export function validateEnrichmentValue(value: string): void {
  if (value.startsWith('$') && value !== '$iothubname' && !value.startsWith('$twin.')) throw new RoutingQueryError(`unsupported enrichment value: ${value}`);
}

export function enrichmentValue(value: string, ctx: { twin?: JsonObject; hubName: string }): string | undefined {
  if (value === '$iothubname') return ctx.hubName;
  if (value.startsWith('$twin.')) return undefined;
  return value;
}
