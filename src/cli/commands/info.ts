import type { Command } from 'commander';
import { deviceConnectionString, openStoreFor, policyConnectionString } from '../connection.js';
import { readIdScope } from '../../dps/id-scope.js';
import { eventHubsConnectionString } from '../../core/hub-name.js';
import { CliError, usage } from '../errors.js';
import { embeddedStorageConnectionString, storedEmbeddedAccountKey } from '../../hub/files/blob-setup.js';

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('where a hub listens and how to reach it')
    .option('--data-dir <dir>', 'data directory', process.env.GATEHOUSE_DATA_DIR ?? './data')
    .option('--database-url <url>', 'PostgreSQL URL when the hub uses one (the data dir keeps it without password)')
    .option('--json', 'print JSON')
    .action(async (opts: { dataDir: string; databaseUrl?: string; json?: boolean }) => {
      const { store, state } = await openStoreFor(opts.dataDir, opts.databaseUrl);
      try {
        const owner = await store.getPolicy('iothubowner');
        const dps = await store.getPolicy('provisioningserviceowner');
        // The built-in Event Hubs-compatible endpoint, with the policy that may read it (ServiceConnect).
        const reader = await store.getPolicy('service');
        // The embedded blob store of file upload (a storage account given at start is the operator's own).
        const blobKey = state.blobStore === 'azurite' ? await storedEmbeddedAccountKey(store) : undefined;
        const info = {
          hostname: state.hostname,
          httpsPort: state.httpsPort,
          mqttPort: state.mqttPort,
          caFile: state.caFile,
          connectionString: owner === undefined ? null : policyConnectionString(state.hostname, owner.name, owner.primaryKey),
          idScope: (await readIdScope(store)) ?? null,
          dpsConnectionString: dps === undefined ? null : policyConnectionString(state.hostname, dps.name, dps.primaryKey),
          eventHubsConnectionString: reader === undefined ? null : eventHubsConnectionString(state.hostname, reader.name, reader.primaryKey),
          storageConnectionString: blobKey === undefined ? null : embeddedStorageConnectionString(state.hostname, state.httpsPort, blobKey),
        };
        if (opts.json === true) process.stdout.write(`${JSON.stringify(info)}\n`);
        else for (const [k, v] of Object.entries(info)) process.stdout.write(`${k.padEnd(25)} ${String(v)}\n`);
      } finally {
        await store.close();
      }
    });

  program
    .command('connection-string')
    .description('print one connection string: a policy (default iothubowner) or a device')
    .option('--data-dir <dir>', 'data directory', process.env.GATEHOUSE_DATA_DIR ?? './data')
    .option('--database-url <url>', 'PostgreSQL URL when the hub uses one')
    .option('--policy <name>', 'shared access policy name')
    .option('--device <id>', 'device id')
    .option('--key-type <type>', 'primary or secondary', 'primary')
    .action(async (opts: { dataDir: string; databaseUrl?: string; policy?: string; device?: string; keyType: string }) => {
      if (opts.policy !== undefined && opts.device !== undefined) throw usage('give --policy or --device, not both');
      const secondary = opts.keyType === 'secondary';
      const { store, state } = await openStoreFor(opts.dataDir, opts.databaseUrl);
      try {
        if (opts.device !== undefined) {
          const d = await store.getDevice(opts.device);
          const key = secondary ? d?.auth.secondaryKey : d?.auth.primaryKey;
          if (d === undefined) throw new CliError('DeviceNotFound', `Device ${opts.device} not found`, 404);
          if (key === null || key === undefined) {
            process.stdout.write(`HostName=${state.hostname};DeviceId=${d.deviceId};x509=true\n`);
            return;
          }
          process.stdout.write(`${deviceConnectionString(state.hostname, d.deviceId, key)}\n`);
          return;
        }
        const name = opts.policy ?? 'iothubowner';
        const p = await store.getPolicy(name);
        if (p === undefined) throw new CliError('PolicyNotFound', `no policy named ${name}`, 404);
        process.stdout.write(`${policyConnectionString(state.hostname, p.name, secondary ? p.secondaryKey : p.primaryKey)}\n`);
      } finally {
        await store.close();
      }
    });
}
