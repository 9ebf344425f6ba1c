/** `gatehouse twin show|update`, in the manner of `az iot hub device-twin`. */
import type { Command } from 'commander';
import { print } from '../output.js';
import { encodeId } from '../rest-client.js';
import { connectionOptions, parseJsonOption, withClient, type ConnOpts } from './common.js';
import { usage } from '../errors.js';

interface TwinOpts extends ConnOpts {
  deviceId: string;
  moduleId?: string;
  desired?: string;
  tags?: string;
  etag?: string;
}

const COLUMNS = ['deviceId', 'moduleId', 'status', 'version', 'etag'];

function path(o: TwinOpts): string {
  return `/twins/${encodeId(o.deviceId)}${o.moduleId === undefined ? '' : `/modules/${encodeId(o.moduleId)}`}`;
}

export function registerTwin(program: Command): void {
  const twin = program.command('twin').description('device and module twins');

  connectionOptions(twin.command('show').description('show a twin'))
    .requiredOption('-d, --device-id <id>')
    .option('-m, --module-id <id>')
    .action(async (o: TwinOpts) => {
      const res = await withClient(o, (c) => c.call('GET', path(o)));
      print(res.body, o.output, COLUMNS);
    });

  connectionOptions(twin.command('update').description('merge desired properties and tags (null deletes)'))
    .requiredOption('-d, --device-id <id>')
    .option('-m, --module-id <id>')
    .option('--desired <json>', 'desired properties patch, e.g. {"interval":30}')
    .option('--tags <json>', 'tags patch, e.g. {"site":"north"}')
    .option('--etag <etag>', 'apply only if the twin still has this etag')
    .action(async (o: TwinOpts) => {
      const desired = parseJsonOption(o.desired, '--desired');
      const tags = parseJsonOption(o.tags, '--tags');
      if (desired === undefined && tags === undefined) throw usage('give --desired and/or --tags', 'ArgumentMissing');
      const body: Record<string, unknown> = {};
      if (tags !== undefined) body.tags = tags;
      if (desired !== undefined) body.properties = { desired };
      const res = await withClient(o, (c) => c.call('PATCH', path(o), body, { 'if-match': `"${o.etag ?? '*'}"` }));
      print(res.body, o.output, COLUMNS);
    });
}
