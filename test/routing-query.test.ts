/**
 * Azure IoT Hub's route conditions (src/routing/query): the examples Microsoft's "IoT Hub message
 * routing query syntax" gives, each kind of field, every operator and function, three-valued logic,
 * bodies that are not JSON, and conditions the compiler must refuse with a position. Enrichment
 * values: routing-enrichment.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { JsonObject } from '../src/core/json.js';
import {
  BodyPaths,
  MAX_CONDITION_LENGTH,
  RoutingQueryError,
  compileCondition,
  prepareInput,
  type RoutingInput,
} from '../src/routing/query/index.js';

/** The body of Microsoft's "Query based on message body" example. */
const WEATHER = {
  Weather: {
    Temperature: 50,
    Time: '2017-03-09T00:00:00.000Z',
    PrevTemperatures: [20, 30, 40],
    IsEnabled: true,
    Location: { Street: 'One Microsoft Way', City: 'Redmond', State: 'WA' },
    HistoricalData: [
      { Month: 'Feb', Temperature: 40 },
      { Month: 'Jan', Temperature: 30 },
    ],
  },
};

/** The twin of Microsoft's "Query based on device twin" example. */
const TWIN: JsonObject = {
  tags: { deploymentLocation: { building: '43', floor: '1' } },
  properties: {
    desired: { telemetryConfig: { sendFrequency: '5m' }, $metadata: {}, $version: 1 },
    reported: { telemetryConfig: { sendFrequency: '5m', status: 'success' }, batteryLevel: 55, $metadata: {}, $version: 4 },
  },
};

function message(over: Partial<RoutingInput> = {}): RoutingInput {
  return {
    body: Buffer.from(JSON.stringify(WEATHER), 'utf8'),
    properties: { processingPath: 'hot', verbose: 'true', severity: '3', testDevice: 'false', Status: 'Active' },
    systemProperties: {
      'content-type': 'application/json',
      'content-encoding': 'utf-8',
      'iothub-connection-device-id': 'thermo-1',
      'iothub-connection-module-id': 'sensor',
      'iothub-connection-auth-method': '{"scope":"device","type":"sas","issuer":"iothub"}',
      'iothub-enqueuedtime': '2017-05-08T18:55:31.8514657Z',
      'iothub-message-source': 'Telemetry',
      'message-id': 'm-1',
      'correlation-id': 'c-1',
      'user-id': 'u-1',
      to: '/devices/thermo-1/messages/events',
      'absolute-expiry-time': '2030-01-01T00:00:00.000Z',
      'dt-dataschema': 'dtmi:com:example:Thermostat;1',
      'dt-subject': 'thermostat1',
    },
    twin: TWIN,
    ...over,
  };
}

const INPUT = message();

function holds(condition: string, input: RoutingInput = INPUT): boolean {
  return compileCondition(condition).matches(input);
}

function refusal(condition: string): RoutingQueryError {
  try {
    compileCondition(condition);
  } catch (err) {
    assert.ok(err instanceof RoutingQueryError, `expected a RoutingQueryError, got ${String(err)}`);
    return err;
  }
  assert.fail(`${condition} compiled`);
}

describe("Microsoft's examples (IoT Hub message routing query syntax)", () => {
  it('queries system properties with $ and application properties by name, combined with AND', () => {
    const utf8Upper = message({ systemProperties: { ...INPUT.systemProperties, 'content-encoding': 'UTF-8' } });
    assert.equal(holds("$contentEncoding = 'UTF-8'", utf8Upper), true);
    assert.equal(holds("processingPath = 'hot'"), true);
    assert.equal(holds("$contentEncoding = 'UTF-8' AND processingPath = 'hot'", utf8Upper), true);
    assert.equal(holds("$contentEncoding = 'UTF-8' AND processingPath = 'cold'", utf8Upper), false);
  });

  it('queries the JSON body', () => {
    assert.equal(holds("$body.Weather.HistoricalData[0].Month = 'Feb'"), true);
    assert.equal(holds('$body.Weather.Temperature = 50 AND $body.Weather.IsEnabled'), true);
    assert.equal(holds('length($body.Weather.Location.State) = 2'), true);
    assert.equal(holds("$body.Weather.Temperature = 50 AND processingPath = 'hot'"), true);
    assert.equal(holds("$body.Weather.HistoricalData[1].Month = 'Feb'"), false);
  });

  it('filters twin change notifications on the body', () => {
    const change = message({ body: Buffer.from(JSON.stringify({ version: 3, properties: { desired: { telemetryConfig: { sendFrequency: 15 } } } })) });
    assert.equal(holds('$body.properties.desired.telemetryConfig.sendFrequency > 10', change), true);
    assert.equal(holds('is_defined($body.properties.desired.telemetryConfig.sendFrequency)', change), true);
    assert.equal(holds('is_defined($body.properties.reported.telemetryConfig.sendFrequency)', change), false);
  });

  it("never reads the whole body: $body[0] = 'Feb' is undefined", () => {
    const list = message({ body: Buffer.from('["Feb"]') });
    assert.equal(holds("$body[0] = 'Feb'", list), false);
    assert.equal(holds('IS_DEFINED($body)', list), false);
    assert.match(compileCondition("$body[0] = 'Feb'").explain(list).reason ?? '', /\$body\[0\] is undefined: routing reads fields of the body/);
  });

  it('queries the device twin', () => {
    assert.equal(holds("$twin.properties.desired.telemetryConfig.sendFrequency = '5m'"), true);
    assert.equal(holds("$body.Weather.Temperature = 50 AND $twin.properties.desired.telemetryConfig.sendFrequency = '5m'"), true);
    // The twin's floor is the string '1': a number does not equal it, the string does.
    assert.equal(holds('$twin.tags.deploymentLocation.floor = 1'), false);
    assert.equal(holds("$twin.tags.deploymentLocation.floor = '1'"), true);
    assert.equal(holds('$twin.properties.reported.batteryLevel >= 50'), true);
  });
});

describe('fields', () => {
  it('maps every system property alias to its wire name, case-insensitively', () => {
    const cases: Array<[string, string]> = [
      ['$contentType', 'application/json'],
      ['$contentEncoding', 'utf-8'],
      ['$connectionDeviceId', 'thermo-1'],
      ['$connectionModuleId', 'sensor'],
      ['$iothub-enqueuedtime', '2017-05-08T18:55:31.8514657Z'],
      ['$enqueuedTime', '2017-05-08T18:55:31.8514657Z'],
      ['$messageId', 'm-1'],
      ['$correlationId', 'c-1'],
      ['$userId', 'u-1'],
      ['$to', '/devices/thermo-1/messages/events'],
      ['$expiryTimeUtc', '2030-01-01T00:00:00.000Z'],
      ['$iothub-connection-auth-method', '{"scope":"device","type":"sas","issuer":"iothub"}'],
      ['$connectionAuthMethod', '{"scope":"device","type":"sas","issuer":"iothub"}'],
      ['$iothub-message-source', 'Telemetry'],
      ['$dt-dataschema', 'dtmi:com:example:Thermostat;1'],
      ['$dt-subject', 'thermostat1'],
      ['$CONTENTTYPE', 'application/json'],
      ['$content-type', 'application/json'],
    ];
    for (const [name, value] of cases) assert.equal(holds(`${name} = '${value}'`), true, name);
    assert.equal(holds('IS_DEFINED($creationTimeUtc)'), false);
  });

  it("reads a $name the message lacks as a system property from the application properties (Azure's fallback)", () => {
    const m = message({ properties: { $custom: 'x' } });
    assert.equal(holds("$custom = 'x'", m), true);
  });

  it('reads application properties by name, in brackets or quotes when the name needs it, case-insensitively', () => {
    const m = message({ properties: { 'temp.c': '21', 'odd name': 'yes', 'x-level': 'high', AND: 'kw', Température: 'chaud', 温度: '高' } });
    assert.equal(holds("['temp.c'] = '21'", m), true);
    assert.equal(holds('["odd name"] = \'yes\'', m), true);
    assert.equal(holds("x-level = 'high'", m), true);
    assert.equal(holds("X-LEVEL = 'high'", m), true);
    assert.equal(holds("['AND'] = 'kw'", m), true);
    assert.equal(holds("Température = 'chaud'", m), true);
    assert.equal(holds("温度 = '高'", m), true);
    assert.equal(holds("missing = 'x'", m), false);
  });

  it('reads body paths with brackets, indexes, $ names and unicode names', () => {
    const m = message({ body: Buffer.from(JSON.stringify({ 'device.name': 'a', list: [{ v: [1, 2] }], $meta: { n: 1 }, größe: 3 })) });
    assert.equal(holds("$body['device.name'] = 'a'", m), true);
    assert.equal(holds('$body.list[0].v[1] = 2', m), true);
    assert.equal(holds('$body.list[0]["v"][0] = 1', m), true);
    assert.equal(holds('$body.$meta.n = 1', m), true);
    assert.equal(holds('$body.größe = 3', m), true);
    assert.equal(holds('IS_DEFINED($body.list[5])', m), false);
    assert.equal(holds('IS_DEFINED($body.list.v)', m), false);
  });

  it('reads $body only for application/json in UTF-8, UTF-16 or UTF-32', () => {
    const json = JSON.stringify({ temp: 30, city: 'Zürich' });
    const utf16 = message({ body: Buffer.from(json, 'utf16le'), systemProperties: { 'content-type': 'application/json', 'content-encoding': 'utf-16' } });
    assert.equal(holds("$body.temp = 30 AND $body.city = 'Zürich'", utf16), true);
    const be = Buffer.from(json, 'utf16le').swap16();
    const utf16be = message({ body: Buffer.concat([Buffer.from([0xfe, 0xff]), be]), systemProperties: { 'content-type': 'application/json', 'content-encoding': 'UTF-16' } });
    assert.equal(holds("$body.city = 'Zürich'", utf16be), true);
    const u32 = Buffer.alloc(json.length * 4);
    [...json].forEach((ch, i) => u32.writeUInt32LE(ch.codePointAt(0)!, i * 4));
    const utf32 = message({ body: u32, systemProperties: { 'content-type': 'application/json', 'content-encoding': 'utf-32' } });
    assert.equal(holds("$body.city = 'Zürich'", utf32), true);
    const bom = message({ body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(json)]) });
    assert.equal(holds('$body.temp = 30', bom), true);

    const plain = message({ systemProperties: { 'content-type': 'text/plain', 'content-encoding': 'utf-8' } });
    assert.equal(holds('$body.Weather.Temperature = 50', plain), false);
    assert.deepEqual(compileCondition('$body.Weather.Temperature = 50').explain(plain), {
      matched: false,
      reason:
        'the condition is undefined (a route treats it as false): $body.Weather.Temperature is undefined: the body is not JSON (content type text/plain; routing reads $body only with application/json)',
    });
    const noEncoding = message({ systemProperties: { 'content-type': 'application/json' } });
    assert.equal(holds('$body.Weather.Temperature = 50', noEncoding), false);
    assert.match(compileCondition('$body.Weather.Temperature = 50').explain(noEncoding).reason ?? '', /content encoding not set/);
    const latin1 = message({ systemProperties: { 'content-type': 'application/json', 'content-encoding': 'iso-8859-1' } });
    assert.equal(holds('$body.Weather.Temperature = 50', latin1), false);
    const broken = message({ body: Buffer.from('{"Weather": ') });
    assert.equal(holds('$body.Weather.Temperature = 50', broken), false);
    assert.match(compileCondition('$body.Weather.Temperature = 50').explain(broken).reason ?? '', /the body is not valid JSON/);
    const badUtf8 = message({ body: Buffer.from([0x7b, 0xff, 0x7d]) });
    assert.match(compileCondition('$body.a = 1').explain(badUtf8).reason ?? '', /not valid UTF-8/);
  });

  it('routes a message whose body is not JSON on its other fields', () => {
    const plain = message({ body: Buffer.from('hello'), systemProperties: { 'content-type': 'text/plain' } });
    assert.equal(holds("processingPath = 'hot'", plain), true);
    assert.equal(holds("processingPath = 'hot' OR $body.x = 1", plain), true);
    assert.equal(holds("processingPath = 'hot' AND $body.x = 1", plain), false);
  });

  it('reads $twin only when a twin is given, and module twins the same way', () => {
    const noTwin = message({ twin: undefined });
    assert.equal(holds("$twin.tags.deploymentLocation.building = '43'", noTwin), false);
    assert.match(compileCondition('$twin.tags.x = 1').explain(noTwin).reason ?? '', /no twin was given/);
    assert.equal(holds("$Twin.Tags.DeploymentLocation.Building = '43'"), true, 'twin paths are not case-sensitive');
  });

  it('says which parts of a condition it uses', () => {
    assert.deepEqual(pick(compileCondition("a = '1'")), { usesBody: false, usesTwin: false });
    assert.deepEqual(pick(compileCondition("NOT (a = '1' OR LENGTH($body.x) > 2)")), { usesBody: true, usesTwin: false });
    assert.deepEqual(pick(compileCondition("UPPER($twin.tags.x) = 'A' AND $body.y")), { usesBody: true, usesTwin: true });
  });
});

function pick(c: { usesBody: boolean; usesTwin: boolean }): { usesBody: boolean; usesTwin: boolean } {
  return { usesBody: c.usesBody, usesTwin: c.usesTwin };
}

describe('literals and operators', () => {
  it('reads strings in single or double quotes with escapes, numbers, true, false, null', () => {
    const m = message({ properties: { q: "it's \"x\"\\", u: 'é' } });
    assert.equal(holds("q = 'it\\'s \\\"x\\\"\\\\'", m), true);
    assert.equal(holds('q = "it\'s \\"x\\"\\\\"', m), true);
    assert.equal(holds("u = '\\u00e9'", m), true);
    assert.equal(holds("'a\\tb' = 'a\tb'"), true);
    assert.equal(holds('$body.Weather.Temperature = 5e1 AND $body.Weather.Temperature = 50.0 AND 0x32 = 50 AND .5 = 0.5'), true);
    assert.equal(holds('true AND NOT false'), true);
    assert.equal(holds('TRUE and not FALSE'), true, 'keywords are case-insensitive');
    assert.equal(holds('null = null AND IS_NULL(null)'), true);
    assert.equal(holds('IS_DEFINED(undefined)'), false);
    assert.equal(holds('true'), true);
    assert.equal(holds(''), true);
    assert.equal(holds('   '), true);
    assert.equal(holds('false'), false);
  });

  it('compares numbers, strings (ordinally), booleans and null', () => {
    const t = (c: string) => assert.equal(holds(c), true, c);
    const f = (c: string) => assert.equal(holds(c), false, c);
    for (const c of ['1 = 1', '1 != 2', '1 <> 2', '1 < 2', '2 <= 2', '3 > 2', '3 >= 3', "'a' < 'b'", "'B' < 'a'", "'abc' >= 'abc'", 'true = true', 'true != false', 'null = null']) t(c);
    for (const c of ['1 = 2', '1 != 1', '2 < 1', "'b' < 'a'", 'true = false', 'true < false', "'1' = 1", '1 = true', 'null = 0', 'null != 0']) f(c);
    t('$body.Weather.PrevTemperatures[2] > $body.Weather.HistoricalData[0].Temperature - 1');
  });

  it("compares application properties as the strings they are: temperature > 50 is undefined for '55', AS_NUMBER converts", () => {
    const m = message({ properties: { temperature: '55' } });
    assert.equal(holds('temperature > 50', m), false);
    assert.equal(holds('NOT (temperature > 50)', m), false, 'undefined, not false: NOT keeps it undefined');
    assert.equal(holds("temperature > '50'", m), true, 'string to string');
    assert.equal(holds("temperature = '55'", m), true);
    assert.equal(holds('AS_NUMBER(temperature) > 50', m), true);
    assert.deepEqual(compileCondition('temperature > 50').explain(m), {
      matched: false,
      reason:
        "the condition is undefined (a route treats it as false): '55' > 50 is undefined: a string and a number do not compare (message properties are strings: AS_NUMBER(x) converts one to a number)",
    });
  });

  it('does arithmetic on numbers only, with precedence and parentheses', () => {
    const t = (c: string) => assert.equal(holds(c), true, c);
    for (const c of ['1 + 2 * 3 = 7', '(1 + 2) * 3 = 9', '7 / 2 = 3.5', '7 % 3 = 1', '10 - 2 - 3 = 5', '-3 + 5 = 2', '-(2 + 3) = -5', '+4 = 4', '$body.Weather.Temperature * 2 + 1 = 101']) t(c);
    assert.equal(holds('IS_DEFINED(1 / 0)'), false, 'no infinities');
    assert.equal(holds("IS_DEFINED('a' + 1)"), false);
    assert.equal(holds("IS_DEFINED(-'a')"), false);
  });

  it('concatenates strings with ||', () => {
    assert.equal(holds("processingPath || '-' || Status = 'hot-Active'"), true);
    assert.equal(holds("IS_DEFINED('a' || 1)"), false);
  });

  it('evaluates AND, OR and NOT in three values; a condition holds only when true', () => {
    const U = 'missing = 1'; // undefined
    const table: Array<[string, boolean | undefined]> = [
      [`true AND ${U}`, undefined],
      [`false AND ${U}`, false],
      [`${U} AND false`, false],
      [`true OR ${U}`, true],
      [`${U} OR true`, true],
      [`false OR ${U}`, undefined],
      [`NOT (${U})`, undefined],
      [`NOT (NOT (${U}))`, undefined],
      ['NOT 1 = 2', true],
      ["'text' AND true", undefined],
      ['1 OR false', undefined],
    ];
    for (const [c, expected] of table) {
      assert.equal(holds(c), expected === true, c);
      // The negation tells undefined from false.
      assert.equal(holds(`NOT (${c})`), expected === false, `NOT (${c})`);
    }
    assert.equal(holds("processingPath = 'hot' AND (missing = 1 OR $body.Weather.IsEnabled)"), true);
  });

  it('says why a condition is not met', () => {
    assert.deepEqual(compileCondition('$body.Weather.Humidity > 10').explain(INPUT), {
      matched: false,
      reason: "the condition is undefined (a route treats it as false): $body.Weather.Humidity is undefined: there is no field 'Humidity'",
    });
    assert.deepEqual(compileCondition('$body.Weather.Temperature > 60').explain(INPUT), { matched: false, reason: 'the condition is false' });
    assert.deepEqual(compileCondition("'x'").explain(INPUT), { matched: false, reason: "the condition evaluates to string 'x', not true" });
    assert.deepEqual(compileCondition("$connectionDeviceId = 'thermo-1'").explain(INPUT), { matched: true });
    assert.match(compileCondition('$messageid = 1 AND IS_DEFINED($creationTimeUtc) = false AND $foo = 1').explain(message()).reason ?? '', /no system property foo/);
  });
});

describe('functions', () => {
  const cases: Array<[string, boolean]> = [
    ['ABS(-5) = 5', true],
    ['EXP(0) = 1', true],
    ['POWER(2, 10) = 1024', true],
    ['SQUARE(-3) = 9', true],
    ['CEILING(1.2) = 2 AND CEILING(-1.2) = -1', true],
    ['FLOOR(1.8) = 1 AND FLOOR(-1.2) = -2', true],
    ['SIGN(-4) = -1 AND SIGN(0) = 0 AND SIGN(7) = 1', true],
    ['SQRT(16) = 4', true],
    ['IS_DEFINED(SQRT(-1))', false],
    ['IS_DEFINED(ABS(\'5\'))', false],
    ["AS_NUMBER('12.5') = 12.5 AND AS_NUMBER(3) = 3 AND AS_NUMBER(' -1e2 ') = -100", true],
    ["IS_DEFINED(AS_NUMBER('12a')) OR IS_DEFINED(AS_NUMBER('')) OR IS_DEFINED(AS_NUMBER(true))", false],
    ['IS_ARRAY($body.Weather.PrevTemperatures) AND NOT IS_ARRAY($body.Weather)', true],
    ['IS_BOOL($body.Weather.IsEnabled) AND NOT IS_BOOL(verbose)', true],
    ['IS_DEFINED($body.Weather.Time) AND NOT IS_DEFINED($body.Weather.Nope)', true],
    ['IS_NULL(null) AND NOT IS_NULL($body.Weather.Nope)', true],
    ['IS_NUMBER($body.Weather.Temperature) AND NOT IS_NUMBER(severity)', true],
    ['IS_OBJECT($body.Weather.Location) AND NOT IS_OBJECT($body.Weather.PrevTemperatures)', true],
    ['IS_PRIMITIVE($body.Weather.Temperature) AND IS_PRIMITIVE(null) AND NOT IS_PRIMITIVE($body.Weather.Location) AND NOT IS_PRIMITIVE($body.x)', true],
    ['IS_STRING(processingPath) AND NOT IS_STRING($body.Weather.Temperature)', true],
    ["CONCAT('a', processingPath, $body.Weather.Location.State) = 'ahotWA'", true],
    ["IS_DEFINED(CONCAT('a', 1))", false],
    ['LENGTH($body.Weather.Location.City) = 7 AND LENGTH(\'\') = 0', true],
    ['IS_DEFINED(LENGTH($body.Weather.Temperature))', false],
    ["LOWER($body.Weather.Location.State) = 'wa' AND UPPER(processingPath) = 'HOT'", true],
    ["SUBSTRING('Redmond', 0, 3) = 'Red' AND SUBSTRING('Redmond', 3) = 'mond' AND SUBSTRING('Redmond', 5, 99) = 'nd'", true],
    ["INDEX_OF('Redmond', 'mon') = 3 AND INDEX_OF('Redmond', 'x') = -1", true],
    ["STARTS_WITH($body.Weather.Location.Street, 'One') AND NOT STARTS_WITH('abc', 'b')", true],
    ["ENDS_WITH($connectionDeviceId, '-1') AND NOT ENDS_WITH('abc', 'b')", true],
    ["CONTAINS($body.Weather.Location.Street, 'Microsoft') AND NOT CONTAINS('abc', 'x')", true],
    ["IS_DEFINED(CONTAINS(1, 'x'))", false],
    ["starts_with(processingPath, 'h') AND Contains(processingPath, 'o')", true],
  ];
  for (const [c, expected] of cases) {
    it(c, () => assert.equal(holds(c), expected));
  }
});

describe('refusals', () => {
  it('refuses bad syntax and says where', () => {
    const cases: Array<[string, number, RegExp]> = [
      ["processingPath = 'hot", 17, /unterminated string/],
      ['a = ', 4, /expected a value, a property or a function, found the end of the condition/],
      ['a = 1 b', 6, /unexpected 'b'/],
      ['(a = 1', 6, /expected '\)'/],
      ['a = 1)', 5, /unexpected '\)'/],
      ['a # 1', 2, /unexpected character '#'/],
      ["FOO('x')", 0, /unknown function 'FOO'/],
      ['LENGTH()', 0, /LENGTH takes 1 argument, got 0/],
      ["STARTS_WITH('a')", 0, /STARTS_WITH takes 2 arguments, got 1/],
      ["SUBSTRING('a', 1, 2, 3)", 0, /SUBSTRING takes 2 to 3 arguments, got 4/],
      ['a = 12abc', 4, /invalid number/],
      ["a = 'x\\q'", 6, /invalid escape sequence '\\q'/],
      ['$body. = 1', 7, /expected a property name after '\.'/],
      ['$body[-1] = 1', 6, /expected an array index or a quoted name/],
      ['a AND', 5, /found the end of the condition/],
      ['AND = 1', 0, /unexpected 'AND'/],
      ['$ = 1', 0, /expected a property name after '\$'/],
      ["a IN ('x', 'y')", 2, /IN is not part of Azure's routing query language; combine comparisons with OR instead/],
      ["(a LIKE 'x%')", 3, /LIKE is not part/],
    ];
    for (const [text, position, message] of cases) {
      const err = refusal(text);
      assert.equal(err.position, position, `${text}: ${err.message}`);
      assert.match(err.message, message, text);
      assert.match(err.message, new RegExp(`^Syntax error at position ${position}: `));
    }
  });

  it('refuses conditions longer than 1024 characters', () => {
    const ok = `a = '${'x'.repeat(MAX_CONDITION_LENGTH - 6)}'`;
    assert.equal(ok.length, MAX_CONDITION_LENGTH);
    compileCondition(ok);
    const err = refusal(`${ok} `);
    assert.match(err.message, /1025 characters long; at most 1024/);
  });

  it('refuses deep nesting instead of exhausting the stack', () => {
    for (const deep of ['('.repeat(40) + '1' + ')'.repeat(40), 'NOT '.repeat(40) + 'true', '-'.repeat(40) + '1', 'ABS('.repeat(40) + '1' + ')'.repeat(40)]) {
      assert.match(refusal(deep).message, /nests deeper than 32 levels/);
    }
    assert.equal(holds('('.repeat(30) + '1 = 1' + ')'.repeat(30)), true, 'nesting within the limit is fine');
    // Long flat chains are fine.
    assert.equal(holds(Array.from({ length: 80 }, () => "a = 'x'").join(' OR ') + ' OR true'), true);
    assert.equal(holds('1' + ' + 1'.repeat(250) + ' = 251'), true);
  });
});

describe('evaluation', () => {
  it('reads a JSON body once per message for all the conditions compiled into one table (a routing document)', () => {
    let reads = 0;
    const systemProperties = new Proxy(INPUT.systemProperties, {
      get(target, key) {
        if (key === 'content-type') reads++;
        return Reflect.get(target, key) as unknown;
      },
    });
    const input: RoutingInput = { ...INPUT, systemProperties };
    const paths = new BodyPaths();
    const conditions = ['$body.Weather.Temperature = 50', "$body.Weather.Location.City = 'Redmond'", 'IS_ARRAY($body.Weather.PrevTemperatures)'].map((c) => compileCondition(c, paths));
    assert.deepEqual(conditions.map((c) => c.matches(input)), [true, true, true]);
    assert.deepEqual(conditions.map((c) => c.matches(prepareInput(input))), [true, true, true]);
    assert.equal(reads, 1);
    assert.equal(prepareInput(input), prepareInput(prepareInput(input)));
  });

  it('reads the twin the input carries at evaluation time', () => {
    const input = message({ twin: undefined });
    const c = compileCondition('$twin.properties.reported.batteryLevel > 50');
    assert.equal(c.matches(input), false);
    input.twin = TWIN;
    assert.equal(c.matches(input), true);
    const copy = { ...message({ twin: undefined }) };
    assert.equal(c.matches(copy), false);
    assert.equal(c.matches({ ...copy, twin: TWIN }), true, 'a copy of an evaluated input is evaluated afresh');
    assert.equal(c.matches(Object.freeze(message())), true, 'a frozen input is evaluated too');
  });

  it('keeps the condition text', () => {
    assert.equal(compileCondition("a = 'b'").text, "a = 'b'");
  });
});

describe('hostile input (fast-check)', () => {
  const names = fc.constantFrom('a', 'processingPath', '$body.Weather.Temperature', '$body.x[0]', '$twin.tags.t', '$contentType', "['odd name']", '$body');
  const literals = fc.oneof(fc.integer({ min: -5, max: 60 }).map(String), fc.constantFrom("'hot'", '"x"', 'true', 'false', 'null', 'undefined', "'\\u00e9'"));
  const fns = fc.constantFrom('ABS', 'LENGTH', 'UPPER', 'AS_NUMBER', 'IS_DEFINED', 'CONCAT', 'SUBSTRING', 'STARTS_WITH', 'POWER', 'nope');
  const ops = fc.constantFrom('=', '!=', '<>', '<', '<=', '>', '>=', '+', '-', '*', '/', '%', '||', 'AND', 'OR', ',');
  const { expr } = fc.letrec<{ expr: string }>((tie) => ({
    expr: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      names,
      literals,
      fc.tuple(tie('expr'), ops, tie('expr')).map(([a, op, b]) => `${a} ${op} ${b}`),
      tie('expr').map((e) => `NOT ${e}`),
      tie('expr').map((e) => `(${e})`),
      fc.tuple(fns, fc.array(tie('expr'), { maxLength: 3 })).map(([f, args]) => `${f}(${args.join(', ')})`),
    ),
  }));
  const inputs = fc.record({
    body: fc.oneof(fc.json().map((j) => Buffer.from(j)), fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b))),
    properties: fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 4 }),
    systemProperties: fc.constantFrom<Record<string, string>>(
      { 'content-type': 'application/json', 'content-encoding': 'utf-8' },
      { 'content-type': 'application/json', 'content-encoding': 'utf-16' },
      { 'content-type': 'application/json', 'content-encoding': 'utf-32' },
      {},
    ),
  });

  function compiles(text: string): ReturnType<typeof compileCondition> | undefined {
    try {
      return compileCondition(text);
    } catch (err) {
      assert.ok(err instanceof RoutingQueryError, `${JSON.stringify(text)} threw ${String(err)}`);
      assert.ok(err.position >= 0 && err.position <= Math.max(text.length, MAX_CONDITION_LENGTH), `position ${err.position}`);
      return undefined;
    }
  }

  it('compiles or refuses with a RoutingQueryError, and evaluation never throws', () => {
    fc.assert(
      fc.property(fc.oneof(expr, fc.string({ maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 40 })), inputs, (text, input) => {
        const c = compiles(text);
        if (c === undefined) return;
        const matched = c.matches(input);
        assert.equal(c.explain(input).matched, matched);
      }),
      { numRuns: 3000 },
    );
  });
});
