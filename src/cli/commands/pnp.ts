/**
 * IoT Plug and Play digital twins, like `az iot pnp twin show|update|invoke-command`:
 * `gatehouse pnp twin show -d ID`, `gatehouse pnp twin update -d ID --json-patch PATCH`,
 * `gatehouse pnp twin invoke-command -d ID --cn NAME [--cp COMPONENT] [--payload JSON]`.
 */
import type { Command } from 'commander';
import { usage } from '../errors.js';
import { print } from '../output.js';
import { encodeId } from '../rest-client.js';
import { connectionOptions, intInRange, jsonOrFile, withClient, type ConnOpts } from './common.js';

interface TwinOpts extends ConnOpts {
  deviceId: string;
  jsonPatch?: string;
  etag?: string;
  commandName?: string;
  componentPath?: string;
  payload: string;
  connectTimeout: number;
  responseTimeout: number;
}

const path = (o: TwinOpts) => `/digitaltwins/${encodeId(o.deviceId)}`;

export function registerPnp(program: Command): void {
  const twin = program.command('pnp').description('IoT Plug and Play (az iot pnp)').command('twin').description('digital twins (az iot pnp twin)');

  connectionOptions(twin.command('show').description('show a device\'s digital twin').requiredOption('-d, --device-id <id>', 'device id')).action(async (o: TwinOpts) => {
    const res = await withClient(o, (c) => c.call('GET', path(o)));
    print(res.body, o.output);
  });

  connectionOptions(
    twin
      .command('update')
      .description('update a digital twin with a JSON Patch of add, replace and remove operations (desired properties)')
      .requiredOption('-d, --device-id <id>', 'device id')
      .requiredOption('--jp, --json-patch <json>', 'the JSON Patch, inline or a file, e.g. [{"op": "add", "path": "/thermostat1/targetTemperature", "value": 21}]')
      .option('-e, --etag <etag>', 'apply only if the digital twin still has this etag'),
  ).action(async (o: TwinOpts) => {
    const patch = jsonOrFile(o.jsonPatch, '--json-patch');
    // az takes one operation as an object too.
    const ops = Array.isArray(patch) ? patch : patch !== null && typeof patch === 'object' ? [patch] : undefined;
    if (ops === undefined) throw usage('--json-patch must be a JSON Patch operation or an array of them');
    const headers: Record<string, string> = o.etag === undefined ? {} : { 'if-match': `"${o.etag.replace(/^"|"$/g, '')}"` };
    const res = await withClient(o, async (c) => {
      await c.call('PATCH', path(o), ops, headers);
      return c.call('GET', path(o));
    });
    print(res.body, o.output);
  });

  connectionOptions(
    twin
      .command('invoke-command')
      .description('invoke a command of the device (or of one of its components) and print its answer {"payload", "status"}')
      .requiredOption('-d, --device-id <id>', 'device id')
      .requiredOption('--cn, --command-name <name>', 'the command')
      .option('--cp, --component-path <component>', 'the component whose command it is (none: a root-level command)')
      .option('--pl, --payload <json>', 'the command payload: JSON, or a file holding it', '{}')
      .option('--cto, --connect-timeout <seconds>', 'seconds to wait for the device to connect (0-300)', intInRange(0, 300), 30)
      .option('--rto, --response-timeout <seconds>', 'seconds to wait for its answer (5-300)', intInRange(5, 300), 30),
  ).action(async (o: TwinOpts) => {
    const payload = jsonOrFile(o.payload, '--payload');
    const component = o.componentPath === undefined ? '' : `/components/${encodeId(o.componentPath)}`;
    const query = `connectTimeoutInSeconds=${o.connectTimeout}&responseTimeoutInSeconds=${o.responseTimeout}`;
    const res = await withClient(o, (c) => c.call('POST', `${path(o)}${component}/commands/${encodeId(String(o.commandName))}?${query}`, payload));
    const status = Number(res.headers['x-ms-command-statuscode']);
    print({ payload: res.body ?? null, status }, o.output, ['status', 'payload']);
  });
}
