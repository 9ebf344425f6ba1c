/**
 * `gatehouse message-route create|list|show|update|delete|test` and `message-route fallback
 * show|set`, as `az iot hub message-route`: each reads the hub's routing document (`GET
 * /routing`), changes it, and writes it back under the etag it read (`PUT /routing` with
 * If-Match), reading again when another writer came first. Secrets stay masked throughout: the
 * hub keeps the stored ones.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { CliError, usage } from '../errors.js';
import { print } from '../output.js';
import type { RestClient } from '../rest-client.js';
import { alias, boolFlag, connectionOptions, jsonObjectOption, withClient, type ConnOpts } from './common.js';

export const SOURCES = ['DeviceMessages', 'TwinChangeEvents', 'DeviceLifecycleEvents', 'DeviceConnectionStateEvents', 'DeviceJobLifecycleEvents'] as const;
const ROUTE_COLUMNS = ['name', 'source', 'condition', 'endpointNames', 'isEnabled'];
const MAX_ATTEMPTS = 5;

export interface RouteDoc {
  name: string;
  source: string;
  condition: string;
  endpointNames: string[];
  isEnabled: boolean;
}

export interface RoutingDoc {
  endpoints: Record<string, Array<Record<string, unknown> & { name: string }>>;
  routes: RouteDoc[];
  fallbackRoute: RouteDoc;
  enrichments: Array<{ key: string; value: string; endpointNames: string[] }>;
}

export async function readRouting(c: RestClient): Promise<{ doc: RoutingDoc; etag: string }> {
  const r = await c.call('GET', '/routing');
  return { doc: r.body as RoutingDoc, etag: String(r.headers.etag ?? '*') };
}

/** Read, change, write under the etag read; again when another writer changed it meanwhile. */
export async function editRouting<T>(c: RestClient, change: (doc: RoutingDoc) => T): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const { doc, etag } = await readRouting(c);
    const result = change(doc);
    try {
      await c.call('PUT', '/routing', doc, { 'if-match': etag });
      return result;
    } catch (err) {
      if (err instanceof CliError && err.code === 'PreconditionFailed' && attempt < MAX_ATTEMPTS) continue;
      throw err;
    }
  }
}

/** az's other spellings of an option (hidden from help). */
function withAliases(cmd: Command, ...pairs: Array<[flags: string, target: string]>): Command {
  for (const [flags, target] of pairs) alias(cmd, flags, target);
  return cmd;
}

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

function findRoute(doc: RoutingDoc, name: string): RouteDoc {
  const r = doc.routes.find((x) => same(x.name, name));
  if (r === undefined) throw new CliError('ResourceNotFound', `No route named ${name}.`);
  return r;
}

function sourceOption(v: string): string {
  const s = SOURCES.find((x) => same(x, v));
  if (s === undefined) throw new InvalidArgumentError(`expected one of ${SOURCES.join(', ')}`);
  return s;
}

type RouteOpts = ConnOpts & { routeName?: string; source?: string; endpointName?: string; condition?: string; enabled?: boolean };

export function registerMessageRoute(program: Command): void {
  const mr = program.command('message-route').description('message routes (az iot hub message-route)');
  connectionOptions(
    withAliases(
      mr
        .command('create')
        .description('create a route')
        .requiredOption('-n, --route-name <name>', 'the route name')
        .requiredOption('-s, --source <source>', `the source: ${SOURCES.join(', ')}`, sourceOption)
        .requiredOption('--endpoint-name <name>', 'the endpoint it sends to (events: the built-in one; also --en, --endpoint)')
        .option('-c, --condition <query>', 'the routing query (default true)', 'true')
        .option('-e, --enabled [bool]', 'enabled (default true)', boolFlag, true),
      ['--en <name>', 'endpointName'], ['--endpoint <name>', 'endpointName'],
    ),
  ).action(async (o: RouteOpts) => {
    const route: RouteDoc = { name: o.routeName as string, source: o.source as string, condition: o.condition ?? 'true', endpointNames: [o.endpointName as string], isEnabled: o.enabled !== false };
    await withClient(o, (c) =>
      editRouting(c, (doc) => {
        if (doc.routes.some((r) => same(r.name, route.name))) throw usage(`A route named ${route.name} exists; use message-route update.`);
        doc.routes.push(route);
      }),
    );
    print(route, o.output, ROUTE_COLUMNS);
  });
  connectionOptions(mr.command('list').description('list the routes').option('-s, --source <source>', 'only this source', sourceOption)).action(async (o: RouteOpts) => {
    const { doc } = await withClient(o, readRouting);
    print(doc.routes.filter((r) => o.source === undefined || r.source === o.source), o.output, ROUTE_COLUMNS);
  });
  connectionOptions(mr.command('show').description('show a route').requiredOption('-n, --route-name <name>', 'the route name')).action(async (o: RouteOpts) => {
    const { doc } = await withClient(o, readRouting);
    print(findRoute(doc, o.routeName as string), o.output, ROUTE_COLUMNS);
  });
  connectionOptions(
    withAliases(
      mr
        .command('update')
        .description('change a route')
        .requiredOption('-n, --route-name <name>', 'the route name')
        .option('-s, --source <source>', 'the source', sourceOption)
        .option('--endpoint-name <name>', 'the endpoint (also --en, --endpoint)')
        .option('-c, --condition <query>', 'the routing query')
        .option('-e, --enabled [bool]', 'enabled', boolFlag),
      ['--en <name>', 'endpointName'], ['--endpoint <name>', 'endpointName'],
    ),
  ).action(async (o: RouteOpts) => {
    const route = await withClient(o, (c) =>
      editRouting(c, (doc) => {
        const r = findRoute(doc, o.routeName as string);
        if (o.source !== undefined) r.source = o.source;
        if (o.endpointName !== undefined) r.endpointNames = [o.endpointName];
        if (o.condition !== undefined) r.condition = o.condition;
        if (o.enabled !== undefined) r.isEnabled = o.enabled;
        return r;
      }),
    );
    print(route, o.output, ROUTE_COLUMNS);
  });
  connectionOptions(
    mr
      .command('delete')
      .description('delete a route; without --route-name, every route (of --source)')
      .option('-n, --route-name <name>', 'the route name')
      .option('-s, --source <source>', 'every route of this source', sourceOption),
  ).action(async (o: RouteOpts) => {
    await withClient(o, (c) =>
      editRouting(c, (doc) => {
        if (o.routeName !== undefined) findRoute(doc, o.routeName);
        doc.routes = doc.routes.filter((r) => !((o.routeName === undefined || same(r.name, o.routeName)) && (o.source === undefined || r.source === o.source)));
      }),
    );
  });
  connectionOptions(
    withAliases(
      mr
        .command('test')
        .description('test the routes (or one, --route-name) against a sample message: which match, and why not')
        .option('-n, --route-name <name>', 'test only this route')
        .option('-s, --source <source>', 'the message source (default DeviceMessages)', sourceOption)
        .option('-b, --body <body>', 'the message body')
        .option('--app-properties <json>', 'application properties (JSON object or file; also --ap)')
        .option('--system-properties <json>', 'system properties, az names: contentType, contentEncoding, ... (JSON object or file; also --sp)')
        .option('--twin <json>', 'the twin: {"tags": {...}, "properties": {"desired": {...}, "reported": {...}}} (JSON object or file)'),
      ['--ap <json>', 'appProperties'], ['--sp <json>', 'systemProperties'],
    ),
  ).action(async (o: RouteOpts & { body?: string; appProperties?: string; systemProperties?: string; twin?: string }) => {
    const message = { body: o.body ?? '', appProperties: jsonObjectOption(o.appProperties, '--app-properties') ?? {}, systemProperties: jsonObjectOption(o.systemProperties, '--system-properties') ?? {} };
    const twin = jsonObjectOption(o.twin, '--twin');
    const result = await withClient(o, async (c) => {
      if (o.routeName === undefined) return (await c.call('POST', '/routing/routes/$testall', { routingSource: o.source ?? 'DeviceMessages', message, ...(twin === undefined ? {} : { twin }) })).body;
      const { doc } = await readRouting(c);
      const route = findRoute(doc, o.routeName);
      return (await c.call('POST', '/routing/routes/$testnew', { route, message, ...(twin === undefined ? {} : { twin }) })).body;
    });
    print(result, o.output);
  });
  const fb = mr.command('fallback').description('the fallback route to the built-in endpoint (az iot hub message-route fallback)');
  connectionOptions(fb.command('show').description('show the fallback route')).action(async (o: ConnOpts) => {
    const { doc } = await withClient(o, readRouting);
    print(doc.fallbackRoute, o.output, ROUTE_COLUMNS);
  });
  connectionOptions(fb.command('set').description('turn the fallback route on or off').requiredOption('-e, --enabled <bool>', 'true or false', boolFlag)).action(async (o: ConnOpts & { enabled: boolean }) => {
    const route = await withClient(o, (c) =>
      editRouting(c, (doc) => {
        doc.fallbackRoute.isEnabled = o.enabled;
        return doc.fallbackRoute;
      }),
    );
    print(route, o.output, ROUTE_COLUMNS);
  });
}
