import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HubError } from '../src/core/errors.js';
import type { JsonObject } from '../src/core/json.js';
import { Aggregator, isAggregate, matches, parseQuery, project } from '../src/hub/query/index.js';

function twin(id: string, extra: JsonObject = {}): JsonObject {
  return {
    deviceId: id,
    etag: 'AAAAAAAAAAE=',
    status: 'enabled',
    connectionState: 'Disconnected',
    tags: { location: { region: 'US', plant: 'Redmond43' }, floors: [1, 2], owner: null },
    properties: {
      desired: { a: 1, $metadata: {}, $version: 2 },
      reported: { temp: 21.5, online: true, fw: '1.2.3', $version: 1 },
    },
    ...extra,
  };
}

const D1 = twin('d1');
const D2: JsonObject = { deviceId: 'd2', status: 'disabled', tags: { location: { region: 'EU' } }, properties: { desired: {}, reported: { temp: 30 } } };
const D3: JsonObject = { deviceId: 'd3', status: 'enabled', properties: { desired: {}, reported: {} } };

/** Whether `where` (the text after WHERE) matches the document. */
function where(cond: string, doc: JsonObject = D1): boolean {
  return matches(parseQuery(`SELECT * FROM devices WHERE ${cond}`).where, doc);
}

function rejects(text: string, pattern: RegExp): void {
  assert.throws(
    () => parseQuery(text),
    (e: unknown) => {
      assert.ok(e instanceof HubError, `expected a HubError for ${text}`);
      assert.equal(e.code, 'ArgumentInvalid');
      assert.match(e.message, pattern);
      return true;
    },
  );
}

test('parses SELECT * over devices and devices.modules, keywords in any case', () => {
  assert.deepEqual(parseQuery('SELECT * FROM devices'), { source: 'devices', select: { kind: 'star' } });
  assert.deepEqual(parseQuery('  select   *\n from DEVICES.Modules  '), { source: 'devices.modules', select: { kind: 'star' } });
  const q = parseQuery("sElEcT * FrOm devices wHeRe deviceId = 'd1' aNd NoT status iN ('x')");
  assert.equal(q.source, 'devices');
  assert.ok(matches(q.where, D1));
  assert.ok(!isAggregate(q));
  assert.equal(matches(undefined, D1), true, 'no WHERE matches every document');
  assert.equal(project({ kind: 'star' }, D1), D1, 'SELECT * returns the document itself');
});

test('strips the devices. and devices.modules. prefixes; path names stay case-sensitive', () => {
  assert.ok(where("devices.tags.location.region = 'US'"));
  assert.ok(where("devices.modules.deviceId = 'd1'"));
  const m = parseQuery("SELECT * FROM devices.modules WHERE devices.modules.moduleId = 'm1'");
  assert.ok(matches(m.where, { ...D1, moduleId: 'm1' }));
  assert.ok(!where("DeviceId = 'd1'"), 'DeviceId is not deviceId');
  assert.ok(!where("tags.Location.region = 'US'"));
});

test('comparison operators on numbers, strings and booleans', () => {
  assert.ok(where('properties.reported.temp = 21.5'));
  assert.ok(where('properties.reported.temp != 21'));
  assert.ok(where('properties.reported.temp <> 21'));
  assert.ok(where('properties.reported.temp > 21'));
  assert.ok(where('properties.reported.temp >= 21.5'));
  assert.ok(where('properties.reported.temp < 22'));
  assert.ok(where('properties.reported.temp <= 21.5'));
  assert.ok(!where('properties.reported.temp < 21.5'));
  assert.ok(!where('properties.reported.temp > 21.5'));
  assert.ok(where('properties.desired.a > -1'));
  assert.ok(where('properties.desired.a = 1.0'));
  assert.ok(where('properties.desired.a < 1e3'));
  assert.ok(where("'d1' = deviceId"), 'a literal may come first');
  assert.ok(where("status >= 'enabled' AND status < 'enabledx'"));
  assert.ok(where("'B' < 'a'"), 'ordinal string order: uppercase before lowercase');
  assert.ok(!where("'a' < 'B'"));
  assert.ok(where('properties.reported.online = true'));
  assert.ok(where('properties.reported.online > false'));
  assert.ok(where('properties.reported.online != FALSE'));
  assert.ok(where('tags.owner = null'), 'null = null is true');
  assert.ok(where('tags.owner >= NULL') && !where('tags.owner < null'));
});

test('= on objects and arrays is deep equality; ordering them is undefined', () => {
  assert.ok(where('tags.location = tags.location'));
  assert.ok(!where('tags.location != tags.location'));
  assert.ok(where('properties.reported != properties.desired'));
  const a = { deviceId: 'x', tags: { p: { k: 1, j: [1, { z: 2 }] }, q: { j: [1, { z: 2 }], k: 1 }, r: { k: 1 } } };
  assert.ok(where('tags.p = tags.q', a), 'key order does not matter');
  assert.ok(where('tags.p != tags.r', a));
  assert.ok(!where('tags.p < tags.q', a) && !where('NOT (tags.p < tags.q)', a));
  assert.ok(where('tags.floors = tags.floors') && !where('tags.floors > tags.floors'));
});

test('three-valued logic: undefined paths and type mismatches', () => {
  assert.ok(!where('tags.missing = 1'));
  assert.ok(!where('NOT tags.missing = 1'), 'NOT undefined is undefined');
  assert.ok(!where("tags.x != 'a'"), '!= against a missing path does not match');
  assert.ok(!where("NOT (tags.x = 'a')"));
  assert.ok(!where("status = 1") && !where('status != 1'), "string vs number is undefined either way");
  assert.ok(!where("properties.reported.temp = '21.5'") && !where("properties.reported.temp != '21.5'"));
  assert.ok(!where('tags.owner = 0') && !where('tags.owner != 0'), 'null vs number is undefined');
  assert.ok(!where('properties.reported.online = 1'));
  // AND: false wins over undefined; OR: true wins over undefined.
  assert.ok(where("NOT (tags.missing = 1 AND deviceId = 'x')"), 'undefined AND false is false');
  assert.ok(!where("NOT (tags.missing = 1 AND deviceId = 'd1')"), 'undefined AND true is undefined');
  assert.ok(where("tags.missing = 1 OR deviceId = 'd1'"), 'undefined OR true is true');
  assert.ok(!where("tags.missing = 1 OR deviceId = 'x'") && !where("NOT (tags.missing = 1 OR deviceId = 'x')"));
  assert.ok(!where('NOT NOT tags.missing = 1'));
  assert.ok(!where("status AND deviceId = 'd1'"), 'a non-Boolean as a condition is undefined');
  assert.ok(where('properties.reported.online') && !where('properties.reported.fw'), 'bare Boolean paths');
  assert.ok(where('true') && !where('false') && !where('null'));
});

test('precedence: NOT over comparison scope, AND over OR, parentheses', () => {
  assert.ok(where("deviceId = 'x' AND status = 'x' OR deviceId = 'd1'"));
  assert.ok(where("deviceId = 'd1' OR deviceId = 'x' AND status = 'x'"));
  assert.ok(!where("(deviceId = 'd1' OR deviceId = 'x') AND status = 'x'"));
  assert.ok(where("NOT deviceId = 'x' AND NOT status = 'x'"));
  assert.ok(!where("NOT (deviceId = 'd1' OR status = 'x')"));
  assert.ok(where("((((deviceId = 'd1'))))"));
});

test('IN and NOT IN', () => {
  assert.ok(where("tags.location.region IN ('EU', 'US')"));
  assert.ok(where("tags.location.region in ['EU', 'US']"), 'array-constant form');
  assert.ok(!where("tags.location.region IN ('EU', 'ASIA')"));
  assert.ok(where("tags.location.region NOT IN ('EU', 'ASIA')"));
  assert.ok(!where("tags.location.region NOT IN ('EU', 'US')"));
  assert.ok(where('properties.desired.a IN (0, 1, -2.5)'));
  assert.ok(!where("tags.missing IN ('a')") && !where("tags.missing NOT IN ('a')"), 'undefined operand');
  assert.ok(where("status IN (1, 'enabled')"), 'a match wins over a type mismatch');
  assert.ok(!where("status NOT IN (1, 'x')"), 'a type mismatch without a match is undefined');
  assert.ok(where("deviceId IN (tags.missing, 'd1')"));
  assert.ok(where('tags.owner IN (null)'));
});

test('functions: IS_* type tests and string functions', () => {
  assert.ok(where('IS_DEFINED(tags.location)') && !where('IS_DEFINED(tags.missing)'));
  assert.ok(where('IS_DEFINED(tags.owner)'), 'defined even when null');
  assert.ok(where('NOT IS_DEFINED(tags.missing)'));
  assert.ok(where('is_null(tags.owner)') && !where('IS_NULL(tags.missing)') && !where('IS_NULL(deviceId)'));
  assert.ok(where('IS_STRING(deviceId)') && !where('IS_STRING(properties.reported.temp)'));
  assert.ok(where('IS_NUMBER(properties.reported.temp)') && !where('IS_NUMBER(deviceId)'));
  assert.ok(where('IS_BOOL(properties.reported.online)') && !where('IS_BOOL(tags.missing)'));
  assert.ok(where('IS_OBJECT(tags.location)') && !where('IS_OBJECT(tags.floors)') && !where('IS_OBJECT(tags.owner)'));
  assert.ok(where('IS_ARRAY(tags.floors)') && where('IS_PRIMITIVE(tags.owner)') && !where('IS_PRIMITIVE(tags)'));
  assert.ok(where("STARTSWITH(deviceId, 'd')") && !where("STARTSWITH(deviceId, 'D')"));
  assert.ok(where("ENDSWITH(properties.reported.fw, '.3')") && !where("ENDSWITH(properties.reported.fw, '1')"));
  assert.ok(where("starts_with(deviceId, 'd1') AND ends_with(deviceId, '1')"), 'underscore spellings');
  assert.ok(where("CONTAINS(tags.location.plant, 'mond')") && !where("CONTAINS(tags.location.plant, 'x')"));
  assert.ok(!where("STARTSWITH(properties.reported.temp, '2')") && !where("NOT STARTSWITH(properties.reported.temp, '2')"), 'non-string is undefined');
  assert.ok(!where("NOT CONTAINS(tags.missing, 'a')"));
  assert.ok(where('IS_DEFINED(tags.location) = true'), 'a function result can be compared');
});

test('string and number literals', () => {
  const doc: JsonObject = { deviceId: "it's", tags: { q: 'say "hi"', nl: 'a\nb', u: 'é', bs: 'a\\b', n: -0.25 } };
  assert.ok(where("deviceId = 'it''s'", doc));
  assert.ok(where("deviceId = 'it\\'s'", doc));
  assert.ok(where('deviceId = "it\'s"', doc));
  assert.ok(where('tags.q = "say ""hi"""', doc));
  assert.ok(where('tags.q = "say \\"hi\\""', doc));
  assert.ok(where("tags.nl = 'a\\nb'", doc));
  assert.ok(where("tags.u = '\\u00e9'", doc));
  assert.ok(where("tags.bs = 'a\\\\b'", doc));
  assert.ok(where('tags.n = -0.25', doc) && where('tags.n = -25e-2', doc) && where('tags.n<-0.1', doc));
});

test('bracketed path segments and array indexes', () => {
  const doc: JsonObject = { deviceId: 'x', tags: { 'my key': { v: 1 }, list: ['a', 'b'] } };
  assert.ok(where("tags['my key'].v = 1", doc));
  assert.ok(where('tags["my key"]["v"] = 1', doc));
  assert.ok(where("tags.list[1] = 'b'", doc) && !where('IS_DEFINED(tags.list[2])', doc));
  const q = parseQuery("SELECT tags['my key'] AS k FROM devices");
  assert.deepEqual(project(q.select, doc), { k: { v: 1 } });
});

test('projections: last segment or alias as key, undefined values left out', () => {
  const q = parseQuery('SELECT deviceId, tags.location.region AS r, properties.reported.temp, tags.missing FROM devices');
  assert.deepEqual(q.select, {
    kind: 'fields',
    fields: [
      { path: ['deviceId'], alias: 'deviceId' },
      { path: ['tags', 'location', 'region'], alias: 'r' },
      { path: ['properties', 'reported', 'temp'], alias: 'temp' },
      { path: ['tags', 'missing'], alias: 'missing' },
    ],
  });
  assert.ok(!isAggregate(q));
  assert.deepEqual(project(q.select, D1), { deviceId: 'd1', r: 'US', temp: 21.5 });
  assert.deepEqual(project(q.select, D3), { deviceId: 'd3' });
  const p = parseQuery('select devices.tags.location as loc from devices');
  assert.deepEqual(project(p.select, D2), { loc: { region: 'EU' } });
});

test('COUNT with and without WHERE', () => {
  const all = parseQuery('SELECT COUNT() AS total FROM devices');
  assert.deepEqual(all.select, { kind: 'count', alias: 'total' });
  assert.ok(isAggregate(all));
  const agg = new Aggregator(all);
  for (const d of [D1, D2, D3]) if (matches(all.where, d)) agg.add(d);
  assert.deepEqual(agg.results(), [{ total: 3 }]);

  const some = parseQuery("select count() from devices where status = 'enabled'");
  assert.deepEqual(some.select, { kind: 'count', alias: 'count' }, 'default alias');
  const agg2 = new Aggregator(some);
  for (const d of [D1, D2, D3]) if (matches(some.where, d)) agg2.add(d);
  assert.deepEqual(agg2.results(), [{ count: 2 }]);

  const none = parseQuery("SELECT COUNT() AS n FROM devices.modules WHERE moduleId = 'nope'");
  const agg3 = new Aggregator(none);
  for (const d of [D1, D2]) if (matches(none.where, d)) agg3.add(d);
  assert.deepEqual(agg3.results(), [{ n: 0 }], 'a plain COUNT always yields one row');
});

test('GROUP BY with COUNT, aliases, undefined keys and several paths', () => {
  const q = parseQuery('SELECT tags.location.region AS region, COUNT() AS n FROM devices GROUP BY tags.location.region');
  assert.deepEqual(q.groupBy, [['tags', 'location', 'region']]);
  assert.ok(isAggregate(q));
  const docs = [D1, D2, D3, twin('d4'), twin('d5', { tags: { location: { region: 'EU' } } })];
  const agg = new Aggregator(q);
  for (const d of docs) agg.add(d);
  assert.deepEqual(agg.results(), [{ region: 'US', n: 2 }, { region: 'EU', n: 2 }, { n: 1 }]);

  const two = parseQuery('SELECT status, COUNT() AS n, devices.tags.location.region FROM devices WHERE IS_DEFINED(tags) GROUP BY status, tags.location.region');
  const agg2 = new Aggregator(two);
  for (const d of [...docs, { ...D2, status: 'enabled' }]) if (matches(two.where, d)) agg2.add(d);
  assert.deepEqual(agg2.results(), [
    { status: 'enabled', n: 2, region: 'US' },
    { status: 'disabled', n: 1, region: 'EU' },
    { status: 'enabled', n: 2, region: 'EU' },
  ]);

  const obj = parseQuery('SELECT tags.location, COUNT() FROM devices GROUP BY tags.location');
  const agg3 = new Aggregator(obj);
  agg3.add({ deviceId: 'a', tags: { location: { x: 1, y: 2 } } });
  agg3.add({ deviceId: 'b', tags: { location: { y: 2, x: 1 } } });
  assert.deepEqual(agg3.results(), [{ location: { x: 1, y: 2 }, count: 2 }], 'object keys group by deep equality');

  const onlyCount = new Aggregator(parseQuery('SELECT COUNT() AS n FROM devices GROUP BY status'));
  for (const d of docs) onlyCount.add(d);
  assert.deepEqual(onlyCount.results(), [{ n: 4 }, { n: 1 }]);
  assert.deepEqual(new Aggregator(q).results(), [], 'GROUP BY with no documents has no rows');
  assert.ok(isAggregate(parseQuery('SELECT status FROM devices GROUP BY status')));
});

test('devices.jobs is a source, and its paths drop the devices.jobs. prefix as Azure writes them', () => {
  const q = parseQuery("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1' AND status = 'failed'");
  assert.equal(q.source, 'devices.jobs');
  assert.ok(matches(q.where, { jobId: 'j1', status: 'failed' }));
  assert.ok(!matches(q.where, { jobId: 'j2', status: 'failed' }));
});

test('rejects malformed queries with ArgumentInvalid and a precise message', () => {
  rejects('', /empty/);
  rejects('   \n ', /empty/);
  rejects(`SELECT * FROM devices WHERE deviceId = '${'x'.repeat(8200)}'`, /8192/);
  rejects('SELECT * FROM devices WHERE deviceId =', /position 38: expected a value after '=' but found the end of the query/);
  rejects("SELECT * FROM devices WHERE deviceId = 'abc", /position 39: unterminated string literal/);
  rejects('SELECT * FROM devices.twins', /position 22: unknown FROM source 'devices\.twins'/);
  rejects('SELECT * FROM twins', /position 14: unknown FROM source 'twins'/);
  rejects("SELECT * FROM devices WHERE deviceId = 'a' garbage", /position 43: expected AND, OR, GROUP BY or the end of the query after 'a' but found 'garbage'/);
  rejects('SELECT * FROM devices extra', /position 22: expected WHERE, GROUP BY or the end of the query after 'devices' but found 'extra'/);
  rejects("SELECT * FROM devices WHERE LOWER(deviceId) = 'a'", /position 28: unknown function 'LOWER'/);
  rejects("SELECT * FROM devices WHERE STARTSWITH(deviceId) = 'a'", /STARTSWITH takes 2 arguments but was given 1/);
  rejects('SELECT * FROM devices WHERE ' + '('.repeat(51) + 'true' + ')'.repeat(51), /nests deeper than 50/);
  rejects('SELECT * FROM devices WHERE ' + 'NOT '.repeat(60) + 'true', /nests deeper than 50/);
  rejects('SELECT * devices', /position 9: expected FROM after '\*' but found 'devices'/);
  rejects('FROM devices', /position 0: expected SELECT/);
  rejects('SELECT * FROM devices WHERE deviceId == 1', /position 38: expected a value after '='/);
  rejects("SELECT * FROM devices WHERE deviceId = 'a\\qb'", /invalid escape sequence '\\q'/);
  rejects('SELECT * FROM devices WHERE a # 1', /position 30: unexpected character '#'/);
  rejects('SELECT * FROM devices WHERE a = 12abc', /position 32: invalid number '12a'/);
  rejects('SELECT * FROM devices WHERE a = 1e999', /position 32: invalid number '1e999'/);
  rejects("SELECT * FROM devices WHERE (deviceId = 'a'", /position 43: expected '\)' after 'a' but found the end of the query/);
  rejects("SELECT * FROM devices WHERE deviceId IN 'a'", /expected '\(' or '\['/);
  rejects('SELECT * FROM devices WHERE AND', /position 28: expected a value after 'WHERE' but found 'AND'/);
  rejects('SELECT deviceId, COUNT() FROM devices', /position 7: 'deviceId' must appear in GROUP BY/);
  rejects('SELECT deviceId, COUNT() AS n FROM devices GROUP BY status', /'deviceId' must appear in GROUP BY/);
  rejects('SELECT * FROM devices GROUP BY status', /GROUP BY needs/);
  rejects('SELECT tags.a, properties.a FROM devices', /duplicate column name 'a'/);
  rejects('SELECT COUNT(deviceId) FROM devices', /COUNT takes no arguments/);
  rejects('SELECT SUM(x) FROM devices', /'SUM' is not supported/);
  rejects('SELECT TOP 10 * FROM devices', /TOP is not supported/);
  rejects('SELECT deviceId AS FROM devices', /expected an alias name after 'AS'/);
  rejects('SELECT * FROM devices GROUP status', /expected BY after 'GROUP'/);
});

test('accepts the longest allowed query and exactly 50 levels of nesting', () => {
  const prefix = "SELECT * FROM devices WHERE deviceId = '";
  const text = `${prefix}${'x'.repeat(8192 - prefix.length - 1)}'`;
  assert.equal(text.length, 8192);
  assert.ok(!matches(parseQuery(text).where, D1));
  assert.ok(where('('.repeat(50) + "deviceId = 'd1'" + ')'.repeat(50)));
});
