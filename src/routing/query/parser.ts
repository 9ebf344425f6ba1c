/**
 * Tokenizer and recursive-descent parser for Azure IoT Hub's route conditions ("IoT Hub message
 * routing query syntax"; expressions, operators and functions from "IoT Hub query language",
 * Expressions and conditions). Precedence, loosest first:
 *
 *   or      := and (OR and)*
 *   and     := not (AND not)*
 *   not     := NOT not | compare                      (NOT a = 1 is NOT (a = 1), as in SQL)
 *   compare := concat ((= | != | <> | < | <= | > | >=) concat)*
 *   concat  := add (|| add)*
 *   add     := mul ((+ | -) mul)*
 *   mul     := unary ((* | / | %) unary)*
 *   unary   := (- | +) unary | primary
 *   primary := literal | '(' or ')' | FUNCTION '(' or (',' or)* ')' | path
 *   path    := root ('.' name | '[' string-or-index ']')*
 *   root    := $body | $twin | $name (system property) | name | '[' string ']' (application property)
 *
 * Keywords (AND OR NOT TRUE FALSE NULL UNDEFINED) and function names are case-insensitive. Names are
 * letters, digits, `_` and `$`, with inner `-` (Azure's system properties have them:
 * `$iothub-enqueuedtime`), so `a-1` is the property "a-1" and a subtraction needs spaces: `a - 1`.
 * Other names go in brackets: `['temp.c']`, `$body['odd name']`. Strings take single or double quotes
 * and the escapes \' \" \\ \/ \b \f \n \r \t \uXXXX; numbers are decimal or 0x hexadecimal.
 */
import { MAX_CONDITION_LENGTH, MAX_NESTING, RoutingQueryError, type ArithmeticOp, type CompareOp, type Expr, type Root, type Segment } from './ast.js';
import { FUNCTIONS } from './functions.js';
import { systemWireName } from './system-properties.js';

type TokenType = 'name' | 'number' | 'string' | 'punct' | 'eof';
interface Token {
  type: TokenType;
  /** The source text. */
  text: string;
  /** A string literal's contents, a number's value, a name or punctuation as written. */
  value: string | number;
  pos: number;
}

/** SQL words users try that Azure's route conditions do not have (IN: MicrosoftDocs/azure-docs#7109). */
const UNSUPPORTED = new Set(['IN', 'NIN', 'LIKE', 'BETWEEN', 'IS']);
const KEYWORDS = new Set(['AND', 'OR', 'NOT', 'TRUE', 'FALSE', 'NULL', 'UNDEFINED']);
const COMPARE = new Map<string, CompareOp>([['=', '='], ['!=', '!='], ['<>', '!='], ['<', '<'], ['<=', '<='], ['>', '>'], ['>=', '>=']]);
const ESCAPES: Readonly<Record<string, string>> = { "'": "'", '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
/** Whitespace | hex number | decimal number | name | punctuation. Strings are read by readString. */
const LEX =
  /(\s+)|(0[xX][0-9a-fA-F]+)|((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)|([\p{L}_$][\p{L}\p{M}\p{N}_$]*(?:-[\p{L}\p{M}\p{N}_$]+)*)|<=|>=|<>|!=|\|\||[=<>(),.[\]+\-*/%]/uy;
const NAME_PART = /[\p{L}\p{M}\p{N}_$]/u;

function fail(pos: number, what: string): never {
  throw new RoutingQueryError(`Syntax error at position ${pos}: ${what}`, pos);
}

function describe(t: Token): string {
  if (t.type === 'eof') return 'the end of the condition';
  const text = t.text.length > 40 ? `${t.text.slice(0, 40)}…` : t.text;
  return t.type === 'string' ? text : `'${text}'`;
}

function readString(text: string, start: number): { value: string; end: number } {
  const quote = text.charAt(start);
  let out = '';
  for (let i = start + 1; i < text.length; i++) {
    const c = text.charAt(i);
    if (c === quote) return { value: out, end: i + 1 };
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = text.charAt(i + 1);
    if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
      out += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
      i += 5;
      continue;
    }
    const simple = ESCAPES[e];
    if (simple === undefined) fail(i, `invalid escape sequence '\\${e}' in a string`);
    out += simple;
    i++;
  }
  return fail(start, 'unterminated string');
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  for (let i = 0; i < text.length; ) {
    const c = text.charAt(i);
    if (c === "'" || c === '"') {
      const { value, end } = readString(text, i);
      tokens.push({ type: 'string', text: text.slice(i, end), value, pos: i });
      i = end;
      continue;
    }
    LEX.lastIndex = i;
    const m = LEX.exec(text);
    if (m === null) fail(i, `unexpected character '${c}'`);
    const [all, space, hex, dec, name] = m;
    const end = i + all.length;
    if ((hex !== undefined || dec !== undefined) && NAME_PART.test(text.charAt(end))) {
      fail(i, `invalid number '${text.slice(i, end + 1)}'`);
    }
    if (hex !== undefined) tokens.push({ type: 'number', text: all, value: parseInt(hex.slice(2), 16), pos: i });
    else if (dec !== undefined) tokens.push({ type: 'number', text: all, value: Number(dec), pos: i });
    else if (name !== undefined) tokens.push({ type: 'name', text: all, value: all, pos: i });
    else if (space === undefined) tokens.push({ type: 'punct', text: all, value: all, pos: i });
    i = end;
  }
  tokens.push({ type: 'eof', text: '', value: '', pos: text.length });
  return tokens;
}

class Parser {
  private i = 0;
  private depth = 0;

  constructor(
    private readonly text: string,
    private readonly tokens: Token[],
  ) {}

  parse(): Expr {
    const e = this.or();
    const t = this.peek();
    if (t.type !== 'eof') fail(t.pos, `unexpected ${describe(t)}`);
    return e;
  }

  private peek(): Token {
    return this.tokens[this.i]!;
  }

  private next(): Token {
    return this.tokens[this.i++]!;
  }

  private isPunct(text: string): boolean {
    const t = this.peek();
    return t.type === 'punct' && t.text === text;
  }

  private isKeyword(word: string): boolean {
    const t = this.peek();
    return t.type === 'name' && t.text.toUpperCase() === word;
  }

  private expect(text: string, what: string): Token {
    const t = this.next();
    if (t.type !== 'punct' || t.text !== text) fail(t.pos, `expected ${what}, found ${describe(t)}`);
    return t;
  }

  private nest<T>(pos: number, f: () => T): T {
    if (++this.depth > MAX_NESTING) fail(pos, `the condition nests deeper than ${MAX_NESTING} levels`);
    try {
      return f();
    } finally {
      this.depth--;
    }
  }

  private or(): Expr {
    return this.nest(this.peek().pos, () => this.logical('or', 'OR', () => this.and()));
  }

  private and(): Expr {
    return this.logical('and', 'AND', () => this.not());
  }

  private logical(kind: 'and' | 'or', word: string, operand: () => Expr): Expr {
    const pos = this.peek().pos;
    const terms = [operand()];
    while (this.isKeyword(word)) {
      this.next();
      terms.push(operand());
    }
    return terms.length === 1 ? terms[0]! : { kind, terms, pos };
  }

  private not(): Expr {
    if (!this.isKeyword('NOT')) return this.compare();
    const pos = this.next().pos;
    return this.nest(pos, () => ({ kind: 'not', expr: this.not(), pos }));
  }

  private compare(): Expr {
    let left = this.concat();
    for (;;) {
      const t = this.peek();
      const op = t.type === 'punct' ? COMPARE.get(t.text) : undefined;
      if (t.type === 'name' && UNSUPPORTED.has(t.text.toUpperCase())) {
        fail(t.pos, `${t.text.toUpperCase()} is not part of Azure's routing query language; combine comparisons with OR instead`);
      }
      if (op === undefined) return left;
      this.next();
      left = { kind: 'compare', op, left, right: this.concat(), pos: t.pos };
    }
  }

  private concat(): Expr {
    let left = this.add();
    while (this.isPunct('||')) {
      const pos = this.next().pos;
      left = { kind: 'concat', left, right: this.add(), pos };
    }
    return left;
  }

  private add(): Expr {
    let left = this.mul();
    while (this.isPunct('+') || this.isPunct('-')) {
      const t = this.next();
      left = { kind: 'arith', op: t.text as ArithmeticOp, left, right: this.mul(), pos: t.pos };
    }
    return left;
  }

  private mul(): Expr {
    let left = this.unary();
    while (this.isPunct('*') || this.isPunct('/') || this.isPunct('%')) {
      const t = this.next();
      left = { kind: 'arith', op: t.text as ArithmeticOp, left, right: this.unary(), pos: t.pos };
    }
    return left;
  }

  private unary(): Expr {
    if (!this.isPunct('-') && !this.isPunct('+')) return this.primary();
    const t = this.next();
    return this.nest(t.pos, () => {
      const expr = this.unary();
      if (t.text === '+') return expr;
      if (expr.kind === 'literal' && typeof expr.value === 'number') return { kind: 'literal', value: -expr.value, pos: t.pos };
      return { kind: 'neg', expr, pos: t.pos };
    });
  }

  private primary(): Expr {
    const t = this.peek();
    if (t.type === 'number' || t.type === 'string') {
      this.next();
      return { kind: 'literal', value: t.value, pos: t.pos };
    }
    if (t.type === 'punct' && t.text === '(') {
      this.next();
      const e = this.or();
      this.expect(')', "')'");
      return e;
    }
    if (t.type === 'punct' && t.text === '[') return this.path({ kind: 'app', name: this.bracket() }, t.pos);
    if (t.type !== 'name') fail(t.pos, `expected a value, a property or a function, found ${describe(t)}`);
    const upper = t.text.toUpperCase();
    this.next();
    if (upper === 'TRUE' || upper === 'FALSE') return { kind: 'literal', value: upper === 'TRUE', pos: t.pos };
    if (upper === 'NULL') return { kind: 'literal', value: null, pos: t.pos };
    if (upper === 'UNDEFINED') return { kind: 'literal', value: undefined, pos: t.pos };
    if (KEYWORDS.has(upper)) fail(t.pos, `unexpected ${describe(t)}`);
    if (this.isPunct('(')) return this.call(upper, t);
    return this.path(this.root(t), t.pos);
  }

  private call(upper: string, t: Token): Expr {
    const def = FUNCTIONS.get(upper);
    if (def === undefined) fail(t.pos, `unknown function '${t.text}'`);
    this.next();
    const args: Expr[] = [];
    if (!this.isPunct(')')) {
      args.push(this.or());
      while (this.isPunct(',')) {
        this.next();
        args.push(this.or());
      }
    }
    this.expect(')', "',' or ')'");
    if (args.length < def.min || args.length > def.max) {
      const n = def.min === def.max ? `${def.min}` : def.max > 8 ? `at least ${def.min}` : `${def.min} to ${def.max}`;
      fail(t.pos, `${upper} takes ${n} argument${def.min === 1 && def.max === 1 ? '' : 's'}, got ${args.length}`);
    }
    return { kind: 'call', fn: upper, args, pos: t.pos };
  }

  private root(t: Token): Root {
    const name = t.text;
    if (!name.startsWith('$')) return { kind: 'app', name };
    const lower = name.toLowerCase();
    if (lower === '$body') return { kind: 'body' };
    if (lower === '$twin') return { kind: 'twin' };
    if (name.length === 1) fail(t.pos, "expected a property name after '$'");
    return { kind: 'sys', wire: systemWireName(name.slice(1)), alias: name };
  }

  /** `[ 'name' ]` or `[ 3 ]`, the bracket already peeked. */
  private bracket(): string {
    this.next();
    const t = this.next();
    if (t.type !== 'string') fail(t.pos, `expected a quoted property name in brackets, found ${describe(t)}`);
    this.expect(']', "']'");
    return t.value as string;
  }

  private path(root: Root, pos: number): Expr {
    const segments: Segment[] = [];
    for (;;) {
      if (this.isPunct('.')) {
        this.next();
        const t = this.next();
        if (t.type !== 'name') fail(t.pos, `expected a property name after '.', found ${describe(t)}`);
        segments.push(t.text);
      } else if (this.isPunct('[')) {
        this.next();
        const t = this.next();
        if (t.type === 'string') segments.push(t.value as string);
        else if (t.type === 'number' && Number.isInteger(t.value) && (t.value as number) >= 0) segments.push(t.value as number);
        else fail(t.pos, `expected an array index or a quoted name in brackets, found ${describe(t)}`);
        this.expect(']', "']'");
      } else {
        break;
      }
    }
    const end = this.tokens[this.i - 1]!;
    return { kind: 'path', root, segments, text: this.text.slice(pos, end.pos + end.text.length), pos };
  }
}

/** Parses a condition; an empty (or blank) one is `true`. Throws RoutingQueryError with the position. */
export function parseCondition(text: string): Expr {
  if (text.length > MAX_CONDITION_LENGTH) {
    throw new RoutingQueryError(`The condition is ${text.length} characters long; at most ${MAX_CONDITION_LENGTH} are allowed`, MAX_CONDITION_LENGTH);
  }
  if (text.trim() === '') return { kind: 'literal', value: true, pos: 0 };
  return new Parser(text, tokenize(text)).parse();
}
