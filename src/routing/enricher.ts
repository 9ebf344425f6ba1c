/**
 * Message enrichments (decision 0006; Microsoft's "Message enrichments for device-to-cloud IoT Hub
 * messages"): per endpoint, application properties added to every message delivered to it, each a
 * static string, the hub's name (`$iothubname`) or a value from the twin of the message's device
 * (its module's twin for a module message), the path's own text when the twin lacks it.
 *
 * One class for every reader: the dispatchers of the custom endpoints ask for a record's values,
 * the built-in endpoint's readers (the Event Hubs-compatible endpoint, `GET /events` and so
 * `monitor-events`) get it as the log's RecordEnricher port through the composition root. A value
 * replaces an application property of the same name the device set (the webhook envelope keeps
 * them apart; every other reader sees one property map).
 *
 * Cost at thousands of messages a second: the values of an endpoint that reads no twin are
 * computed once per routing change; twins come from the router's TwinCache (one store read per
 * identity, forgotten when the twin changes on any node), and the values read from one twin are
 * kept with it, so a batch whose twins are cached is enriched synchronously, with no promise.
 *
 * Values are the routing's and the twin's when the message is read, not when it was ingested: a
 * reader replaying older messages sees today's enrichments (Azure stamps them at routing time and
 * says twin changes can take up to five minutes to show).
 */
import type { JsonObject } from '../core/json.js';
import type { LogRecord, RecordEnricher } from '../log/log-ports.js';
import { enrichmentValue } from './conditions.js';
import type { TwinCache } from './router.js';
import type { RoutingProperties } from './routing-config.js';

type Values = Readonly<Record<string, string>>;

/** One endpoint's enrichments, compiled for a routing document. */
interface Plan {
  list: ReadonlyArray<{ key: string; value: string; twin: boolean }>;
  needsTwin: boolean;
  /** The values when no twin is read (no `$twin` value, or no twin): computed once. */
  withoutTwin: Values;
  /** The values read from each twin object the cache handed out (a changed twin is a new object). */
  byTwin: WeakMap<JsonObject, Values>;
}

const isTwinValue = (v: string) => /^\$twin\b/i.test(v);

export class Enricher implements RecordEnricher {
  /** By endpoint name, lower case (endpoint names match case-insensitively). */
  #plans = new Map<string, Plan>();

  constructor(
    routing: RoutingProperties,
    private readonly twins: TwinCache,
    private readonly hubName: string,
  ) {
    this.update(routing);
  }

  /** A new routing document: its enrichments apply to what is read from now on. */
  update(routing: RoutingProperties): void {
    const lists = new Map<string, Array<{ key: string; value: string; twin: boolean }>>();
    for (const e of routing.enrichments) {
      for (const name of new Set(e.endpointNames.map((n) => n.toLowerCase()))) {
        const list = lists.get(name) ?? [];
        list.push({ key: e.key, value: e.value, twin: isTwinValue(e.value) });
        lists.set(name, list);
      }
    }
    const plans = new Map<string, Plan>();
    for (const [name, list] of lists) {
      const plan: Plan = { list, needsTwin: list.some((e) => e.twin), withoutTwin: {}, byTwin: new WeakMap() };
      plan.withoutTwin = this.#compute(plan, undefined);
      plans.set(name, plan);
    }
    this.#plans = plans;
  }

  /** Whether the endpoint has any enrichment. */
  has(endpoint: string): boolean {
    return this.#plans.has(endpoint.toLowerCase());
  }

  /** The endpoint's enrichment values for one record (a custom endpoint's dispatcher hands them to its sink beside the record). */
  values(endpoint: string, record: LogRecord): Values | Promise<Values> {
    const plan = this.#plans.get(endpoint.toLowerCase());
    return plan === undefined ? {} : this.#valuesFor(plan, record);
  }

  #valuesFor(plan: Plan, record: LogRecord): Values | Promise<Values> {
    if (!plan.needsTwin) return plan.withoutTwin;
    const hit = this.twins.peek(record.deviceId, record.moduleId);
    if (hit !== undefined) return this.#valuesOf(plan, hit.twin);
    return this.twins.get(record.deviceId, record.moduleId).then((twin) => this.#valuesOf(plan, twin));
  }

  /** The records with the endpoint's enrichments among their application properties (new objects; the records given are not changed). */
  enrich(endpoint: string, records: readonly LogRecord[]): readonly LogRecord[] | Promise<readonly LogRecord[]> {
    const plan = this.#plans.get(endpoint.toLowerCase());
    if (plan === undefined || records.length === 0) return records;
    const out = new Array<LogRecord>(records.length);
    let waiting: Array<Promise<void>> | undefined;
    records.forEach((r, i) => {
      const v = this.#valuesFor(plan, r);
      if (v instanceof Promise) (waiting ??= []).push(v.then((values) => void (out[i] = withValues(r, values))));
      else out[i] = withValues(r, v);
    });
    return waiting === undefined ? out : Promise.all(waiting).then(() => out);
  }

  #valuesOf(plan: Plan, twin: JsonObject | undefined): Values {
    if (twin === undefined) return plan.withoutTwin;
    let v = plan.byTwin.get(twin);
    if (v === undefined) plan.byTwin.set(twin, (v = this.#compute(plan, twin)));
    return v;
  }

  #compute(plan: Plan, twin: JsonObject | undefined): Values {
    const out: Record<string, string> = {};
    for (const e of plan.list) {
      // Azure stamps the value's own text when the twin lacks the path (or there is no twin).
      out[e.key] = enrichmentValue(e.value, { ...(twin === undefined ? {} : { twin }), hubName: this.hubName }) ?? e.value;
    }
    return out;
  }
}

/** A record with values set as application properties, over any of the same name. */
function withValues(r: LogRecord, values: Values): LogRecord {
  return { ...r, properties: { ...r.properties, ...values } };
}
