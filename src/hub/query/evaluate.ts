/**
 * Evaluation of parsed queries against twin documents: WHERE filtering, projection and the
 * COUNT / GROUP BY aggregates. Pure; no I/O.
 *
 * Semantics follow Azure's "IoT Hub query language for device and module twins, jobs, and message
 * routing" (which defers to the Cosmos DB SQL dialect for the details):
 * - A path that does not resolve is `undefined`. Comparing with `undefined`, or comparing values
 *   of different JSON types (null counts as its own type), yields `undefined`.
 * - `=` / `!=` compare objects and arrays deeply; `<`, `>`, `<=`, `>=` on objects or arrays yield
 *   `undefined`. Strings order by UTF-16 code unit (ordinal), booleans as false < true.
 * - Three-valued logic: AND is false if any side is false, else undefined if any side is; OR is
 *   true if any side is true, else undefined if any side is; NOT undefined is undefined. A
 *   non-Boolean value used as a condition is undefined.
 * - `x IN (a, b)` is `x = a OR x = b`; `x NOT IN (...)` is `NOT (x IN (...))`.
 * - A document passes the WHERE clause only when it evaluates to exactly `true`.
 */
import { HubError } from '../../core/errors.js';
import { isJsonObject, type JsonObject, type JsonValue } from '../../core/json.js';
import type { CompareOp, Expr, Operand, ParsedQuery, SelectClause } from './parser.js';

type Value = JsonValue | undefined;
type Truth = boolean | undefined;

/** Follows a path; array elements are reached with numeric segments (`tags.list[0]`). */
export function resolvePath(doc: JsonValue, path: readonly string[]): Value {
  let cur: Value = doc;
  for (const seg of path) {
    if (Array.isArray(cur)) {
      if (!/^(0|[1-9]\d*)$/.test(seg)) return undefined;
      cur = cur[Number(seg)];
    } else if (isJsonObject(cur) && Object.hasOwn(cur, seg)) {
      cur = cur[seg];
    } else {
      return undefined;
    }
    if (cur === undefined) return undefined;
  }
  return cur;
}

function typeOf(v: JsonValue): 'null' | 'array' | 'object' | 'string' | 'number' | 'boolean' {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object') return 'object';
  return typeof v === 'string' ? 'string' : typeof v === 'number' ? 'number' : 'boolean';
}

function deepEqual(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => b[i] !== undefined && deepEqual(x, b[i]));
  }
  if (isJsonObject(a) && isJsonObject(b)) {
    const keys = Object.keys(a);
    if (keys.length !== Object.keys(b).length) return false;
    return keys.every((k) => {
      const x = a[k];
      const y = b[k];
      return x !== undefined && y !== undefined && Object.hasOwn(b, k) && deepEqual(x, y);
    });
  }
  return false;
}

function compare(op: CompareOp, a: Value, b: Value): Truth {
  if (a === undefined || b === undefined) return undefined;
  const t = typeOf(a);
  if (t !== typeOf(b)) return undefined;
  if (op === '=') return deepEqual(a, b);
  if (op === '!=') return !deepEqual(a, b);
  if (t === 'object' || t === 'array') return undefined;
  // Same primitive type here: null, boolean, number or string. JS `<` on two strings is ordinal.
  const x = a as string | number | boolean | null;
  const y = b as string | number | boolean | null;
  const lt = x === null ? false : (x as string | number) < (y as string | number);
  const eq = x === y;
  switch (op) {
    case '<':
      return lt;
    case '<=':
      return lt || eq;
    case '>':
      return !lt && !eq;
    case '>=':
      return !lt;
  }
}

function stringArgs(args: Value[]): [string, string] | undefined {
  const [s, t] = args;
  return typeof s === 'string' && typeof t === 'string' ? [s, t] : undefined;
}

function evalOperand(o: Operand, doc: JsonObject): Value {
  switch (o.kind) {
    case 'literal':
      return o.value;
    case 'path':
      return resolvePath(doc, o.path);
    case 'call': {
      const args = o.args.map((a) => evalOperand(a, doc));
      const v = args[0];
      switch (o.fn) {
        case 'IS_DEFINED':
          return v !== undefined;
        case 'IS_NULL':
          return v === null;
        case 'IS_STRING':
          return typeof v === 'string';
        case 'IS_NUMBER':
          return typeof v === 'number';
        case 'IS_BOOL':
          return typeof v === 'boolean';
        case 'IS_OBJECT':
          return isJsonObject(v);
        case 'IS_ARRAY':
          return Array.isArray(v);
        case 'IS_PRIMITIVE':
          return v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
        case 'STARTSWITH':
        case 'ENDSWITH':
        case 'CONTAINS': {
          const st = stringArgs(args);
          if (st === undefined) return undefined;
          const [s, t] = st;
          return o.fn === 'STARTSWITH' ? s.startsWith(t) : o.fn === 'ENDSWITH' ? s.endsWith(t) : s.includes(t);
        }
      }
    }
  }
}

function evalExpr(e: Expr, doc: JsonObject): Truth {
  switch (e.kind) {
    case 'and': {
      let result: Truth = true;
      for (const term of e.terms) {
        const v = evalExpr(term, doc);
        if (v === false) return false;
        if (v === undefined) result = undefined;
      }
      return result;
    }
    case 'or': {
      let result: Truth = false;
      for (const term of e.terms) {
        const v = evalExpr(term, doc);
        if (v === true) return true;
        if (v === undefined) result = undefined;
      }
      return result;
    }
    case 'not': {
      const v = evalExpr(e.expr, doc);
      return v === undefined ? undefined : !v;
    }
    case 'compare':
      return compare(e.op, evalOperand(e.left, doc), evalOperand(e.right, doc));
    case 'in': {
      const x = evalOperand(e.operand, doc);
      let found: Truth = false;
      for (const item of e.list) {
        const v = compare('=', x, evalOperand(item, doc));
        if (v === true) {
          found = true;
          break;
        }
        if (v === undefined) found = undefined;
      }
      return found === undefined ? undefined : e.negated ? !found : found;
    }
    case 'test': {
      const v = evalOperand(e.operand, doc);
      return typeof v === 'boolean' ? v : undefined;
    }
  }
}

/** True when the document passes the WHERE clause (no clause: every document passes). */
export function matches(where: Expr | undefined, doc: JsonObject): boolean {
  return where === undefined || evalExpr(where, doc) === true;
}

/**
 * The row a non-aggregate query returns for a matching document: the document itself for
 * `SELECT *`, otherwise an object with one key per selected path whose value is defined.
 */
export function project(select: SelectClause, doc: JsonObject): JsonObject {
  if (select.kind === 'star') return doc;
  const row: JsonObject = {};
  if (select.kind === 'count') return row;
  for (const f of select.fields) {
    if (!('path' in f)) continue;
    const v = resolvePath(doc, f.path);
    if (v !== undefined) row[f.alias] = v;
  }
  return row;
}

/** True for queries that return aggregated rows (COUNT() or GROUP BY) rather than one row per document. */
export function isAggregate(q: ParsedQuery): boolean {
  return q.select.kind === 'count' || q.groupBy !== undefined || (q.select.kind === 'fields' && q.select.fields.some((f) => 'count' in f));
}

/** A canonical text for a value, equal for deeply equal values whatever their key order. */
function canonical(v: Value): string {
  if (v === undefined) return '~';
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (isJsonObject(v)) {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

type Column = { path: string[]; alias: string } | { count: true; alias: string };

interface Group {
  /** The selected path values of the first document in the group. */
  sample: Value[];
  count: number;
}

/**
 * Computes COUNT() and GROUP BY results: feed every document that passed the WHERE clause to
 * `add`, then read the rows from `results`. Groups come out in the order they were first seen; a
 * group whose key is undefined is kept, and its row simply lacks that column.
 */
export class Aggregator {
  readonly #columns: Column[];
  readonly #paths: string[][];
  readonly #groupBy: string[][];
  readonly #groups = new Map<string, Group>();

  constructor(query: ParsedQuery) {
    const { select } = query;
    if (select.kind === 'star') throw new HubError('ArgumentInvalid', 'SELECT * is not an aggregate query');
    this.#columns = select.kind === 'count' ? [{ count: true, alias: select.alias }] : select.fields;
    this.#paths = this.#columns.flatMap((c) => ('path' in c ? [c.path] : []));
    this.#groupBy = query.groupBy ?? [];
    // Without GROUP BY there is exactly one group, present even when no document matched.
    if (this.#groupBy.length === 0) this.#groups.set('', { sample: this.#paths.map(() => undefined), count: 0 });
  }

  add(doc: JsonObject): void {
    const key = this.#groupBy.length === 0 ? '' : this.#groupBy.map((p) => canonical(resolvePath(doc, p))).join('\u0001');
    const g = this.#groups.get(key);
    if (g === undefined) {
      this.#groups.set(key, { sample: this.#paths.map((p) => resolvePath(doc, p)), count: 1 });
    } else {
      if (g.count === 0) g.sample = this.#paths.map((p) => resolvePath(doc, p));
      g.count += 1;
    }
  }

  results(): JsonObject[] {
    const rows: JsonObject[] = [];
    for (const g of this.#groups.values()) {
      const row: JsonObject = {};
      let i = 0;
      for (const c of this.#columns) {
        if ('count' in c) {
          row[c.alias] = g.count;
        } else {
          const v = g.sample[i++];
          if (v !== undefined) row[c.alias] = v;
        }
      }
      rows.push(row);
    }
    return rows;
  }
}
