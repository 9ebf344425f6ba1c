/**
 * Tokenizer and recursive-descent parser for the subset of the IoT Hub query language that
 * `POST /devices/query` accepts. Grammar and semantics follow Azure's "IoT Hub query language for
 * device and module twins, jobs, and message routing":
 *
 *   query     := SELECT select FROM source [WHERE or] [GROUP BY path (',' path)*]
 *   select    := '*' | item (',' item)*          item := COUNT '(' ')' [AS name] | path [AS name]
 *   source    := devices | devices.modules | devices.jobs
 *   or        := and (OR and)*                   and := not (AND not)*
 *   not       := NOT not | '(' or ')' | operand [cmp operand | [NOT] IN ('(' | '[') operand, ... (')' | ']')]
 *   operand   := literal | path | FUNCTION '(' operand, ... ')'
 *   path      := name ('.' (name | '[[' any text but ']]' ']]') | '[' string-or-index ']')*   (a leading devices. / devices.modules. / devices.jobs. is dropped)
 *
 * `[[...]]` quotes a property name as it is, as in Azure's `configurations.[[my-config]].status`.
 *
 * NOT applies to a whole predicate (`NOT a = 1` is `NOT (a = 1)`), as in SQL. Keywords and function
 * names are case-insensitive, path names are not. Every error is an ArgumentInvalid HubError; the
 * positions in messages are 0-based character offsets into the query text.
 */
import { HubError } from '../../core/errors.js';
import type { JsonValue } from '../../core/json.js';

export const MAX_QUERY_LENGTH = 8192;
export const MAX_NESTING = 50;

export type QuerySource = 'devices' | 'devices.modules' | 'devices.jobs';
export type CompareOp = '=' | '!=' | '<' | '>' | '<=' | '>=';
const TYPE_TESTS = ['IS_DEFINED', 'IS_NULL', 'IS_STRING', 'IS_NUMBER', 'IS_BOOL', 'IS_OBJECT', 'IS_ARRAY', 'IS_PRIMITIVE'] as const;
const STRING_TESTS = ['STARTSWITH', 'ENDSWITH', 'CONTAINS'] as const;
export type FunctionName = (typeof TYPE_TESTS)[number] | (typeof STRING_TESTS)[number];

export type Operand =
  | { kind: 'path'; path: string[] }
  | { kind: 'literal'; value: JsonValue }
  | { kind: 'call'; fn: FunctionName; args: Operand[] };

export type Expr =
  | { kind: 'and'; terms: Expr[] }
  | { kind: 'or'; terms: Expr[] }
  | { kind: 'not'; expr: Expr }
  | { kind: 'compare'; op: CompareOp; left: Operand; right: Operand }
  | { kind: 'in'; negated: boolean; operand: Operand; list: Operand[] }
  /** A bare operand used as a condition: it holds only when it evaluates to `true`. */
  | { kind: 'test'; operand: Operand };

export type SelectClause =
  | { kind: 'star' }
  | { kind: 'count'; alias: string }
  | { kind: 'fields'; fields: Array<{ path: string[]; alias: string } | { count: true; alias: string }> };

export interface ParsedQuery {
  source: QuerySource;
  select: SelectClause;
  where?: Expr;
  groupBy?: string[][];
}

type FunctionInfo = { fn: FunctionName; arity: number };
/** Function names (upper case, with the STARTS_WITH / ENDS_WITH spellings of routing queries) and their arity. */
const FUNCTIONS = new Map<string, FunctionInfo>([
  ...TYPE_TESTS.map((fn): [string, FunctionInfo] => [fn, { fn, arity: 1 }]),
  ...STRING_TESTS.map((fn): [string, FunctionInfo] => [fn, { fn, arity: 2 }]),
  ['STARTS_WITH', { fn: 'STARTSWITH', arity: 2 }],
  ['ENDS_WITH', { fn: 'ENDSWITH', arity: 2 }],
]);

/** Words that cannot start a path. */
const RESERVED = new Set(['SELECT', 'FROM', 'WHERE', 'GROUP', 'BY', 'AS', 'AND', 'OR', 'NOT', 'IN', 'TOP']);
const COMPARE_OPS = new Map<string, CompareOp>([['=', '='], ['!=', '!='], ['<>', '!='], ['<', '<'], ['>', '>'], ['<=', '<='], ['>=', '>=']]);
const ESCAPES: Readonly<Record<string, string>> = { "'": "'", '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
const IDENT_PART = /[\p{L}\p{N}_$]/u;
/** Whitespace | number | identifier | punctuation; string literals are read by readString. */
const LEX = /(\s+)|(-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)|([\p{L}_$][\p{L}\p{N}_$]*)|<=|>=|<>|!=|[=<>(),.*[\]]/uy;

/** `text` is the token's source text, `value` its meaning (a string literal's contents, a number's value). */
type Token = { type: 'ident' | 'bracketed' | 'number' | 'string' | 'punct' | 'eof'; text: string; value: string | number; pos: number };

function syntaxError(pos: number, message: string): HubError {
  return new HubError('ArgumentInvalid', `Syntax error at position ${pos}: ${message}`);
}

function describe(t: Token): string {
  if (t.type === 'eof') return 'the end of the query';
  const text = t.text.length > 40 ? `${t.text.slice(0, 40)}…` : t.text;
  return t.type === 'string' ? text : `'${text}'`;
}

/** A quoted string: any character but the quote or a backslash, a doubled quote, or a backslash escape. */
const STRINGS = { "'": /'((?:[^'\\]|''|\\[^])*)'/y, '"': /"((?:[^"\\]|""|\\[^])*)"/y } as const;

function readString(text: string, start: number, quote: keyof typeof STRINGS): { value: string; end: number } {
  const re = STRINGS[quote];
  re.lastIndex = start;
  const m = re.exec(text);
  if (m === null) throw syntaxError(start, 'unterminated string literal');
  const unescape = new RegExp(`\\\\(u[0-9a-fA-F]{4}|[^])|${quote}${quote}`, 'g');
  const value = (m[1] ?? '').replace(unescape, (all: string, esc: string | undefined, offset: number) => {
    if (esc === undefined) return quote;
    const simple = esc.length === 1 ? ESCAPES[esc] : String.fromCharCode(parseInt(esc.slice(1), 16));
    if (simple === undefined) throw syntaxError(start + 1 + offset, `invalid escape sequence '${all}' in string literal`);
    return simple;
  });
  return { value, end: start + m[0].length };
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  for (let i = 0; i < text.length; ) {
    const c = text.charAt(i);
    if (c === "'" || c === '"') {
      const { value, end } = readString(text, i, c);
      tokens.push({ type: 'string', text: text.slice(i, end), value, pos: i });
      i = end;
      continue;
    }
    if (text.startsWith('[[', i)) {
      const end = text.indexOf(']]', i + 2);
      if (end < 0) throw syntaxError(i, "unterminated '[[' property name");
      tokens.push({ type: 'bracketed', text: text.slice(i, end + 2), value: text.slice(i + 2, end), pos: i });
      i = end + 2;
      continue;
    }
    LEX.lastIndex = i;
    const m = LEX.exec(text);
    if (m === null) throw syntaxError(i, `unexpected character '${c}'`);
    const [all, space, num, ident] = m;
    const end = i + all.length;
    const bad = num !== undefined && (IDENT_PART.test(text.charAt(end)) || !Number.isFinite(Number(num)));
    if (bad) throw syntaxError(i, `invalid number '${text.slice(i, end + 1).trim()}'`);
    const type = num !== undefined ? 'number' : ident !== undefined ? 'ident' : 'punct';
    if (space === undefined) tokens.push({ type, text: all, value: num !== undefined ? Number(num) : all, pos: i });
    i = end;
  }
  tokens.push({ type: 'eof', text: '', value: '', pos: text.length });
  return tokens;
}

type SelectItem = ({ path: string[]; alias: string } | { count: true; alias: string }) & { pos: number };

class Parser {
  #i = 0;
  #depth = 0;
  readonly #eof: Token;

  constructor(private readonly toks: Token[]) {
    this.#eof = toks[toks.length - 1] ?? { type: 'eof', text: '', value: '', pos: 0 };
  }

  #peek(ahead = 0): Token {
    return this.toks[this.#i + ahead] ?? this.#eof;
  }
  #next(count = 1): Token {
    const t = this.#peek();
    this.#i = Math.min(this.#i + count, this.toks.length - 1);
    return t;
  }
  #prev(): string {
    const t = this.toks[this.#i - 1];
    return t === undefined ? 'the start of the query' : describe(t);
  }
  #isKw(t: Token, kw: string): boolean {
    return t.type === 'ident' && t.text.toUpperCase() === kw;
  }
  #isPunct(t: Token, p: string): boolean {
    return t.type === 'punct' && t.text === p;
  }
  #acceptKw(kw: string): Token | undefined {
    return this.#isKw(this.#peek(), kw) ? this.#next() : undefined;
  }
  #acceptPunct(p: string): boolean {
    return this.#isPunct(this.#peek(), p) && this.#next() !== undefined;
  }
  #fail(expected: string): never {
    const t = this.#peek();
    throw syntaxError(t.pos, `expected ${expected} after ${this.#prev()} but found ${describe(t)}`);
  }
  /** Runs `parse` one nesting level deeper (parentheses, NOT, function calls). */
  #nested<T>(t: Token, parse: () => T): T {
    if (++this.#depth > MAX_NESTING) throw syntaxError(t.pos, `the query nests deeper than ${MAX_NESTING} levels`);
    const result = parse();
    this.#depth -= 1;
    return result;
  }

  query(): ParsedQuery {
    if (this.#acceptKw('SELECT') === undefined) this.#fail('SELECT');
    const items = this.#selectList();
    if (this.#acceptKw('FROM') === undefined) this.#fail(items === 'star' ? 'FROM' : "',' or FROM");
    const source = this.#source();
    const where = this.#acceptKw('WHERE') !== undefined ? this.#or() : undefined;
    const group = this.#acceptKw('GROUP');
    if (group !== undefined && this.#acceptKw('BY') === undefined) this.#fail('BY');
    const groupBy = group === undefined ? undefined : this.#list(() => this.#path());
    if (this.#peek().type !== 'eof') {
      if (group !== undefined) this.#fail("',' or the end of the query");
      this.#fail(`${where === undefined ? 'WHERE' : 'AND, OR'}, GROUP BY or the end of the query`);
    }
    const select = buildSelect(items, groupBy, group?.pos ?? 0);
    return { source, select, ...(where !== undefined && { where }), ...(groupBy !== undefined && { groupBy }) };
  }

  /** One or more items separated by commas. */
  #list<T>(item: () => T): T[] {
    const items = [item()];
    while (this.#acceptPunct(',')) items.push(item());
    return items;
  }

  #selectList(): SelectItem[] | 'star' {
    if (this.#acceptPunct('*')) return 'star';
    return this.#list((): SelectItem => {
      const t = this.#peek();
      if (this.#isKw(t, 'TOP') && this.#peek(1).type === 'number') throw syntaxError(t.pos, 'SELECT TOP is not supported');
      if (this.#isKw(t, 'COUNT') && this.#isPunct(this.#peek(1), '(')) {
        this.#next(2);
        if (!this.#acceptPunct(')')) this.#fail("')' (COUNT takes no arguments)");
        return { count: true, alias: this.#alias() ?? 'count', pos: t.pos };
      }
      if (t.type === 'ident' && this.#isPunct(this.#peek(1), '(')) {
        throw syntaxError(t.pos, `'${t.text}' is not supported in the SELECT list; use a path or COUNT()`);
      }
      const path = this.#path();
      return { path, alias: this.#alias() ?? path[path.length - 1] ?? '', pos: t.pos };
    });
  }

  #alias(): string | undefined {
    if (this.#acceptKw('AS') === undefined) return undefined;
    const t = this.#peek();
    if (t.type !== 'ident' || RESERVED.has(t.text.toUpperCase())) this.#fail('an alias name');
    this.#next();
    return t.text;
  }

  #source(): QuerySource {
    const t = this.#next();
    const devices = this.#isKw(t, 'DEVICES');
    const m = devices && this.#acceptPunct('.') ? this.#next() : undefined;
    if (devices && m === undefined) return 'devices';
    if (m !== undefined && this.#isKw(m, 'MODULES')) return 'devices.modules';
    if (m !== undefined && this.#isKw(m, 'JOBS')) return 'devices.jobs';
    const name = m === undefined ? describe(t) : `'devices.${m.text}'`;
    throw syntaxError((m ?? t).pos, `unknown FROM source ${name}; expected devices, devices.modules or devices.jobs`);
  }

  #path(): string[] {
    const first = this.#peek();
    if (first.type !== 'ident' || RESERVED.has(first.text.toUpperCase())) this.#fail('a property path');
    this.#next();
    const segments = [first.text];
    for (;;) {
      if (this.#acceptPunct('.')) {
        const t = this.#peek();
        segments.push(t.type === 'ident' ? this.#next().text : t.type === 'bracketed' ? String(this.#next().value) : this.#fail('a property name'));
      } else if (this.#acceptPunct('[')) {
        const s = this.#peek();
        if (s.type !== 'string' && !(s.type === 'number' && /^\d+$/.test(s.text))) this.#fail('a quoted property name or an index');
        segments.push(String(this.#next().value));
        if (!this.#acceptPunct(']')) this.#fail("']'");
      } else {
        break;
      }
    }
    if (segments.length > 1 && segments[0]?.toLowerCase() === 'devices') {
      segments.shift();
      const inner = segments[0]?.toLowerCase();
      if (segments.length > 1 && (inner === 'modules' || inner === 'jobs')) segments.shift();
    }
    return segments;
  }

  #or(): Expr {
    const terms = [this.#and()];
    while (this.#acceptKw('OR') !== undefined) terms.push(this.#and());
    return terms.length === 1 && terms[0] !== undefined ? terms[0] : { kind: 'or', terms };
  }

  #and(): Expr {
    const terms = [this.#not()];
    while (this.#acceptKw('AND') !== undefined) terms.push(this.#not());
    return terms.length === 1 && terms[0] !== undefined ? terms[0] : { kind: 'and', terms };
  }

  #not(): Expr {
    const t = this.#peek();
    if (this.#isKw(t, 'NOT')) return this.#nested(this.#next(), () => ({ kind: 'not', expr: this.#not() }));
    if (this.#isPunct(t, '(')) {
      return this.#nested(this.#next(), () => {
        const e = this.#or();
        if (!this.#acceptPunct(')')) this.#fail("')'");
        return e;
      });
    }
    const left = this.#operand();
    const op = this.#peek();
    const cmp = op.type === 'punct' ? COMPARE_OPS.get(op.text) : undefined;
    if (cmp !== undefined) {
      this.#next();
      return { kind: 'compare', op: cmp, left, right: this.#operand() };
    }
    const negated = this.#isKw(op, 'NOT') && this.#isKw(this.#peek(1), 'IN');
    if (negated || this.#isKw(op, 'IN')) {
      this.#next(negated ? 2 : 1);
      const open = this.#peek();
      if (!this.#isPunct(open, '(') && !this.#isPunct(open, '[')) this.#fail("'(' or '['");
      this.#next();
      const list = this.#list(() => this.#operand());
      const close = open.text === '(' ? ')' : ']';
      if (!this.#acceptPunct(close)) this.#fail(`',' or '${close}'`);
      return { kind: 'in', negated, operand: left, list };
    }
    return { kind: 'test', operand: left };
  }

  #operand(): Operand {
    const t = this.#peek();
    if (t.type === 'string' || t.type === 'number') {
      this.#next();
      return { kind: 'literal', value: t.value };
    }
    if (t.type !== 'ident') this.#fail('a value');
    const upper = t.text.toUpperCase();
    if (upper === 'TRUE' || upper === 'FALSE' || upper === 'NULL') {
      this.#next();
      return { kind: 'literal', value: upper === 'NULL' ? null : upper === 'TRUE' };
    }
    if (this.#isPunct(this.#peek(1), '(')) {
      const f = FUNCTIONS.get(upper);
      if (f === undefined) throw syntaxError(t.pos, `unknown function '${t.text}'`);
      this.#next(2);
      const args = this.#nested(t, () => {
        const list = this.#isPunct(this.#peek(), ')') ? [] : this.#list(() => this.#operand());
        if (!this.#acceptPunct(')')) this.#fail("',' or ')'");
        return list;
      });
      if (args.length !== f.arity) {
        throw syntaxError(t.pos, `${f.fn} takes ${f.arity} argument${f.arity === 1 ? '' : 's'} but was given ${args.length}`);
      }
      return { kind: 'call', fn: f.fn, args };
    }
    if (RESERVED.has(upper)) this.#fail('a value');
    return { kind: 'path', path: this.#path() };
  }
}

function buildSelect(items: SelectItem[] | 'star', groupBy: string[][] | undefined, groupPos: number): SelectClause {
  if (items === 'star') {
    if (groupBy !== undefined) throw syntaxError(groupPos, 'GROUP BY needs a SELECT list of grouped paths and COUNT(), not *');
    return { kind: 'star' };
  }
  const grouped = new Set((groupBy ?? []).map((p) => JSON.stringify(p)));
  const hasCount = items.some((it) => 'count' in it);
  const names = new Set<string>();
  for (const it of items) {
    if (names.has(it.alias)) throw syntaxError(it.pos, `duplicate column name '${it.alias}'; use AS to rename one of them`);
    names.add(it.alias);
    if ('path' in it && (groupBy !== undefined || hasCount) && !grouped.has(JSON.stringify(it.path))) {
      throw syntaxError(it.pos, `'${it.path.join('.')}' must appear in GROUP BY when the SELECT list aggregates`);
    }
  }
  const first = items[0];
  if (items.length === 1 && first !== undefined && 'count' in first) return { kind: 'count', alias: first.alias };
  return { kind: 'fields', fields: items.map((it) => ('count' in it ? { count: true, alias: it.alias } : { path: it.path, alias: it.alias })) };
}

/** Parses a query, throwing an ArgumentInvalid HubError that names the position of any problem. */
export function parseQuery(text: string): ParsedQuery {
  const tooLong = `The query is ${text.length} characters long; the limit is ${MAX_QUERY_LENGTH}`;
  if (text.length > MAX_QUERY_LENGTH) throw new HubError('ArgumentInvalid', tooLong);
  if (text.trim() === '') throw new HubError('ArgumentInvalid', 'The query is empty');
  return new Parser(tokenize(text)).query();
}
