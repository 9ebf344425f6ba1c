/**
 * The embedded Azurite's process (azurite.ts forks it): takes its account and key from the hub
 * over IPC, so the key is never in an environment another process could read, then runs
 * Azurite's blob service (azurite-blob, the package's own entry point, with the flags it was
 * forked with). It lives only as long as the hub: when the IPC channel closes it stops.
 */
import { pathToFileURL } from 'node:url';

// Its blobs and metadata are the hub user's alone, as everything in the data dir.
process.umask(0o077);

process.once('message', (msg: unknown) => {
  const { accounts, main } = msg as { accounts: string; main: string };
  // Azurite reads its accounts from this variable (AccountDataStore), again every minute.
  process.env.AZURITE_ACCOUNTS = accounts;
  process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
  import(pathToFileURL(main).href).catch((err: unknown) => {
    process.stderr.write(`azurite failed to load: ${String(err)}\n`);
    process.exit(1);
  });
});
