/**
 * The functions Azure lists for route conditions ("IoT Hub query language", Functions: math, type
 * checking and casting, string), with DocumentDB-style typing: an argument of the wrong type makes
 * the result undefined (never an error at evaluation time), a type test always answers true/false.
 */
import type { Value } from './ast.js';

export interface FunctionDef {
  /** Fewest and most arguments. */
  min: number;
  max: number;
  apply(args: Value[]): Value;
}

/** A finite number, or undefined (NaN and infinities are not JSON values). */
function num(n: number): Value {
  return Number.isFinite(n) ? n : undefined;
}

function math1(f: (x: number) => number): FunctionDef {
  return { min: 1, max: 1, apply: ([x]) => (typeof x === 'number' ? num(f(x)) : undefined) };
}

function test1(f: (x: Value) => boolean): FunctionDef {
  return { min: 1, max: 1, apply: ([x]) => f(x) };
}

function string1(f: (s: string) => Value): FunctionDef {
  return { min: 1, max: 1, apply: ([s]) => (typeof s === 'string' ? f(s) : undefined) };
}

function string2(f: (s: string, t: string) => Value): FunctionDef {
  return { min: 2, max: 2, apply: ([s, t]) => (typeof s === 'string' && typeof t === 'string' ? f(s, t) : undefined) };
}

/** A JSON number, optionally surrounded by whitespace (what AS_NUMBER accepts in a string). */
const NUMBER_TEXT = /^\s*-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$/;

export function asNumber(x: Value): Value {
  if (typeof x === 'number') return x;
  if (typeof x !== 'string' || !NUMBER_TEXT.test(x)) return undefined;
  return num(Number(x));
}

const isObject = (x: Value): boolean => typeof x === 'object' && x !== null && !Array.isArray(x);

/** SUBSTRING(s, start [, length]): zero-based start, clamped to the string like DocumentDB. */
function substring([s, start, length]: Value[]): Value {
  if (typeof s !== 'string' || typeof start !== 'number') return undefined;
  if (length !== undefined && typeof length !== 'number') return undefined;
  const from = Math.max(0, Math.trunc(start));
  if (length === undefined) return s.slice(from);
  return s.slice(from, from + Math.max(0, Math.trunc(length)));
}

/** By upper-case name. STARTSWITH / ENDSWITH are the twin query language's spellings, accepted too. */
export const FUNCTIONS: ReadonlyMap<string, FunctionDef> = new Map<string, FunctionDef>([
  // Math.
  ['ABS', math1(Math.abs)],
  ['EXP', math1(Math.exp)],
  ['POWER', { min: 2, max: 2, apply: ([x, y]) => (typeof x === 'number' && typeof y === 'number' ? num(x ** y) : undefined) }],
  ['SQUARE', math1((x) => x * x)],
  ['CEILING', math1(Math.ceil)],
  ['FLOOR', math1(Math.floor)],
  ['SIGN', math1((x) => (x > 0 ? 1 : x < 0 ? -1 : 0))],
  ['SQRT', math1(Math.sqrt)],
  // Type checking and casting.
  ['AS_NUMBER', { min: 1, max: 1, apply: ([x]) => asNumber(x) }],
  ['IS_ARRAY', test1((x) => Array.isArray(x))],
  ['IS_BOOL', test1((x) => typeof x === 'boolean')],
  ['IS_DEFINED', test1((x) => x !== undefined)],
  ['IS_NULL', test1((x) => x === null)],
  ['IS_NUMBER', test1((x) => typeof x === 'number')],
  ['IS_OBJECT', test1(isObject)],
  ['IS_PRIMITIVE', test1((x) => x === null || typeof x === 'string' || typeof x === 'number' || typeof x === 'boolean')],
  ['IS_STRING', test1((x) => typeof x === 'string')],
  // Strings.
  ['CONCAT', { min: 2, max: 64, apply: (args) => (args.every((a) => typeof a === 'string') ? args.join('') : undefined) }],
  ['LENGTH', string1((s) => s.length)],
  ['LOWER', string1((s) => s.toLowerCase())],
  ['UPPER', string1((s) => s.toUpperCase())],
  ['SUBSTRING', { min: 2, max: 3, apply: substring }],
  ['INDEX_OF', string2((s, t) => s.indexOf(t))],
  ['STARTS_WITH', string2((s, t) => s.startsWith(t))],
  ['ENDS_WITH', string2((s, t) => s.endsWith(t))],
  ['CONTAINS', string2((s, t) => s.includes(t))],
  ['STARTSWITH', string2((s, t) => s.startsWith(t))],
  ['ENDSWITH', string2((s, t) => s.endsWith(t))],
]);
