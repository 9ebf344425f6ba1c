/**
 * Automatic device and module configurations, management side: Azure's `/configurations/{id}`
 * (create or update, get, list, delete) and `POST /configurations/testQueries`. Applying them to
 * twins is the engine's (configuration-engine.ts), told through the bus (`configurations.changed`).
 *
 * PUT without If-Match creates and refuses an id in use (ConfigurationAlreadyExists); with If-Match
 * it updates under that etag ('*' = whatever it is), as the SDKs' addConfiguration and
 * updateConfiguration(config, forceUpdate) send it. Content and creation time never change.
 */
import type { Clock } from '../../core/clock.js';
import { HubError } from '../../core/errors.js';
import { newEtag } from '../../core/ids.js';
import { isJsonObject, type JsonObject } from '../../core/json.js';
import type { ConfigurationStore, StoredConfiguration } from '../../store/configuration-ports.js';
import { SUBJECTS, type HubBus } from '../../bus/subjects.js';
import { MAX_CONFIGURATIONS, checkConfigurationId, configurationFromBody, parseMetric, renderConfiguration, targetQuery } from './configuration-input.js';
import { parseQuery } from '../query/index.js';

export interface ConfigurationChange {
  action: 'configuration.create' | 'configuration.update' | 'configuration.delete';
  id: string;
  before?: JsonObject;
  after?: JsonObject;
}

export class ConfigurationService {
  constructor(
    private readonly store: ConfigurationStore,
    private readonly clock: Clock,
    private readonly bus: HubBus,
    private readonly limit = MAX_CONFIGURATIONS,
  ) {}

  async get(id: string): Promise<JsonObject> {
    return renderConfiguration(await this.#load(id));
  }

  /** Azure lists at most `top` (default and maximum 100, the hub's limit). */
  async list(top?: number): Promise<JsonObject[]> {
    const all = await this.store.list();
    return all.slice(0, top ?? this.limit).map(renderConfiguration);
  }

  /** PUT: create (no If-Match) or update under the etag. Returns the document and what changed, for the audit log. */
  async put(id: string, body: unknown, ifMatch: string | undefined): Promise<{ doc: JsonObject; created: boolean; change: ConfigurationChange }> {
    checkConfigurationId(id);
    const now = new Date(this.clock.now()).toISOString();
    if (ifMatch === undefined) {
      const record = configurationFromBody(id, body, now, newEtag());
      await this.store.insert(record, this.limit);
      this.bus.publish(SUBJECTS.configurationsChanged, { id, change: 'created' });
      const doc = renderConfiguration({ record, results: null, resultsAt: 0 });
      return { doc, created: true, change: { action: 'configuration.create', id, after: doc } };
    }
    const existing = await this.#load(id);
    if (ifMatch !== '*' && ifMatch !== existing.record.etag) {
      throw new HubError('PreconditionFailed', `The etag of configuration ${id} does not match; it was changed by someone else.`);
    }
    const record = configurationFromBody(id, body, now, newEtag(), existing.record);
    await this.store.replace(record, existing.record.etag);
    this.bus.publish(SUBJECTS.configurationsChanged, { id, change: 'updated' });
    const doc = renderConfiguration({ record, results: existing.results, resultsAt: existing.resultsAt });
    return { doc, created: false, change: { action: 'configuration.update', id, before: renderConfiguration(existing), after: doc } };
  }

  async delete(id: string, ifMatch: string | undefined): Promise<ConfigurationChange> {
    const existing = await this.#load(id);
    await this.store.delete(id, ifMatch ?? '*');
    this.bus.publish(SUBJECTS.configurationsChanged, { id, change: 'deleted' });
    return { action: 'configuration.delete', id, before: renderConfiguration(existing) };
  }

  /**
   * Azure's testQueries: `{ targetCondition, customMetricQueries }` -> `{ targetConditionError,
   * customMetricQueryErrors }`, empty strings where a query is valid. The target condition is
   * checked as a device one (`FROM devices.modules WHERE` makes it a module one).
   */
  testQueries(body: unknown): JsonObject {
    if (!isJsonObject(body)) throw new HubError('ArgumentInvalid', 'The body must be {"targetCondition": "...", "customMetricQueries": {...}}.');
    let targetConditionError = '';
    const cond = body.targetCondition;
    if (cond !== undefined && cond !== null) {
      if (typeof cond !== 'string') targetConditionError = 'targetCondition must be a string.';
      else {
        const source = /^\s*FROM\s+devices\.modules\s+WHERE\s/i.test(cond) ? 'devices.modules' : 'devices';
        const text = targetQuery(cond, source);
        if (text !== undefined) targetConditionError = errorOf(() => parseQuery(text));
      }
    }
    const customMetricQueryErrors: JsonObject = {};
    const metrics = body.customMetricQueries;
    if (isJsonObject(metrics)) {
      for (const [name, text] of Object.entries(metrics)) {
        customMetricQueryErrors[name] = typeof text === 'string' ? errorOf(() => parseMetric(name, text)) : 'The query must be a string.';
      }
    }
    return { targetConditionError, customMetricQueryErrors };
  }

  async #load(id: string): Promise<StoredConfiguration> {
    const found = await this.store.get(id);
    if (found === undefined) throw new HubError('ConfigurationNotFound', `Configuration ${id} not found.`);
    return found;
  }
}

function errorOf(check: () => unknown): string {
  try {
    check();
    return '';
  } catch (err) {
    return (err as Error).message;
  }
}
