/**
 * `gatehouse consumer-group create|list|show|delete`, as `az iot hub consumer-group`: the consumer
 * groups of the built-in Event Hubs-compatible endpoint (`$Default` always exists).
 */
import type { Command } from 'commander';
import { print } from '../output.js';
import { encodeId } from '../rest-client.js';
import { connectionOptions, withClient, type ConnOpts } from './common.js';

const BASE = '/eventHubEndpoints/events/ConsumerGroups';
const COLUMNS = ['name', 'created'];

function row(g: unknown): { name: string; created: string } {
  const r = g as { name?: string; properties?: { created?: string } };
  return { name: r.name ?? '', created: r.properties?.created ?? '' };
}

export function registerConsumerGroup(program: Command): void {
  const cg = program.command('consumer-group').description('consumer groups of the Event Hubs-compatible endpoint (az iot hub consumer-group)');
  connectionOptions(cg.command('create').description('create a consumer group').requiredOption('-n, --name <name>', 'the consumer group name')).action(async (o: ConnOpts & { name: string }) => {
    await withClient(o, async (c) => print(row((await c.call('PUT', `${BASE}/${encodeId(o.name)}`, { properties: { name: o.name } })).body), o.output, COLUMNS));
  });
  connectionOptions(cg.command('list').description('list the consumer groups, $Default included')).action(async (o: ConnOpts) => {
    await withClient(o, async (c) => print(((await c.call('GET', BASE)).body as { value: unknown[] }).value.map(row), o.output, COLUMNS));
  });
  connectionOptions(cg.command('show').description('show a consumer group').requiredOption('-n, --name <name>', 'the consumer group name')).action(async (o: ConnOpts & { name: string }) => {
    await withClient(o, async (c) => print(row((await c.call('GET', `${BASE}/${encodeId(o.name)}`)).body), o.output, COLUMNS));
  });
  connectionOptions(cg.command('delete').description('delete a consumer group ($Default cannot be deleted)').requiredOption('-n, --name <name>', 'the consumer group name')).action(async (o: ConnOpts & { name: string }) => {
    await withClient(o, async (c) => {
      await c.call('DELETE', `${BASE}/${encodeId(o.name)}`);
    });
  });
}
