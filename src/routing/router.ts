/**
 * Route evaluation at ingestion (decision 0006): the routes in effect when a message arrives
 * decide which endpoints it goes to. Conditions are compiled once per routing change; a message
 * is matched against the enabled routes of its source; the fallback route adds `events` for a
 * device message no route took. The result is the message's endpoint set in the log; an empty
 * set means the message is acknowledged and not stored (as Azure drops it).
 *
 * A condition reading `$twin` needs the twin of the message's device (its module's for a module
 * message): fetched once, kept (TwinCache), forgotten when the twin changes on any node.
 */
import { SUBJECTS, type HubBus } from '../bus/subjects.js';
import type { JsonObject } from '../core/json.js';
import type { LogMessage } from '../log/log-ports.js';
import { BodyPaths, compileCondition, PreparedInput, type CompiledCondition, type RoutingInput } from './conditions.js';
import { BUILTIN_ENDPOINT, type RouteSource, type RoutingProperties } from './routing-config.js';

/** The twin a `$twin` condition or enrichment reads; undefined when the identity is gone. */
export type TwinLookup = (deviceId: string, moduleId: string | null) => Promise<JsonObject | undefined>;

const MAX_CACHED_TWINS = 10_000;

interface CachedTwin {
  promise: Promise<JsonObject | undefined>;
  /** Set once the read settled with a twin (or undefined: no such identity). */
  read: boolean;
  twin: JsonObject | undefined;
}

/**
 * Twins read for routing (conditions and enrichments), per identity, forgotten on `twin.changed`
 * and on identity deletion: one store read per identity, not per message.
 */
export class TwinCache {
  readonly #twins = new Map<string, CachedTwin>();

  constructor(
    private readonly lookup: TwinLookup,
    bus?: HubBus,
  ) {
    bus?.subscribe(SUBJECTS.twinChanged, ({ deviceId, moduleId }) => void this.forget(deviceId, moduleId));
    bus?.subscribe(SUBJECTS.twinsChanged, ({ twins }) => {
      for (const t of twins) void this.forget(t.deviceId, t.moduleId);
    });
    bus?.subscribe(SUBJECTS.identityChanged, (c) => {
      if (c.kind === 'device-deleted') this.forgetDevice(c.deviceId);
      else if (c.kind === 'module-deleted') this.forget(c.deviceId, c.moduleId);
    });
    bus?.subscribe(SUBJECTS.busResync, () => this.#twins.clear());
  }

  get(deviceId: string, moduleId: string | null): Promise<JsonObject | undefined> {
    const key = keyOf(deviceId, moduleId);
    const hit = this.#twins.get(key);
    if (hit !== undefined) return hit.promise;
    if (this.#twins.size >= MAX_CACHED_TWINS) this.#twins.delete(this.#twins.keys().next().value as string);
    const entry: CachedTwin = { promise: this.lookup(deviceId, moduleId), read: false, twin: undefined };
    this.#twins.set(key, entry);
    entry.promise.then(
      (twin) => {
        entry.twin = twin;
        entry.read = true;
      },
      // A failed read is not kept: the next message asks again.
      () => {
        if (this.#twins.get(key) === entry) this.#twins.delete(key);
      },
    );
    return entry.promise;
  }

  /** The cached twin without waiting: `{ twin }` once read (twin undefined: no such identity), undefined when not (yet) read. */
  peek(deviceId: string, moduleId: string | null): { twin: JsonObject | undefined } | undefined {
    const hit = this.#twins.get(keyOf(deviceId, moduleId));
    return hit?.read === true ? { twin: hit.twin } : undefined;
  }

  forget(deviceId: string, moduleId: string | null): void {
    this.#twins.delete(keyOf(deviceId, moduleId));
  }

  forgetDevice(deviceId: string): void {
    const prefix = keyOf(deviceId, null);
    for (const k of [...this.#twins.keys()]) if (k === prefix || k.startsWith(`${prefix}/`)) this.#twins.delete(k);
  }
}

function keyOf(deviceId: string, moduleId: string | null): string {
  return moduleId === null ? deviceId : `${deviceId}/${moduleId}`;
}

interface CompiledRoute {
  name: string;
  source: RouteSource;
  endpoint: string;
  condition: CompiledCondition;
}

/** One routing document, compiled. */
export class CompiledRouting {
  readonly #bySource = new Map<RouteSource, CompiledRoute[]>();
  readonly #fallback: boolean;

  constructor(routing: RoutingProperties) {
    // One table of `$body` paths for every route: a message's body is scanned once for all of them.
    const paths = new BodyPaths();
    for (const r of routing.routes) {
      if (!r.isEnabled) continue;
      const list = this.#bySource.get(r.source) ?? [];
      list.push({ name: r.name, source: r.source, endpoint: r.endpointNames[0] as string, condition: compileCondition(r.condition, paths) });
      this.#bySource.set(r.source, list);
    }
    this.#fallback = routing.fallbackRoute.isEnabled;
  }

  /** Whether a message of this source can go anywhere (twin and lifecycle events are built only then). */
  hasRoutesFor(source: RouteSource): boolean {
    return (this.#bySource.get(source)?.length ?? 0) > 0 || (source === 'DeviceMessages' && this.#fallback);
  }

  needsTwin(source: RouteSource): boolean {
    return (this.#bySource.get(source) ?? []).some((r) => r.condition.usesTwin);
  }

  /** The endpoint set of a message, in route order, each endpoint once. */
  endpointsFor(message: RoutingInput, source: RouteSource): string[] {
    const out: string[] = [];
    // One scan of the body for all the routes. A wrapper of its own, not prepareInput's
    // memo on the input: the router's input is made per message and seen by nobody else, and
    // defining the memo property cost more than the wrapper.
    const input = new PreparedInput(message);
    for (const r of this.#bySource.get(source) ?? []) {
      if (!out.includes(r.endpoint) && r.condition.matches(input)) out.push(r.endpoint);
    }
    // Azure's fallback: device messages that satisfy no route's condition go to the built-in endpoint.
    if (out.length === 0 && source === 'DeviceMessages' && this.#fallback) out.push(BUILTIN_ENDPOINT);
    return out;
  }
}

export class Router {
  #compiled: CompiledRouting;

  constructor(
    routing: RoutingProperties,
    private readonly twins: TwinCache,
  ) {
    this.#compiled = new CompiledRouting(routing);
  }

  /** A new routing document (validated, so its conditions compile). */
  update(routing: RoutingProperties): void {
    this.#compiled = new CompiledRouting(routing);
  }

  hasRoutesFor(source: RouteSource): boolean {
    return this.#compiled.hasRoutesFor(source);
  }

  /** The endpoints a message goes to under the routes in effect now. */
  async endpointsFor(message: LogMessage, source: RouteSource = 'DeviceMessages'): Promise<string[]> {
    return this.endpointsSoon(message, source);
  }

  /**
   * endpointsFor without a promise when no route in effect reads `$twin` (the common case, and
   * the telemetry path's: a promise and an await per message are a measurable share of it).
   */
  endpointsSoon(message: LogMessage, source: RouteSource = 'DeviceMessages'): string[] | Promise<string[]> {
    const compiled = this.#compiled;
    const input: RoutingInput = { body: message.body, properties: message.properties, systemProperties: message.systemProperties };
    if (!compiled.needsTwin(source)) return compiled.endpointsFor(input, source);
    return this.twins.get(message.deviceId, message.moduleId).then((twin) => {
      if (twin !== undefined) input.twin = twin;
      return compiled.endpointsFor(input, source);
    });
  }
}
