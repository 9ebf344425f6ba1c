/**
 * Compiles a parsed condition into a tree of closures, once per routing change; evaluating one is a
 * few function calls and property reads, with no parsing or regular expression per message.
 *
 * Semantics (Azure's "IoT Hub query language", Expressions and conditions, which follow DocumentDB
 * SQL): a missing field is undefined; comparing values of different types, arithmetic on anything
 * but numbers and `||` on anything but strings are undefined; AND / OR / NOT are three-valued (false
 * AND undefined = false, true OR undefined = true, NOT undefined = undefined); a condition is met
 * only when it evaluates to true. Application property values are strings, so `temperature > 50`
 * is undefined for `temperature: '55'` (string vs number) and `AS_NUMBER(temperature) > 50` is
 * true; `temperature = '55'` compares strings.
 */
import type { JsonValue } from '../../core/json.js';
import { parseCondition } from './parser.js';
import type { ArithmeticOp, CompareOp, Expr, Segment, Value } from './ast.js';
import { BodyPaths } from './body-scan.js';
import { FUNCTIONS } from './functions.js';
import { lookup, NEEDS_PARSE, prepareInput, type PreparedInput, type RoutingInput } from './input.js';

/** Evaluates against one message; `notes` (only when explaining) collects why values were undefined. */
type Fn = (p: PreparedInput, notes: string[] | undefined) => Value;

export interface CompiledCondition {
  readonly text: string;
  readonly usesTwin: boolean;
  readonly usesBody: boolean;
  /** true only when the condition evaluates to true. */
  matches(input: RoutingInput | PreparedInput): boolean;
  /** For `message-route test`: the result and, when not matched, why. */
  explain(input: RoutingInput | PreparedInput): { matched: boolean; reason?: string };
}

function typeName(v: Value): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function show(v: Value): string {
  if (v === undefined) return 'undefined';
  const s = typeof v === 'string' ? `'${v}'` : JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
}

/** Follows the segments from a value; undefined at the first step that does not exist. */
function walk(start: Value, segments: readonly Segment[], text: string, notes: string[] | undefined): Value {
  let cur = start;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    let next: Value;
    if (typeof seg === 'number') next = Array.isArray(cur) ? (cur[seg] as JsonValue | undefined) : undefined;
    else next = typeof cur === 'object' && cur !== null && !Array.isArray(cur) ? (lookup(cur, seg) as Value) : undefined;
    if (next === undefined) {
      if (notes !== undefined) {
        const where = typeof seg === 'number' ? `no element ${seg}` : `no field '${seg}'`;
        notes.push(`${text} is undefined: ${cur === undefined || typeof cur !== 'object' || cur === null ? `a ${typeName(cur)} has ${where}` : `there is ${where}`}`);
      }
      return undefined;
    }
    cur = next;
  }
  return cur;
}

function compilePath(e: Extract<Expr, { kind: 'path' }>, paths: BodyPaths): Fn {
  const { root, segments, text } = e;
  switch (root.kind) {
    case 'app': {
      const name = root.name;
      return (p, notes) => {
        const v = lookup(p.input.properties, name) as string | undefined;
        if (v === undefined) {
          notes?.push(`${text} is undefined: the message has no application property '${name}'`);
          return undefined;
        }
        return segments.length === 0 ? v : walk(v, segments, text, notes);
      };
    }
    case 'sys': {
      const { wire, alias } = root;
      return (p, notes) => {
        const v = (lookup(p.input.systemProperties, wire) ?? lookup(p.input.properties, alias)) as string | undefined;
        if (v === undefined) {
          notes?.push(`${text} is undefined: the message has no system property ${wire}`);
          return undefined;
        }
        return segments.length === 0 ? v : walk(v, segments, text, notes);
      };
    }
    case 'body':
      // Azure: queries apply to properties in the body, never to the whole body ($body, $body[0]).
      if (segments.length === 0 || typeof segments[0] === 'number') {
        return (_p, notes) => {
          notes?.push(`${text} is undefined: routing reads fields of the body, not the body itself`);
          return undefined;
        };
      }
      {
        const id = paths.add(segments);
        return (p, notes) => {
          // Matching reads the path from the body's bytes; explaining parses it, to say why a step is missing.
          if (notes === undefined) {
            const v = p.bodyPath(paths, id);
            if (v !== NEEDS_PARSE) return v;
          }
          const body = p.body();
          if (body.problem !== undefined) {
            notes?.push(`${text} is undefined: ${body.problem}`);
            return undefined;
          }
          return walk(body.json, segments, text, notes);
        };
      }
    case 'twin':
      return (p, notes) => {
        const twin = p.input.twin;
        if (twin === undefined) {
          notes?.push(`${text} is undefined: no twin was given`);
          return undefined;
        }
        return walk(twin, segments, text, notes);
      };
  }
}

function compareValues(op: CompareOp, a: Value, b: Value): Value {
  if (a === undefined || b === undefined) return undefined;
  const ta = typeof a;
  if (ta !== typeof b || (ta === 'object' && (a === null) !== (b === null))) return undefined;
  if (ta === 'number' || ta === 'string') {
    switch (op) {
      case '=':
        return a === b;
      case '!=':
        return a !== b;
      case '<':
        return (a as number) < (b as number);
      case '<=':
        return (a as number) <= (b as number);
      case '>':
        return (a as number) > (b as number);
      case '>=':
        return (a as number) >= (b as number);
    }
  }
  // Booleans and null compare for equality only; objects and arrays not at all.
  if (ta === 'boolean' || a === null) return op === '=' ? a === b : op === '!=' ? a !== b : undefined;
  return undefined;
}

function isProperty(e: Expr): boolean {
  return e.kind === 'path' && (e.root.kind === 'app' || e.root.kind === 'sys');
}

function compileCompare(e: Extract<Expr, { kind: 'compare' }>, paths: BodyPaths): Fn {
  const { op } = e;
  const left = compileExpr(e.left, paths);
  const right = compileExpr(e.right, paths);
  const hint = isProperty(e.left) || isProperty(e.right) ? ' (message properties are strings: AS_NUMBER(x) converts one to a number)' : '';
  return (p, notes) => {
    const a = left(p, notes);
    const b = right(p, notes);
    const r = compareValues(op, a, b);
    if (r === undefined && notes !== undefined && a !== undefined && b !== undefined) {
      notes.push(`${show(a)} ${op} ${show(b)} is undefined: a ${typeName(a)} and a ${typeName(b)} do not compare${typeof a !== typeof b ? hint : ''}`);
    }
    return r;
  };
}

function arithmetic(op: ArithmeticOp, a: number, b: number): Value {
  let r: number;
  switch (op) {
    case '+':
      r = a + b;
      break;
    case '-':
      r = a - b;
      break;
    case '*':
      r = a * b;
      break;
    case '/':
      r = a / b;
      break;
    case '%':
      r = a % b;
      break;
  }
  return Number.isFinite(r) ? r : undefined;
}

function compileExpr(e: Expr, paths: BodyPaths): Fn {
  switch (e.kind) {
    case 'literal': {
      const v = e.value;
      return () => v;
    }
    case 'path':
      return compilePath(e, paths);
    case 'compare':
      return compileCompare(e, paths);
    case 'and': {
      const terms = e.terms.map((t) => compileExpr(t, paths));
      return (p, notes) => {
        let unknown = false;
        for (const t of terms) {
          const v = t(p, notes);
          if (v === false) return false;
          if (v !== true) unknown = true;
        }
        return unknown ? undefined : true;
      };
    }
    case 'or': {
      const terms = e.terms.map((t) => compileExpr(t, paths));
      return (p, notes) => {
        let unknown = false;
        for (const t of terms) {
          const v = t(p, notes);
          if (v === true) return true;
          if (v !== false) unknown = true;
        }
        return unknown ? undefined : false;
      };
    }
    case 'not': {
      const inner = compileExpr(e.expr, paths);
      return (p, notes) => {
        const v = inner(p, notes);
        return v === true ? false : v === false ? true : undefined;
      };
    }
    case 'neg': {
      const inner = compileExpr(e.expr, paths);
      return (p, notes) => {
        const v = inner(p, notes);
        return typeof v === 'number' ? -v : undefined;
      };
    }
    case 'arith': {
      const { op } = e;
      const left = compileExpr(e.left, paths);
      const right = compileExpr(e.right, paths);
      return (p, notes) => {
        const a = left(p, notes);
        const b = right(p, notes);
        return typeof a === 'number' && typeof b === 'number' ? arithmetic(op, a, b) : undefined;
      };
    }
    case 'concat': {
      const left = compileExpr(e.left, paths);
      const right = compileExpr(e.right, paths);
      return (p, notes) => {
        const a = left(p, notes);
        const b = right(p, notes);
        return typeof a === 'string' && typeof b === 'string' ? a + b : undefined;
      };
    }
    case 'call': {
      const def = FUNCTIONS.get(e.fn)!;
      const args = e.args.map((a) => compileExpr(a, paths));
      if (args.length === 1) {
        const [a] = args as [Fn];
        return (p, notes) => def.apply([a(p, notes)]);
      }
      return (p, notes) => def.apply(args.map((a) => a(p, notes)));
    }
  }
}

function uses(e: Expr, root: 'body' | 'twin'): boolean {
  switch (e.kind) {
    case 'literal':
      return false;
    case 'path':
      return e.root.kind === root;
    case 'and':
    case 'or':
      return e.terms.some((t) => uses(t, root));
    case 'call':
      return e.args.some((t) => uses(t, root));
    case 'not':
    case 'neg':
      return uses(e.expr, root);
    default:
      return uses(e.left, root) || uses(e.right, root);
  }
}

const MAX_REASONS = 5;

class Condition implements CompiledCondition {
  constructor(
    readonly text: string,
    private readonly fn: Fn,
    readonly usesTwin: boolean,
    readonly usesBody: boolean,
  ) {}

  matches(input: RoutingInput | PreparedInput): boolean {
    return this.fn(prepareInput(input), undefined) === true;
  }

  explain(input: RoutingInput | PreparedInput): { matched: boolean; reason?: string } {
    const notes: string[] = [];
    const v = this.fn(prepareInput(input), notes);
    if (v === true) return { matched: true };
    const head =
      v === false ? 'the condition is false' : v === undefined ? 'the condition is undefined (a route treats it as false)' : `the condition evaluates to ${typeName(v)} ${show(v)}, not true`;
    const why = [...new Set(notes)].slice(0, MAX_REASONS);
    return { matched: false, reason: why.length === 0 ? head : `${head}: ${why.join('; ')}` };
  }
}

/**
 * Compiles a route condition (Azure's routing query language); '' or 'true' always holds. Throws
 * RoutingQueryError (with the position) on bad syntax, unknown functions, wrong argument counts, a
 * condition over 1024 characters or nested deeper than MAX_NESTING. Conditions compiled with one
 * `paths` table (a routing document's) share one scan of each message's body.
 */
export function compileCondition(text: string, paths: BodyPaths = new BodyPaths()): CompiledCondition {
  const ast = parseCondition(text);
  return new Condition(text, compileExpr(ast, paths), uses(ast, 'twin'), uses(ast, 'body'));
}
