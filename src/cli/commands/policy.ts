import { Option, type Command } from 'commander';
import { openStoreFor } from '../connection.js';
import { print, type OutputFormat } from '../output.js';
import { encodeId } from '../rest-client.js';
import { connectionOptions, withClient, type ConnOpts } from './common.js';
import { usage } from '../errors.js';

export function registerPolicy(program: Command): void {
  const policy = program.command('policy').description('shared access policies');
  policy
    .command('list')
    .description('list the policies and their rights (keys only with --show-keys)')
    .option('--data-dir <dir>', 'data directory', process.env.GATEHOUSE_DATA_DIR ?? './data')
    .option('--database-url <url>', 'PostgreSQL URL when the hub uses one')
    .option('--show-keys', 'include the keys')
    .option('-o, --output <format>', 'json or table', 'json')
    .action(async (o: { dataDir: string; databaseUrl?: string; showKeys?: boolean; output: OutputFormat }) => {
      const { store } = await openStoreFor(o.dataDir, o.databaseUrl);
      try {
        const rows = (await store.listPolicies()).map((p) => ({
          keyName: p.name,
          rights: p.rights.join(', '),
          ...(o.showKeys === true ? { primaryKey: p.primaryKey, secondaryKey: p.secondaryKey } : {}),
        }));
        print(rows, o.output, o.showKeys === true ? ['keyName', 'rights', 'primaryKey', 'secondaryKey'] : ['keyName', 'rights']);
      } finally {
        await store.close();
      }
    });

  connectionOptions(policy.command('show [name]').description('show a shared access policy with its rights and keys (az iot hub policy show)'))
    .option('-n, --name <name>', 'the policy name (or give it as the argument)')
    .action(async (arg: string | undefined, o: ConnOpts & { name?: string }) => {
      const name = arg ?? o.name;
      if (name === undefined) throw usage('give the policy name', 'ArgumentMissing');
      if (arg !== undefined && o.name !== undefined && arg !== o.name) throw usage('give the policy name once');
      await withClient(o, async (c) => print((await c.call('GET', `/policies/${encodeId(name)}`)).body, o.output, ['keyName', 'rights', 'primaryKey', 'secondaryKey']));
    });
  connectionOptions(
    policy
      .command('create <name>')
      .description('create a shared access policy (at most 16 per hub); prints its keys once')
      .requiredOption('--rights <list>', 'comma-separated: RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect, ...'),
  ).action(async (name: string, o: ConnOpts & { rights: string }) => {
    await withClient(o, async (c) => print((await c.call('PUT', `/policies/${encodeId(name)}`, { rights: o.rights })).body, o.output));
  });
  connectionOptions(
    policy
      .command('update <name>')
      .description("replace a policy's rights (sessions signed with it close at once)")
      .requiredOption('--rights <list>', 'comma-separated rights'),
  ).action(async (name: string, o: ConnOpts & { rights: string }) => {
    await withClient(o, async (c) => {
      await c.call('GET', `/policies/${encodeId(name)}`);
      const body = (await c.call('PUT', `/policies/${encodeId(name)}`, { rights: o.rights })).body as Record<string, unknown>;
      print({ keyName: body.keyName, rights: body.rights }, o.output);
    });
  });
  connectionOptions(policy.command('delete <name>').description('delete a policy; its tokens stop working at once')).action(async (name: string, o: ConnOpts) => {
    await withClient(o, async (c) => {
      await c.call('DELETE', `/policies/${encodeId(name)}`);
    });
  });
  connectionOptions(
    policy
      .command('renew-key <name>')
      .description('regenerate one key of a policy; tokens signed with the old key stop working at once')
      .addOption(new Option('--key <which>', 'which key').choices(['primary', 'secondary']).default('primary')),
  ).action(async (name: string, o: ConnOpts & { key: string }) => {
    await withClient(o, async (c) => print((await c.call('POST', `/policies/${encodeId(name)}/regenerateKey`, { keyType: o.key })).body, o.output));
  });
}
