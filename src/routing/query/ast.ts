/**
 * The parsed form of a routing condition, and the error every refusal raises. Positions are 0-based
 * character offsets into the condition text.
 */
import type { JsonValue } from '../../core/json.js';

/** Azure refuses a route condition longer than 1024 characters. */
export const MAX_CONDITION_LENGTH = 1024;
/** Parentheses, NOT, unary signs and function calls nested deeper than this are refused. */
export const MAX_NESTING = 32;

export class RoutingQueryError extends Error {
  override readonly name = 'RoutingQueryError';
  constructor(
    message: string,
    readonly position: number,
  ) {
    super(message);
  }
}

/** A value during evaluation: a JSON value, or `undefined` (a missing field, a type mismatch). */
export type Value = JsonValue | undefined;

/** One step of a path: an object key or an array index. */
export type Segment = string | number;

export type CompareOp = '=' | '!=' | '<' | '<=' | '>' | '>=';
export type ArithmeticOp = '+' | '-' | '*' | '/' | '%';

/**
 * Where a path starts: an application property (by name), a system property (by its wire name, with
 * the `$name` typed in the query), the JSON body (`$body`) or the twin (`$twin`).
 */
export type Root =
  | { kind: 'app'; name: string }
  | { kind: 'sys'; wire: string; alias: string }
  | { kind: 'body' }
  | { kind: 'twin' };

export type Expr =
  | { kind: 'literal'; value: Value; pos: number }
  | { kind: 'path'; root: Root; segments: Segment[]; text: string; pos: number }
  | { kind: 'call'; fn: string; args: Expr[]; pos: number }
  | { kind: 'neg'; expr: Expr; pos: number }
  | { kind: 'not'; expr: Expr; pos: number }
  | { kind: 'and' | 'or'; terms: Expr[]; pos: number }
  | { kind: 'compare'; op: CompareOp; left: Expr; right: Expr; pos: number }
  | { kind: 'arith'; op: ArithmeticOp; left: Expr; right: Expr; pos: number }
  | { kind: 'concat'; left: Expr; right: Expr; pos: number };
