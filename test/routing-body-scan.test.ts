/**
 * Route conditions read `$body` paths from the body's bytes (body-scan.ts) instead of parsing it
 * whole. What a user relies on: a route matches exactly the messages it matched when the body was
 * decoded and parsed, for any body. Each case here compares the scan with TextDecoder + JSON.parse
 * + the conditions' own key lookup, on bodies built to hit the corners (duplicate keys, keys that
 * differ in case, escapes, byte order marks, invalid UTF-8, deep nesting) and on random and
 * randomly damaged JSON.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { JsonValue } from '../src/core/json.js';
import { BodyPaths, scanBody } from '../src/routing/query/body-scan.js';
import { compileCondition, parseBody, type RoutingInput } from '../src/routing/query/index.js';
import { lookup } from '../src/routing/query/input.js';
import type { Segment } from '../src/routing/query/ast.js';

const JSON_UTF8 = { 'content-type': 'application/json', 'content-encoding': 'utf-8' };

function input(body: Buffer | string): RoutingInput {
  return { body: typeof body === 'string' ? Buffer.from(body, 'utf8') : body, properties: {}, systemProperties: JSON_UTF8 };
}

/** Follows the segments as a condition's path does: keys in objects (by lookup), indexes in arrays. */
function walkJson(start: JsonValue | undefined, segments: readonly Segment[]): JsonValue | undefined {
  let cur = start;
  for (const seg of segments) {
    if (typeof seg === 'number') cur = Array.isArray(cur) ? (cur[seg] as JsonValue | undefined) : undefined;
    else cur = typeof cur === 'object' && cur !== null && !Array.isArray(cur) ? (lookup(cur, seg) as JsonValue | undefined) : undefined;
    if (cur === undefined) return undefined;
  }
  return cur;
}

/** What the conditions read before the scan: strict decode, JSON.parse, then lookup along the path. */
function reference(body: Buffer, segments: readonly Segment[]): { valid: boolean; value: JsonValue | undefined } {
  const parsed = parseBody(input(body));
  if (parsed.problem !== undefined) return { valid: false, value: undefined };
  return { valid: true, value: walkJson(parsed.json, segments) };
}

/** Scans `body` for each path alone, and for all at once when one table can hold them, and checks each against the reference. */
function agree(body: Buffer | string, pathList: readonly (readonly Segment[])[]): void {
  const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const together = new BodyPaths();
  for (const p of pathList) together.add(p);
  const tables = pathList.map((p) => [p]);
  if (!together.needsParse) tables.push([...pathList]);
  for (const list of tables) {
    const paths = new BodyPaths();
    const ids = list.map((p) => paths.add(p));
    assert.equal(paths.needsParse, false);
    const scanned = scanBody(buf, paths);
    for (let k = 0; k < list.length; k++) {
      const want = reference(buf, list[k]!);
      const shown = `${JSON.stringify(buf.toString('latin1').slice(0, 200))} at ${JSON.stringify(list[k])}`;
      assert.equal(scanned !== null, want.valid, `valid JSON? ${shown}`);
      if (scanned !== null) assert.deepEqual(scanned.value(ids[k]!), want.value, shown);
    }
  }
}

describe('$body paths read from the bytes', () => {
  it('reads strings, numbers, booleans, null, objects and arrays as JSON.parse gives them', () => {
    const body = JSON.stringify({ s: 'plain', u: 'Grüße ✓ 𝄞', e: 'tab\there "q" \\ \u0001 \ud83d\ude00', n: -12.5e-3, z: -0, big: 1e400, t: true, f: false, nul: null, o: { a: [1, { b: 2 }] }, arr: [0, 'x', [true]] });
    agree('{"a":"x\\/y \\b\\f\\n\\r\\t\\u00e9\\"","\\/":1}', [['a'], ['/']]);
    agree(body, [['s'], ['u'], ['e'], ['n'], ['z'], ['big'], ['t'], ['f'], ['nul'], ['o'], ['o', 'a'], ['o', 'a', 1, 'b'], ['arr', 2, 0], ['arr', 5], ['missing'], ['s', 'x'], ['arr', 'length'], ['o', 0]]);
  });

  it('reads numbers to the same double as JSON.parse, whatever their digits and exponent', () => {
    const digits = (min: number, max: number) => fc.string({ unit: fc.constantFrom(...'0123456789'.split('')), minLength: min, maxLength: max });
    const text = fc
      .tuple(fc.boolean(), digits(1, 20), fc.option(digits(1, 20)), fc.option(fc.tuple(fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), digits(1, 4))))
      .map(([neg, int, frac, exp]) => `${neg ? '-' : ''}${int.replace(/^0+(?=.)/, '')}${frac === null ? '' : `.${frac}`}${exp === null ? '' : exp.join('')}`);
    fc.assert(
      fc.property(fc.oneof(text, fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d))), (t) => {
        agree(`{"n":${t}}`, [['n']]);
      }),
      { numRuns: 3000 },
    );
  });

  it('takes a key given twice at its last value, the whole value replaced', () => {
    agree('{"a":{"b":1,"c":2},"a":{"c":3}}', [['a', 'b'], ['a', 'c'], ['a']]);
    agree('{"a":{"b":1},"a":7}', [['a', 'b'], ['a']]);
    agree('{"a":[1,2,3],"a":[4]}', [['a', 0], ['a', 2]]);
  });

  it('matches keys as lookup does: the exact key wins wherever it is, else the first key of the same lower case', () => {
    agree('{"Battery":{"Level":1},"battery":{"level":2}}', [['battery', 'level'], ['BATTERY', 'LEVEL'], ['Battery', 'level']]);
    agree('{"battery":1,"BATTERY":2,"battery":3}', [['Battery'], ['battery'], ['BATTERY']]);
    agree('{"BATTERY":1,"Battery":2,"BATTERY":3}', [['battery']]);
    agree('{"BATTERY":1,"Battery":2}', [['battery']]);
    agree('{"battery":1,"BATTERY":2}', [['battery'], ['Battery']]);
    agree('{"Battery":{"level":1},"battery":{"level":2},"BATTERY":{"level":3}}', [['battery', 'level'], ['battery']]);
    agree('{"x":{"A":1},"X":{"a":2}}', [['x', 'a'], ['X', 'A']]);
  });

  it('compares escaped and non-ASCII keys by their text', () => {
    agree('{"\\u0062attery":{"level":5}}', [['battery', 'level'], ['BATTERY', 'level']]);
    agree('{"\u212a":1}', [['k'], ['K'], ['\u212a']]); // the Kelvin sign lower-cases to 'k'
    agree('{"k":1}', [['\u212a']]);
    agree('{"Straße":1,"İ":2}', [['straße'], ['STRASSE'], ['i̇'], ['İ']]);
    agree('{"__proto__":{"x":1},"constructor":2}', [['__proto__', 'x'], ['constructor'], ['toString']]);
  });

  it('skips one or two byte order marks, as the decoder and parseBody do, and refuses a third', () => {
    const bom = Buffer.from([0xef, 0xbb, 0xbf]);
    const doc = Buffer.from('{"a":1}');
    agree(Buffer.concat([bom, doc]), [['a']]);
    agree(Buffer.concat([bom, bom, doc]), [['a']]);
    agree(Buffer.concat([bom, bom, bom, doc]), [['a']]);
    agree(Buffer.concat([doc, bom]), [['a']]);
  });

  it('refuses what JSON.parse or the strict UTF-8 decoder refuses', () => {
    const bad = ['', ' ', '{', '}', '{"a":1,}', '[1,]', '{"a" 1}', '{a:1}', "{'a':1}", '01', '1.', '.5', '-', '+1', '1e', '1e+', '"\\x"', '"\\u12G4"', '"a\nb"', 'tru', 'nul', 'falsey', '[1] [2]', '{"a":1}}', '\f{}', '{}\u00a0', 'NaN', 'Infinity', '"\\ud800"x', '[,1]', '{"a":1 "b":2}'];
    for (const b of bad) agree(b, [['a']]);
    agree(Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), [['a']]); // invalid UTF-8 inside a string
    agree(Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]), [['a']]); // an encoded surrogate
    agree('"\\ud800"', [['a']]); // a lone surrogate written as an escape is JSON
    agree(' \t\r\n{ "a" : [ 1 , 2 ] } \n', [['a', 1]]);
    for (const top of ['1', '"s"', 'true', 'null', '[]', '{}', '-0.0e-0']) agree(top, [['a']]);
  });

  it('follows paths through deep nesting without running out of stack', () => {
    const depth = 100_000;
    agree(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`, [new Array<string>(depth).fill('a'), new Array<string>(depth - 1).fill('a').concat('b'), ['b']]);
    agree(`${'['.repeat(depth)}${']'.repeat(depth)}`, [['a']]);
    agree(`${'['.repeat(depth)}${']'.repeat(depth - 1)}`, [['a']]);
  });

  it('leaves sibling keys that differ only in case to a full parse, which answers for both', () => {
    const paths = new BodyPaths();
    paths.add(['status']);
    paths.add(['Status']);
    assert.equal(paths.needsParse, true);
    const a = compileCondition("$body.status = 'x'", paths);
    const b = compileCondition("$body.Status = 'y'", paths);
    const msg = input('{"status":"x","Status":"y"}');
    assert.deepEqual([a.matches(msg), b.matches(msg)], [true, true]);
  });

  it('agrees with JSON.parse on random JSON, at paths that exist, differ in case and do not exist', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), fc.array(fc.array(fc.oneof(fc.constantFrom('a', 'A', 'b', 'x', 'B'), fc.nat(3)), { minLength: 1, maxLength: 4 }), { maxLength: 6 }), (doc, random) => {
        const pathList: Segment[][] = random.filter((p) => typeof p[0] === 'string');
        // Paths that exist in this document, and their upper-case forms.
        const walk = (v: unknown, prefix: Segment[]): void => {
          if (prefix.length >= 3 || typeof v !== 'object' || v === null) return;
          const entries: [Segment, unknown][] = Array.isArray(v) ? v.map((x, k) => [k, x]) : Object.entries(v);
          for (const [k, x] of entries.slice(0, 3)) {
            const p = [...prefix, k];
            if (typeof p[0] === 'string') pathList.push(p, p.map((s) => (typeof s === 'string' ? s.toUpperCase() : s)));
            walk(x, p);
          }
        };
        walk(doc, []);
        agree(JSON.stringify(doc, null, Math.random() < 0.5 ? 1 : undefined), pathList);
      }),
      { numRuns: 500 },
    );
  });

  it('agrees with JSON.parse on damaged JSON: every byte inserted, removed or replaced', () => {
    const alphabet = fc.constantFrom(...'{}[]":,.-+eE0123456789 \\/untrfalsx\t\n\u00e9'.split(''), '\\u0041', '"a":', 'true', 'null');
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 3 }), fc.array(fc.tuple(fc.nat(), fc.nat(2), alphabet), { minLength: 1, maxLength: 3 }), (doc, edits) => {
        let text = JSON.stringify({ a: doc, b: [doc] });
        for (const [at, kind, s] of edits) {
          const k = at % (text.length + 1);
          text = kind === 0 ? text.slice(0, k) + s + text.slice(k) : kind === 1 ? text.slice(0, k) + text.slice(k + 1) : text.slice(0, k) + s + text.slice(k + 1);
        }
        agree(text, [['a'], ['a', 'a'], ['b', 0], ['A'], ['a', 0, 'b']]);
      }),
      { numRuns: 2000 },
    );
  });

  it('gives a condition the same answer as explaining it (which parses the body) does', () => {
    const conditions = [
      "$body.status = 'alarm'",
      '$body.temperature > 38',
      '$body.battery.level < 10',
      "$body.firmware <> '2.4.1'",
      "$body.location.site = 'plant-7' AND $body.location.line = 3",
      'IS_OBJECT($body.location) OR IS_ARRAY($body.readings)',
      "$body.readings[1] = 2 OR $body.Readings[0] = 'x'",
    ];
    const paths = new BodyPaths();
    const compiled = conditions.map((c) => compileCondition(c, paths));
    const value = fc.oneof(fc.constantFrom('alarm', 'plant-7', '2.4.1', 3, 5, 40, 'x', 2), fc.jsonValue({ maxDepth: 2 }));
    const doc = fc.dictionary(fc.constantFrom('status', 'STATUS', 'temperature', 'battery', 'firmware', 'location', 'readings', 'Readings', 'level', 'site', 'line'), fc.oneof(value, fc.dictionary(fc.constantFrom('level', 'Level', 'site', 'line', 'LINE'), value), fc.array(value, { maxLength: 3 })));
    fc.assert(
      fc.property(doc, fc.option(doc), (d, more) => {
        let text = JSON.stringify(d);
        // Two objects' members in one: keys both name appear twice, with different values.
        const second = more === null ? '{}' : JSON.stringify(more);
        if (text.length > 2 && second.length > 2) text = `${text.slice(0, -1)},${second.slice(1)}`;
        for (const c of compiled) {
          const fresh = input(text);
          assert.equal(c.matches(fresh), c.explain(input(text)).matched, `${c.text} on ${text}`);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
