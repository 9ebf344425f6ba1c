/**
 * `gatehouse configuration create|show|list|update|delete|show-metric`, as `az iot hub
 * configuration`: automatic device and module configurations. `--content` takes az's forms
 * (`{"deviceContent": {...}}` or `{"content": {"deviceContent": {...}}}`, inline or a file), as do
 * `--metrics` (`{"queries": {...}}` or `{"metrics": {"queries": {...}}}`) and `--labels`. Where az
 * updates with `--set`, update takes the four fields that may change as options; it reads the
 * configuration and writes it back under its etag (`--etag` to pin another, `*` to force).
 */
import type { Command } from 'commander';
import { print } from '../output.js';
import { encodeId, type RestClient } from '../rest-client.js';
import { usage } from '../errors.js';
import { alias, connectionOptions, intInRange, jsonObjectOption, withClient, type ConnOpts } from './common.js';

const COLUMNS = ['id', 'priority', 'targetCondition', 'targetedCount', 'appliedCount', 'lastUpdatedTimeUtc'];

type Doc = Record<string, unknown> & { systemMetrics?: { results?: Record<string, number>; queries?: Record<string, string> }; metrics?: { results?: Record<string, number>; queries?: Record<string, string> } };

function row(d: Doc): Record<string, unknown> {
  return { id: d.id, priority: d.priority, targetCondition: d.targetCondition, targetedCount: d.systemMetrics?.results?.targetedCount, appliedCount: d.systemMetrics?.results?.appliedCount, lastUpdatedTimeUtc: d.lastUpdatedTimeUtc };
}

/** az's content forms: the content object, or one wrapped in `content`. */
function contentOf(text: string): Record<string, unknown> {
  const v = jsonObjectOption(text, '--content') ?? {};
  const inner = v.content;
  return inner !== null && typeof inner === 'object' && !Array.isArray(inner) ? (inner as Record<string, unknown>) : v;
}

function metricsOf(text: string | undefined): { queries: Record<string, unknown> } | undefined {
  const v = jsonObjectOption(text, '--metrics');
  if (v === undefined) return undefined;
  const m = v.metrics !== null && typeof v.metrics === 'object' ? (v.metrics as Record<string, unknown>) : v;
  const queries = m.queries;
  if (queries === null || typeof queries !== 'object' || Array.isArray(queries)) throw usage('--metrics must be {"queries": {"<name>": "<query>"}}', 'JsonInvalid');
  return { queries: queries as Record<string, unknown> };
}

type Fields = { targetCondition?: string; priority?: number; labels?: string; metrics?: string };

function applyFields(doc: Record<string, unknown>, o: Fields): void {
  if (o.targetCondition !== undefined) doc.targetCondition = o.targetCondition;
  if (o.priority !== undefined) doc.priority = o.priority;
  if (o.labels !== undefined) doc.labels = jsonObjectOption(o.labels, '--labels');
  const metrics = metricsOf(o.metrics);
  if (metrics !== undefined) doc.metrics = metrics;
}

const idOption = (cmd: Command) => alias(cmd.requiredOption('-c, --config-id <id>', 'the configuration id (also --cid)'), '--cid <id>', 'configId');

function fieldOptions(cmd: Command): Command {
  cmd
    .option('-t, --target-condition <condition>', "which twins: a condition on tags or properties (tags.env='prod'), * for all; module configurations: FROM devices.modules WHERE ... (also --tc)")
    .option('--priority <n>', 'the highest priority wins where configurations overlap (also --pri)', intInRange(0, 2147483647))
    .option('--labels <json>', 'labels, a JSON object of strings (also --lab)')
    .option('-m, --metrics <json|file>', 'custom metrics: {"queries": {"<name>": "SELECT deviceId FROM devices WHERE ..."}}');
  alias(cmd, '--tc <condition>', 'targetCondition');
  alias(cmd, '--pri <n>', 'priority', { parse: intInRange(0, 2147483647) });
  return alias(cmd, '--lab <json>', 'labels');
}

async function get(c: RestClient, id: string): Promise<Doc> {
  return (await c.call('GET', `/configurations/${encodeId(id)}`)).body as Doc;
}

export function registerConfiguration(program: Command): void {
  const cmd = program.command('configuration').description('automatic device and module configurations (az iot hub configuration)');

  const create = fieldOptions(idOption(cmd.command('create').description('create a configuration'))).requiredOption('-k, --content <json|file>', 'what to set: {"deviceContent": {"properties.desired.x": ...}} or {"moduleContent": {...}}');
  connectionOptions(create).action(async (o: ConnOpts & Fields & { configId: string; content: string }) => {
    const doc: Record<string, unknown> = { id: o.configId, content: contentOf(o.content), targetCondition: '', priority: 0 };
    applyFields(doc, o);
    await withClient(o, async (c) => print((await c.call('PUT', `/configurations/${encodeId(o.configId)}`, doc)).body, o.output));
  });

  connectionOptions(idOption(cmd.command('show').description('show a configuration with its metrics'))).action(async (o: ConnOpts & { configId: string }) => {
    await withClient(o, async (c) => {
      const d = await get(c, o.configId);
      print(o.output === 'table' ? [row(d)] : d, o.output, COLUMNS);
    });
  });

  connectionOptions(cmd.command('list').description('list the configurations (at most 100)').option('--top <n>', 'at most this many', intInRange(1, 100))).action(async (o: ConnOpts & { top?: number }) => {
    await withClient(o, async (c) => {
      const all = (await c.call('GET', `/configurations${o.top === undefined ? '' : `?top=${o.top}`}`)).body as Doc[];
      print(o.output === 'table' ? all.map(row) : all, o.output, COLUMNS);
    });
  });

  const update = fieldOptions(idOption(cmd.command('update').description('change the target condition, priority, labels or metrics (content cannot change)'))).option('-e, --etag <etag>', 'the etag to update under (default: the one read; * to force)');
  connectionOptions(update).action(async (o: ConnOpts & Fields & { configId: string; etag?: string }) => {
    await withClient(o, async (c) => {
      const doc = await get(c, o.configId);
      applyFields(doc, o);
      const etag = o.etag ?? String(doc.etag);
      print((await c.call('PUT', `/configurations/${encodeId(o.configId)}`, doc, { 'if-match': etag === '*' ? '*' : `"${etag}"` })).body, o.output);
    });
  });

  connectionOptions(idOption(cmd.command('delete').description('delete a configuration (the values it set stay on the twins)')).option('-e, --etag <etag>', 'delete only under this etag')).action(async (o: ConnOpts & { configId: string; etag?: string }) => {
    await withClient(o, async (c) => {
      await c.call('DELETE', `/configurations/${encodeId(o.configId)}`, undefined, o.etag === undefined ? {} : { 'if-match': `"${o.etag}"` });
    });
  });

  const showMetric = idOption(cmd.command('show-metric').description("the twins a metric counts (runs the metric's query)"))
    .requiredOption('--metric-id <name>', 'the metric: targetedCount or appliedCount (system), or a custom one (also --mid)')
    .option('--metric-type <type>', 'system or user', 'user');
  alias(showMetric, '--mid <name>', 'metricId');
  connectionOptions(showMetric).action(async (o: ConnOpts & { configId: string; metricId: string; metricType: string }) => {
    await withClient(o, async (c) => {
      const d = await get(c, o.configId);
      const queries = (o.metricType === 'system' ? d.systemMetrics?.queries : d.metrics?.queries) ?? {};
      const query = queries[o.metricId];
      if (query === undefined) throw usage(`the configuration has no ${o.metricType} metric '${o.metricId}' (it has: ${Object.keys(queries).join(', ') || 'none'})`, 'ArgumentInvalid');
      const rows: unknown[] = [];
      let continuation: string | undefined;
      do {
        const r = await c.call('POST', '/devices/query', { query }, continuation === undefined ? {} : { 'x-ms-continuation': continuation });
        rows.push(...(r.body as unknown[]));
        const next = r.headers['x-ms-continuation'];
        continuation = typeof next === 'string' && next !== '' ? next : undefined;
      } while (continuation !== undefined);
      print({ metric: o.metricId, query, result: rows }, o.output);
    });
  });
}
