/**
 * Testing routes against a sample message and twin, as Azure's TestAllRoutes
 * (`POST .../routing/routes/$testall`) and TestRoute (`.../$testnew`), which `az iot hub
 * message-route test` calls. Azure's answers say only which routes matched; Gatehouse adds why
 * each other route did not (`notMatched`, and `details.reason` for one route).
 */
import { z } from 'zod';
import { HubError } from '../core/errors.js';
import { isJsonObject, type JsonObject } from '../core/json.js';
import { compileCondition, RoutingQueryError, type RoutingInput } from './conditions.js';
import { BUILTIN_ENDPOINT, MESSAGE_SOURCE, ROUTE_SOURCES, routeSchema, type Route, type RouteSource, type RoutingProperties } from './routing-config.js';

/** Azure's names of system properties in a test message -> the wire names the query language reads. */
const SYSTEM_NAMES: Record<string, string> = {
  contentType: 'content-type',
  contentEncoding: 'content-encoding',
  messageId: 'message-id',
  correlationId: 'correlation-id',
  userId: 'user-id',
  to: 'to',
  expiryTimeUtc: 'absolute-expiry-time',
  connectionDeviceId: 'iothub-connection-device-id',
  connectionModuleId: 'iothub-connection-module-id',
  connectionAuthMethod: 'iothub-connection-auth-method',
  connectionDeviceGenerationId: 'iothub-connection-auth-generation-id',
  enqueuedTime: 'iothub-enqueuedtime',
  iothubEnqueuedTime: 'iothub-enqueuedtime',
};

const message = z
  .object({
    body: z.string().max(256 * 1024).default(''),
    appProperties: z.record(z.string(), z.string()).default({}),
    systemProperties: z.record(z.string(), z.string()).default({}),
  })
  .strict();

const twin = z.record(z.string(), z.unknown()).optional();

const testAllInput = z
  .object({
    routingSource: z.enum(ROUTE_SOURCES).default('DeviceMessages'),
    message: message.default({ body: '', appProperties: {}, systemProperties: {} }),
    twin,
  })
  .strict();

const testNewInput = z
  .object({
    message: message.default({ body: '', appProperties: {}, systemProperties: {} }),
    route: routeSchema.extend({ isEnabled: z.boolean().default(true), endpointNames: z.array(z.string()).length(1).default([BUILTIN_ENDPOINT]) }),
    twin,
  })
  .strict();

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body ?? {});
  if (!r.success) throw new HubError('ArgumentInvalid', `Invalid test input: ${r.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')}`);
  return r.data;
}

function inputOf(m: z.infer<typeof message>, source: RouteSource, t: Record<string, unknown> | undefined): RoutingInput {
  const systemProperties: Record<string, string> = { 'iothub-message-source': MESSAGE_SOURCE[source] };
  for (const [k, v] of Object.entries(m.systemProperties)) systemProperties[SYSTEM_NAMES[k] ?? k] = v;
  const input: RoutingInput = { body: Buffer.from(m.body, 'utf8'), properties: m.appProperties, systemProperties };
  if (t !== undefined && isJsonObject(t as JsonObject)) input.twin = t as JsonObject;
  return input;
}

export interface TestAllResult {
  routes: Array<{ properties: Route }>;
  notMatched: Array<{ name: string; reason: string }>;
}

/** Which of the hub's routes the message matches, and why each other one does not. */
export function testAllRoutes(routing: RoutingProperties, body: unknown): TestAllResult {
  const req = parse(testAllInput, body);
  const input = inputOf(req.message, req.routingSource, req.twin);
  const out: TestAllResult = { routes: [], notMatched: [] };
  for (const route of routing.routes) {
    const why = whyNot(route, req.routingSource, input);
    if (why === undefined) out.routes.push({ properties: route });
    else out.notMatched.push({ name: route.name, reason: why });
  }
  return out;
}

function whyNot(route: Route, source: RouteSource, input: RoutingInput): string | undefined {
  if (!route.isEnabled) return 'the route is disabled';
  if (route.source !== source) return `the route's source is ${route.source}, not ${source}`;
  const r = compileCondition(route.condition).explain(input);
  return r.matched ? undefined : (r.reason ?? `the condition ${route.condition} is false`);
}

export interface TestRouteResult {
  result: 'true' | 'false' | 'undefined';
  details: { compilationErrors: Array<{ message: string; severity: 'error'; location: { start: { line: number; column: number }; end: { line: number; column: number } } }>; reason?: string };
}

/** One route (not saved) against the message: matched or not, why not, or where its condition is wrong. */
export function testRoute(body: unknown): TestRouteResult {
  const req = parse(testNewInput, body);
  const route = req.route as Route;
  let compiled;
  try {
    compiled = compileCondition(route.condition);
  } catch (err) {
    if (!(err instanceof RoutingQueryError)) throw err;
    const pos = (err as RoutingQueryError & { position?: number }).position ?? 0;
    return {
      result: 'undefined',
      details: { compilationErrors: [{ message: err.message, severity: 'error', location: { start: { line: 0, column: pos }, end: { line: 0, column: pos + 1 } } }] },
    };
  }
  const r = compiled.explain(inputOf(req.message, route.source, req.twin));
  return { result: r.matched ? 'true' : 'false', details: { compilationErrors: [], ...(r.matched ? {} : { reason: r.reason ?? `the condition ${route.condition} is false` }) } };
}
