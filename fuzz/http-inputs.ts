/**
 * HTTPS inputs: the service REST API, device HTTP, DPS and EST (every route in route-access.ts),
 * as raw HTTP/1.1 requests on a TLS socket so the request line and headers are fuzzed too. An
 * input is two chunks, head and body; the harness inserts the Authorization header (a device or
 * iothubowner SAS) after the request line when the input is sent after authentication. Query
 * inputs are POST /devices/query (and the DPS query routes) with a query from a fast-check
 * grammar, or a real query mutated character by character.
 */
import fc from 'fast-check';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { ROUTE_ACCESS } from '../src/protocol/http/route-access.js';
import type { FuzzInput } from './input.js';
import { applyMutations, mutationOps } from './mutate.js';
import { fuzzBag, fuzzBytes, fuzzText } from './text.js';

/** Routes the fuzzer does not call with the owner's key: they would switch the hub's defences or its operators under the campaign's feet. */
const NOT_WITH_OWNER = new Set(['PATCH /settings', 'PUT /operators/:id', 'PATCH /operators/:id', 'DELETE /operators/:id', 'POST /certificateAuthorities/:name/revoke']);

export function httpRequest(method: string, path: string, headers: Record<string, string>, body: Buffer): Buffer[] {
  const lines = [`${method} ${path} HTTP/1.1`, 'Host: gatehouse', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), `Content-Length: ${body.length}`, 'Connection: close', '', ''];
  return [Buffer.from(lines.join('\r\n'), 'latin1'), body];
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const API = 'api-version=2021-04-12';

/** A real PKCS#10 request (base64 DER), for the EST seeds. */
async function csrBase64(): Promise<string> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=line-a-001', keys, signingAlgorithm: alg });
  return Buffer.from(csr.rawData).toString('base64');
}

interface Seed {
  auth: 'none' | 'device' | 'service';
  chunks: Buffer[];
}

export async function httpSeeds(idScope: string, deviceId: string): Promise<Seed[]> {
  const csr = await csrBase64();
  const basic = `Basic ${Buffer.from('cred-1:not-the-password').toString('base64')}`;
  const ct = { 'Content-Type': 'application/json' };
  return [
    { auth: 'service', chunks: httpRequest('PUT', `/devices/${deviceId}-x?${API}`, ct, json({ deviceId: `${deviceId}-x`, status: 'enabled' })) },
    { auth: 'service', chunks: httpRequest('PATCH', `/twins/${deviceId}?${API}`, { ...ct, 'If-Match': '*' }, json({ tags: { site: 'a' }, properties: { desired: { rate: 5 } } })) },
    { auth: 'service', chunks: httpRequest('POST', `/devices/query?${API}`, { ...ct, 'x-ms-max-item-count': '10' }, json({ query: "SELECT * FROM devices WHERE properties.reported.fw = '1.0'" })) },
    { auth: 'service', chunks: httpRequest('POST', `/twins/${deviceId}/methods?${API}`, ct, json({ methodName: 'reboot', payload: { delay: 1 }, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 0 })) },
    { auth: 'service', chunks: httpRequest('POST', `/enrollments/query?${API}`, ct, json({ query: '*' })) },
    { auth: 'device', chunks: httpRequest('POST', `/devices/${deviceId}/messages/events?${API}`, { ...ct, 'iothub-app-alert': 'true', 'iothub-messageid': 'm1' }, json({ t: 21 })) },
    { auth: 'device', chunks: httpRequest('GET', `/devices/${deviceId}/messages/devicebound?${API}`, {}, Buffer.alloc(0)) },
    { auth: 'none', chunks: httpRequest('PUT', `/${idScope}/registrations/reg-1/register?api-version=2019-03-31`, { ...ct, Authorization: 'SharedAccessSignature sr=x&sig=y&se=1&skn=registration' }, json({ registrationId: 'reg-1' })) },
    { auth: 'none', chunks: httpRequest('POST', '/.well-known/est/line-a/simpleenroll', { 'Content-Type': 'application/pkcs10', 'Content-Transfer-Encoding': 'base64', Authorization: basic }, Buffer.from(csr)) },
    { auth: 'none', chunks: httpRequest('POST', '/est/line-a/enroll', { ...ct, Authorization: basic }, json({ csr: `-----BEGIN CERTIFICATE REQUEST-----\n${csr}\n-----END CERTIFICATE REQUEST-----` })) },
    { auth: 'none', chunks: httpRequest('GET', '/.well-known/est/line-a/cacerts', {}, Buffer.alloc(0)) },
  ];
}

const routes = Object.keys(ROUTE_ACCESS).map((k) => {
  const [method, path] = k.split(' ') as [string, string];
  return { key: k, method, path };
});

/** encodeURIComponent, with lone surrogates (which it refuses) sent as the bytes of U+FFFD. */
const encode = (t: string): string => encodeURIComponent(Buffer.from(t, 'utf8').toString('utf8'));

const segment = fc.oneof({ weight: 3, arbitrary: fuzzText.map(encode) }, { weight: 1, arbitrary: fuzzText.map((t) => t.replace(/[\s]/g, '%20')) }, { weight: 1, arbitrary: fc.constantFrom('fuzz-http', 'line-a', '0ne00000000', 'iothubowner') });

const headerArb: fc.Arbitrary<Record<string, string>> = fc
  .record(
    {
      'Content-Type': fc.constantFrom('application/json', 'application/pkcs10', 'text/plain', 'application/json; charset=utf-16', 'multipart/form-data; boundary=x', ''),
      'If-Match': fc.oneof(fc.constant('*'), fuzzText),
      'x-ms-max-item-count': fc.oneof(fc.integer({ min: -5, max: 100_000 }).map(String), fuzzText),
      'x-ms-continuation': fuzzText,
      'iothub-app-x': fuzzText,
      'Content-Encoding': fc.constantFrom('gzip', 'deflate', 'br', 'identity'),
      'Transfer-Encoding': fc.constantFrom('chunked', 'gzip, chunked'),
      Authorization: fc.oneof(fuzzBag.map((b) => `SharedAccessSignature ${b}`), fuzzText.map((t) => `Basic ${Buffer.from(t).toString('base64')}`), fuzzText.map((t) => `Bearer ${t}`), fuzzText),
    },
    { requiredKeys: [] },
  )
  .map((h) => Object.fromEntries(Object.entries(h).map(([k, v]) => [k, v.replace(/[\r\n]/g, ' ')])));

function generated(idScope: string): fc.Arbitrary<FuzzInput> {
  return fc
    .record({
      route: fc.constantFrom(...routes),
      params: fc.array(segment, { minLength: 4, maxLength: 4 }),
      query: fc.oneof(fc.constant(API), fuzzBag.map((b) => `${API}&${b}`), fuzzBag),
      headers: headerArb,
      body: fc.oneof(fuzzBytes, fc.constant(Buffer.alloc(0)), fc.jsonValue({ maxDepth: 5 }).map((v) => json(v))),
      auth: fc.constantFrom('none' as const, 'device' as const, 'service' as const),
    })
    .filter(({ route, auth, headers }) => !(auth === 'service' && NOT_WITH_OWNER.has(route.key)) && !(auth !== 'none' && headers.Authorization !== undefined))
    .map(({ route, params, query, headers, body, auth }) => {
      let i = 0;
      const path = route.path.replace(/:([A-Za-z]+)/g, (_m, name: string) => (name === 'idScope' && i % 2 === 0 ? idScope : params[i++ % params.length]!));
      return { protocol: 'http', auth, kind: `generated ${route.key}`, chunks: httpRequest(route.method, `${path}?${query}`, headers, body) };
    });
}

export function httpInputs(idScope: string, seeds: Seed[]): fc.Arbitrary<FuzzInput> {
  const donors = seeds.map((s) => s.chunks);
  return fc.oneof(
    fc.record({ s: fc.nat(), ops: mutationOps }).map(({ s, ops }): FuzzInput => {
      const seed = seeds[s % seeds.length]!;
      return { protocol: 'http', auth: seed.auth, kind: `mutated request ${s % seeds.length}`, chunks: applyMutations(seed.chunks, ops, 'http', donors) };
    }),
    generated(idScope),
  );
}

// ---- the query language -----------------------------------------------------------------------

const ident = fc.oneof(fc.constantFrom('deviceId', 'status', 'tags', 'properties', 'reported', 'desired', 'moduleId', '$version', 'devices', 'x'), fc.stringMatching(/^[A-Za-z_$][A-Za-z0-9_$]{0,6}$/));
const path = fc.array(fc.oneof(ident.map((n) => `.${n}`), fuzzText.map((t) => `['${t.replace(/'/g, "\\'")}']`), fc.integer({ min: -2, max: 5 }).map((n) => `[${n}]`)), { maxLength: 4 }).chain((rest) => ident.map((h) => h + rest.join('')));
const literal = fc.oneof(
  fuzzText.map((t) => `'${t}'`),
  fc.double().map(String),
  fc.integer().map(String),
  fc.constantFrom('true', 'false', 'null', '1e400', '-0', "'\\u0000'", "'\\ud800'", "'\\q'", '"dq"'),
);
const operand = fc.oneof(path, literal, fc.tuple(fc.constantFrom('IS_DEFINED', 'IS_NULL', 'STARTSWITH', 'ENDSWITH', 'CONTAINS', 'LOWER', 'is_string'), fc.array(fc.oneof(path, literal), { maxLength: 3 })).map(([f, a]) => `${f}(${a.join(', ')})`));
const { cond } = fc.letrec<{ cond: string }>((tie) => ({
  cond: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.tuple(operand, fc.constantFrom('=', '!=', '<>', '<', '>', '<=', '>=', '=='), operand).map(([a, op, b]) => `${a} ${op} ${b}`),
    fc.tuple(operand, fc.constantFrom('IN', 'NOT IN'), fc.array(literal, { maxLength: 4 })).map(([a, op, l]) => `${a} ${op} [${l.join(', ')}]`),
    fc.tuple(tie('cond'), fc.constantFrom('AND', 'OR', 'and', 'Or'), tie('cond')).map(([a, op, b]) => `${a} ${op} ${b}`),
    tie('cond').map((c) => `NOT ${c}`),
    tie('cond').map((c) => `(${c})`),
  ),
}));
const select = fc.oneof(fc.constant('*'), fc.array(fc.oneof(path, fc.constant('COUNT()')).chain((p) => fc.option(ident, { nil: undefined }).map((a) => (a === undefined ? p : `${p} AS ${a}`))), { minLength: 1, maxLength: 4 }).map((a) => a.join(', ')));

export const queryText: fc.Arbitrary<string> = fc
  .record({
    top: fc.option(fc.integer({ min: -1, max: 100_000 }), { nil: undefined }),
    select,
    from: fc.constantFrom('devices', 'devices.modules', 'devices.jobs', 'twins', 'DEVICES'),
    where: fc.option(cond, { nil: undefined }),
    group: fc.option(fc.array(path, { minLength: 1, maxLength: 3 }), { nil: undefined }),
  })
  .map(({ top, select: s, from, where, group }) => `SELECT ${top === undefined ? '' : `TOP ${top} `}${s} FROM ${from}${where === undefined ? '' : ` WHERE ${where}`}${group === undefined ? '' : ` GROUP BY ${group.join(', ')}`}`);

const REAL_QUERIES = [
  "SELECT * FROM devices WHERE tags.location.region = 'US'",
  'SELECT COUNT() AS n FROM devices GROUP BY properties.reported.fw',
  "SELECT deviceId, tags['my key'] AS k FROM devices.modules WHERE STARTSWITH(moduleId, 'm') AND NOT IS_DEFINED(properties.desired.x)",
  "SELECT * FROM devices WHERE status IN ['enabled', 'disabled'] OR (properties.reported.temp > 20.5 AND properties.reported.temp <= 1e3)",
];

/** A real query with characters cut, doubled, swapped or inserted; nesting stacked past the limits. */
const mutatedQuery: fc.Arbitrary<string> = fc
  .record({ q: fc.constantFrom(...REAL_QUERIES), ops: mutationOps, nest: fc.option(fc.integer({ min: 40, max: 5000 }), { nil: undefined }), nestWith: fc.constantFrom('(', 'NOT ', '[', "'") })
  .map(({ q, ops, nest, nestWith }) => {
    const t = applyMutations([Buffer.from(q, 'latin1')], ops, 'text', []).map((b) => b.toString('latin1')).join('');
    return nest === undefined ? t : `SELECT * FROM devices WHERE ${nestWith.repeat(nest)}true${nestWith === '(' ? ')'.repeat(nest) : ''}`;
  });

export function queryInputs(): fc.Arbitrary<FuzzInput> {
  return fc
    .record({
      q: fc.oneof(queryText, mutatedQuery),
      route: fc.constantFrom('/devices/query', '/devices/query', '/enrollments/query', '/enrollmentGroups/query'),
      count: fc.option(fc.oneof(fc.integer({ min: -1, max: 100_000 }).map(String), fuzzText), { nil: undefined }),
      cont: fc.option(fuzzText, { nil: undefined }),
    })
    .map(({ q, route, count, cont }) => ({
      protocol: 'query',
      auth: 'service',
      kind: `query ${route}`,
      chunks: httpRequest('POST', `${route}?${API}`, { 'Content-Type': 'application/json', ...(count === undefined ? {} : { 'x-ms-max-item-count': count.replace(/[\r\n]/g, ' ') }), ...(cont === undefined ? {} : { 'x-ms-continuation': encode(cont) }) }, json({ query: q })),
    }));
}
