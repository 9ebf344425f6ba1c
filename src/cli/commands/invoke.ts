/**
 * `gatehouse invoke-device-method`, `invoke-module-method` and `query`, like
 * `az iot hub invoke-device-method|invoke-module-method|query`.
 */
import type { Command } from 'commander';
import { usage } from '../errors.js';
import { print } from '../output.js';
import { encodeId } from '../rest-client.js';
import { connectionOptions, intInRange, jsonOrFile, withClient, type ConnOpts } from './common.js';

interface InvokeOpts extends ConnOpts {
  deviceId: string;
  moduleId?: string;
  methodName: string;
  methodPayload: string;
  timeout: number;
}

interface QueryOpts extends ConnOpts {
  queryCommand: string;
  top?: string;
}

/** az's bounds for --timeout (azext_iot/constants.py METHOD_INVOKE_MIN/MAX_TIMEOUT_SEC). */
const MIN_TIMEOUT_S = 10;
const MAX_TIMEOUT_S = 300;

function invokeOptions(cmd: Command, module: boolean): Command {
  cmd.requiredOption('-d, --device-id <id>', 'device id');
  if (module) cmd.requiredOption('-m, --module-id <id>', 'module id');
  return connectionOptions(
    cmd
      .requiredOption('--mn, --method-name <name>', 'the method to call')
      .option('--mp, --method-payload <json>', 'the payload: JSON, or a file holding it', '{}')
      .option(
        '--to, --timeout <seconds>',
        `seconds to wait for the device to connect and for its answer (${MIN_TIMEOUT_S}-${MAX_TIMEOUT_S})`,
        intInRange(MIN_TIMEOUT_S, MAX_TIMEOUT_S),
        30,
      ),
  );
}

async function invoke(o: InvokeOpts): Promise<void> {
  const payload = jsonOrFile(o.methodPayload, '--method-payload');
  // As az sends it: the same timeout for the device to connect and to answer.
  const body = { methodName: o.methodName, payload, responseTimeoutInSeconds: o.timeout, connectTimeoutInSeconds: o.timeout };
  const path = `/twins/${encodeId(o.deviceId)}${o.moduleId === undefined ? '' : `/modules/${encodeId(o.moduleId)}`}/methods`;
  const res = await withClient(o, (c) => c.call('POST', path, body));
  print(res.body, o.output, ['status', 'payload']);
}

export function registerInvoke(program: Command): void {
  invokeOptions(program.command('invoke-device-method').description('call a direct method on a device and print its answer {"status", "payload"}'), false).action(invoke);
  invokeOptions(program.command('invoke-module-method').description('call a direct method on a module and print its answer {"status", "payload"}'), true).action(invoke);

  connectionOptions(program.command('query').description('run an IoT Hub query over device and module twins'))
    .requiredOption('-q, --query-command <sql>', 'the query, e.g. "SELECT * FROM devices WHERE tags.site = \'north\'"')
    .option('--top <n>', 'at most this many results; -1 or none: all')
    .action(async (o: QueryOpts) => {
      let top: number | undefined;
      if (o.top !== undefined && o.top !== '-1') {
        if (!/^\d{1,15}$/.test(o.top) || Number(o.top) < 1) throw usage('--top must be -1 or a positive whole number');
        top = Number(o.top);
      }
      const rows = await withClient(o, (c) => c.query('/devices/query', { query: o.queryCommand }, top));
      print(rows, o.output);
    });
}
