/**
 * No route without a decision about who may call it: the real HTTPS app registers exactly the
 * routes of the access table (a route missing from it, or an entry no route matches, stops the
 * app from being built), and the hand-written expectations the rights matrix test runs cover
 * exactly those routes. In memory, no hub process.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { createLogger } from '../src/log.js';
import { buildHttpApp } from '../src/protocol/http/app.js';
import type { HubServices } from '../src/protocol/http/services.js';
import { ROUTE_ACCESS, guardRouteAccess, type RouteAccess } from '../src/protocol/http/route-access.js';
import { makeRoot } from './support/pki.js';
import { ROUTE_CASES } from './support/rights-expectations.js';

/** Services nobody calls: route registration only wires them in. */
function inertServices(): HubServices {
  const inert: unknown = new Proxy(() => inert, { get: (_t, key) => (key === 'then' ? undefined : inert), apply: () => inert });
  return inert as HubServices;
}

/** `METHOD /path` for every route in printRoutes' tree (HEAD, which follows GET, left out). */
function registeredRoutes(tree: string): string[] {
  const stack: string[] = [];
  const out: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^((?:│   |    )*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (m === null) continue;
    const depth = (m[1] ?? '').length / 4;
    stack.length = depth;
    const path = `${stack.join('')}${m[2]}`;
    stack.push(m[2] ?? '');
    for (const method of (m[3] ?? '').split(', ').filter((x) => x !== '' && x !== 'HEAD')) out.push(`${method} ${path.toLowerCase()}`);
  }
  return out.sort();
}

describe('route access table', () => {
  it('the HTTPS app registers exactly the routes of the table', async () => {
    const tls = await makeRoot('route-access-test');
    const app: FastifyInstance = await buildHttpApp({
      tls: { key: tls.keyPem, cert: tls.certPem, minVersion: 'TLSv1.2' },
      logger: createLogger('silent'),
      services: inertServices(),
      timeouts: { handshakeMs: 10_000, headersMs: 15_000, requestMs: 60_000 },
    });
    await app.ready();
    // Fastify's own list of what it routes (paths lower-cased: the router is case-insensitive).
    const registered = registeredRoutes(app.printRoutes({ commonPrefix: false }));
    assert.ok(registered.length > 50, registered.join('\n'));
    assert.deepEqual(registered, Object.keys(ROUTE_ACCESS).map((k) => k.replace(/ .*/, (path) => path.toLowerCase())).sort());
    await app.close();
  });

  it('refuses a route with no entry, and an entry with no route', async () => {
    const table: Record<string, RouteAccess> = { 'GET /known': { kind: 'public' }, 'GET /gone': { kind: 'public' } };
    const app = Fastify();
    const check = guardRouteAccess(app as unknown as FastifyInstance, table);
    app.get('/known', async () => 'ok');
    assert.throws(() => app.get('/unmapped', async () => 'no'), /GET \/unmapped has no entry in ROUTE_ACCESS/);
    assert.throws(check, /not registered: GET \/gone/);
    await app.close();
  });

  it('the rights matrix has one hand-written expectation for every route in the table', () => {
    const cases = ROUTE_CASES.map((c) => c.route);
    assert.equal(new Set(cases).size, cases.length, 'one case per route');
    assert.deepEqual([...cases].sort(), Object.keys(ROUTE_ACCESS).sort());
  });
});
