import type { Command } from 'commander';
import { openStoreFor } from '../connection.js';
import { print, type OutputFormat } from '../output.js';

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
}
