/**
 * Validation of a whole routing document, every problem named in one error: the shape
 * (routing-config.ts), then what spans fields as Azure checks it: names unique (without case),
 * `events` and Azure's other reserved names kept from custom endpoints, every route and
 * enrichment naming an endpoint that exists, conditions and enrichment values that compile.
 */
import { HubError } from '../core/errors.js';
import { compileCondition, RoutingQueryError, validateEnrichmentValue } from './conditions.js';
import { BUILTIN_ENDPOINT, endpointList, RESERVED_ENDPOINT_NAMES, routingSchema, type RoutingProperties } from './routing-config.js';

/** Parses and checks a routing document; RoutingInvalid (shape, names, references) or RoutingQueryInvalid (a condition or enrichment value). */
export function parseRouting(value: unknown): RoutingProperties {
  const r = routingSchema.safeParse(value);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${i.path.join('.') || 'routing'}: ${i.message}`);
    throw new HubError('RoutingInvalid', `Invalid routing: ${problems.slice(0, 10).join('; ')}`);
  }
  const routing = r.data;
  const problems: string[] = [];
  const endpoints = new Set<string>([BUILTIN_ENDPOINT]);
  const reserved = new Set(RESERVED_ENDPOINT_NAMES.map((n) => n.toLowerCase()));
  for (const { type, config } of endpointList(routing)) {
    const key = config.name.toLowerCase();
    if (reserved.has(key)) problems.push(`endpoints.${type}: the name ${config.name} is reserved`);
    else if (endpoints.has(key)) problems.push(`endpoints.${type}: the name ${config.name} is used by another endpoint`);
    endpoints.add(key);
  }
  const routeNames = new Set<string>();
  for (const route of routing.routes) {
    const key = route.name.toLowerCase();
    if (routeNames.has(key) || key === routing.fallbackRoute.name.toLowerCase()) problems.push(`routes: the name ${route.name} is used twice`);
    routeNames.add(key);
    for (const e of route.endpointNames) if (!endpoints.has(e.toLowerCase())) problems.push(`routes.${route.name}: no endpoint named ${e}`);
  }
  const keys = new Set<string>();
  for (const en of routing.enrichments) {
    const key = en.key.toLowerCase();
    if (keys.has(key)) problems.push(`enrichments: the key ${en.key} is used twice`);
    keys.add(key);
    for (const e of en.endpointNames) if (!endpoints.has(e.toLowerCase())) problems.push(`enrichments.${en.key}: no endpoint named ${e}`);
  }
  if (problems.length > 0) throw new HubError('RoutingInvalid', `Invalid routing: ${problems.slice(0, 10).join('; ')}`);
  // Endpoint names in routes and enrichments are matched without case: store them as the endpoint spells them.
  const spelled = new Map([[BUILTIN_ENDPOINT, BUILTIN_ENDPOINT], ...endpointList(routing).map((e) => [e.config.name.toLowerCase(), e.config.name] as const)]);
  for (const route of routing.routes) route.endpointNames = route.endpointNames.map((e) => spelled.get(e.toLowerCase()) ?? e);
  for (const en of routing.enrichments) en.endpointNames = en.endpointNames.map((e) => spelled.get(e.toLowerCase()) ?? e);
  for (const route of routing.routes) checkCondition(route.condition, `routes.${route.name}.condition`);
  for (const en of routing.enrichments) {
    try {
      validateEnrichmentValue(en.value);
    } catch (err) {
      if (err instanceof RoutingQueryError) throw new HubError('RoutingQueryInvalid', `enrichments.${en.key}.value: ${err.message}`);
      throw err;
    }
  }
  return routing;
}

/** Compiles a condition or says where it is wrong (RoutingQueryInvalid). */
export function checkCondition(text: string, where: string): void {
  try {
    compileCondition(text);
  } catch (err) {
    if (err instanceof RoutingQueryError) throw new HubError('RoutingQueryInvalid', `${where}: ${err.message}`);
    throw err;
  }
}
