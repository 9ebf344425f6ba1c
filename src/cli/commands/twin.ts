/**
 * Twins, in the manner of `az iot hub device-twin` and `az iot hub module-twin`:
 * `gatehouse twin show|update|replace` (alias `device-twin`; `-m` reaches a module twin) and
 * `gatehouse module-twin show|update|replace`.
 */
import type { Command } from 'commander';
import { usage } from '../errors.js';
import { print } from '../output.js';
import { encodeId } from '../rest-client.js';
import { connectionOptions, jsonObjectOption, parseJsonOption, withClient, type ConnOpts } from './common.js';

interface TwinOpts extends ConnOpts {
  deviceId: string;
  moduleId?: string;
  desired?: string;
  tags?: string;
  json?: string;
  etag?: string;
}

const COLUMNS = ['deviceId', 'moduleId', 'status', 'version', 'etag'];

function path(o: TwinOpts): string {
  return `/twins/${encodeId(o.deviceId)}${o.moduleId === undefined ? '' : `/modules/${encodeId(o.moduleId)}`}`;
}

function ids(cmd: Command, module: 'optional' | 'required'): Command {
  cmd.requiredOption('-d, --device-id <id>', 'device id');
  return module === 'required' ? cmd.requiredOption('-m, --module-id <id>', 'module id') : cmd.option('-m, --module-id <id>', 'module id (a module twin)');
}

/** Reads the etag as given or quoted; '*' when none. */
function ifMatch(etag: string | undefined): Record<string, string> {
  return { 'if-match': `"${(etag ?? '*').replace(/^"|"$/g, '')}"` };
}

function twinCommands(group: Command, module: 'optional' | 'required'): void {
  connectionOptions(ids(group.command('show').description('show a twin'), module)).action(async (o: TwinOpts) => {
    const res = await withClient(o, (c) => c.call('GET', path(o)));
    print(res.body, o.output, COLUMNS);
  });

  connectionOptions(ids(group.command('update').description('merge desired properties and tags (null deletes)'), module))
    .option('--desired <json>', 'desired properties patch, e.g. {"interval":30}')
    .option('--tags <json>', 'tags patch, e.g. {"site":"north"}')
    .option('-e, --etag <etag>', 'apply only if the twin still has this etag')
    .action(async (o: TwinOpts) => {
      const desired = parseJsonOption(o.desired, '--desired');
      const tags = parseJsonOption(o.tags, '--tags');
      if (desired === undefined && tags === undefined) throw usage('give --desired and/or --tags', 'ArgumentMissing');
      const body: Record<string, unknown> = {};
      if (tags !== undefined) body.tags = tags;
      if (desired !== undefined) body.properties = { desired };
      const res = await withClient(o, (c) => c.call('PATCH', path(o), body, ifMatch(o.etag)));
      print(res.body, o.output, COLUMNS);
    });

  connectionOptions(ids(group.command('replace').description('replace tags and desired properties with a whole twin document'), module))
    .requiredOption('-j, --json <json>', 'the twin: {"tags": {...}, "properties": {"desired": {...}}}, inline or a file')
    .option('-e, --etag <etag>', 'apply only if the twin still has this etag')
    .action(async (o: TwinOpts) => {
      const body = jsonObjectOption(o.json, '--json');
      const res = await withClient(o, (c) => c.call('PUT', path(o), body, ifMatch(o.etag)));
      print(res.body, o.output, COLUMNS);
    });
}

export function registerTwin(program: Command): void {
  twinCommands(program.command('twin').alias('device-twin').description('device twins, or module twins with -m (az iot hub device-twin)'), 'optional');
  twinCommands(program.command('module-twin').description('module twins (az iot hub module-twin)'), 'required');
}
