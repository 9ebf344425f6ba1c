/** `gatehouse module-identity create|show|list|update|delete`, like `az iot hub module-identity`. */
import { Option, type Command } from 'commander';
import { print } from '../output.js';
import { encodeId } from '../rest-client.js';
import { connectionOptions, intInRange, withClient, type ConnOpts } from './common.js';
import { AUTH_METHODS, authFrom, type AuthOpts } from './device.js';

const COLUMNS = ['deviceId', 'moduleId', 'connectionState', 'authType', 'etag'];

interface ModuleJson {
  deviceId: string;
  moduleId: string;
  etag: string;
  authentication: { type: string };
  [k: string]: unknown;
}

interface ModuleOpts extends ConnOpts, AuthOpts {
  deviceId: string;
  moduleId: string;
  etag?: string;
  top?: number;
}

function row(m: ModuleJson): ModuleJson & { authType: string } {
  return { ...m, authType: m.authentication.type };
}

function path(o: ModuleOpts): string {
  return `/devices/${encodeId(o.deviceId)}/modules/${encodeId(o.moduleId)}`;
}

function ids(cmd: Command): Command {
  return cmd.requiredOption('-d, --device-id <id>', 'device id').requiredOption('-m, --module-id <id>', 'module id');
}

function authOptions(cmd: Command, generated: boolean): Command {
  const note = generated ? ' (generated when omitted)' : '';
  return cmd
    .addOption(new Option('--am, --auth-method <method>', 'authentication').choices(Object.keys(AUTH_METHODS)))
    .option('--pk, --primary-key <key>', `base64 key${note}`)
    .option('--sk, --secondary-key <key>', `base64 key${note}`)
    .option('--ptp, --primary-thumbprint <hex>', 'X.509 thumbprint (SHA-1 or SHA-256)')
    .option('--stp, --secondary-thumbprint <hex>', 'X.509 thumbprint (SHA-1 or SHA-256)');
}

export function registerModule(program: Command): void {
  const module = program.command('module-identity').description('module identities of a device (az iot hub module-identity)');

  connectionOptions(authOptions(ids(module.command('create').description('add a module to a device')), true)).action(async (o: ModuleOpts) => {
    const body: Record<string, unknown> = { deviceId: o.deviceId, moduleId: o.moduleId };
    const auth = authFrom(o);
    if (auth !== undefined) body.authentication = auth;
    const res = await withClient(o, (c) => c.call('PUT', path(o), body));
    print(row(res.body as ModuleJson), o.output, COLUMNS);
  });

  connectionOptions(ids(module.command('show').description('show a module'))).action(async (o: ModuleOpts) => {
    const res = await withClient(o, (c) => c.call('GET', path(o)));
    print(row(res.body as ModuleJson), o.output, COLUMNS);
  });

  connectionOptions(module.command('list').description('list the modules of a device'))
    .requiredOption('-d, --device-id <id>', 'device id')
    .option('--top <n>', 'at most this many (default 1000)', intInRange(1, 1000))
    .action(async (o: ModuleOpts) => {
      const res = await withClient(o, (c) => c.call('GET', `/devices/${encodeId(o.deviceId)}/modules`));
      print((res.body as ModuleJson[]).slice(0, o.top ?? 1000).map(row), o.output, COLUMNS);
    });

  connectionOptions(authOptions(ids(module.command('update').description("change a module's credentials")), false))
    .option('-e, --etag <etag>', 'update only if the module still has this etag')
    .action(async (o: ModuleOpts) => {
      const res = await withClient(o, async (c) => {
        const current = (await c.call('GET', path(o))).body as ModuleJson;
        const auth = authFrom(o);
        const body: Record<string, unknown> = { ...current, ...(auth === undefined ? {} : { authentication: auth }) };
        return c.call('PUT', path(o), body, { 'if-match': `"${o.etag ?? current.etag}"` });
      });
      print(row(res.body as ModuleJson), o.output, COLUMNS);
    });

  connectionOptions(ids(module.command('delete').description('delete a module')))
    .option('-e, --etag <etag>', 'delete only if the module still has this etag')
    .action(async (o: ModuleOpts) => {
      await withClient(o, (c) => c.call('DELETE', path(o), undefined, { 'if-match': `"${o.etag ?? '*'}"` }));
    });
}
