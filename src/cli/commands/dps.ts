/**
 * `gatehouse dps settings show|set`: provisioning service switches, applied at once; the
 * enrollment and registration commands are in dps-enrollment.ts.
 */
import { Option, type Command } from 'commander';
import { readDpsSettings, writeDpsSettings } from '../../dps/settings.js';
import { openStoreFor } from '../connection.js';
import { usage } from '../errors.js';
import { registerDpsEnrollments } from './dps-enrollment.js';

interface Opts {
  dataDir: string;
  databaseUrl?: string;
  disableSymmetricKeyAttestation?: string;
}

export function registerDps(program: Command): void {
  const dps = program.command('dps').description('the device provisioning service');
  registerDpsEnrollments(dps);
  const settings = dps.command('settings').description('provisioning service settings');
  const common = (c: Command) =>
    c.option('--data-dir <dir>', 'data directory', process.env.GATEHOUSE_DATA_DIR ?? './data').option('--database-url <url>', 'PostgreSQL URL when the hub uses one');

  common(settings.command('show').description('print the settings as JSON')).action(async (o: Opts) => {
    const { store } = await openStoreFor(o.dataDir, o.databaseUrl);
    try {
      process.stdout.write(`${JSON.stringify(await readDpsSettings(store))}\n`);
    } finally {
      await store.close();
    }
  });

  common(settings.command('set').description('change settings; running hubs apply them to the next registration'))
    .addOption(new Option('--disable-symmetric-key-attestation <bool>', 'refuse symmetric-key devices').choices(['true', 'false']))
    .action(async (o: Opts) => {
      if (o.disableSymmetricKeyAttestation === undefined) throw usage('nothing to set: give --disable-symmetric-key-attestation true|false', 'ArgumentMissing');
      const { store } = await openStoreFor(o.dataDir, o.databaseUrl);
      try {
        const next = await writeDpsSettings(store, { disableSymmetricKeyAttestation: o.disableSymmetricKeyAttestation === 'true' });
        process.stdout.write(`${JSON.stringify(next)}\n`);
      } finally {
        await store.close();
      }
    });
}
