/** `gatehouse sas generate`, like `az iot hub generate-sas-token`. */
import type { Command } from 'commander';
import { generateSasToken } from '../../auth/sas.js';
import { resolveConnection } from '../connection.js';
import { encodeId, RestClient } from '../rest-client.js';
import { connectionOptions, type ConnOpts } from './common.js';
import { CliError, usage } from '../errors.js';

interface SasOpts extends ConnOpts {
  device?: string;
  moduleId?: string;
  duration: string;
  keyType: string;
}

export function registerSas(program: Command): void {
  const sas = program.command('sas').description('shared access signature tokens');
  connectionOptions(sas.command('generate').description('a SAS token for the policy of the connection, or for a device'))
    .option('--device <id>', 'a device-scoped token signed with the device key')
    .option('-m, --module-id <id>', 'a module-scoped token (with --device)')
    .option('--du, --duration <seconds>', 'validity in seconds', '3600')
    .option('--key-type <type>', 'primary or secondary', 'primary')
    .action(async (o: SasOpts) => {
      const duration = Number(o.duration);
      if (!Number.isInteger(duration) || duration < 1) throw usage('--duration must be a positive number of seconds');
      const conn = await resolveConnection(o);
      const expiry = Math.floor(Date.now() / 1000) + duration;
      let token: string;
      if (o.device === undefined) {
        token = generateSasToken({ resource: conn.hostName, key: conn.key, keyName: conn.keyName, expiry });
      } else {
        const client = new RestClient(conn);
        try {
          const path = `/devices/${encodeId(o.device)}${o.moduleId === undefined ? '' : `/modules/${encodeId(o.moduleId)}`}`;
          const identity = (await client.call('GET', path)).body as { authentication: { symmetricKey: { primaryKey: string | null; secondaryKey: string | null } } };
          const key = o.keyType === 'secondary' ? identity.authentication.symmetricKey.secondaryKey : identity.authentication.symmetricKey.primaryKey;
          if (key === null) throw new CliError('InvalidOperation', 'this identity authenticates with X.509 and has no key');
          const resource = `${conn.hostName}/devices/${o.device}${o.moduleId === undefined ? '' : `/modules/${o.moduleId}`}`;
          token = generateSasToken({ resource, key, expiry });
        } finally {
          client.close();
        }
      }
      if (o.output === 'table') process.stdout.write(`${token}\n`);
      else process.stdout.write(`${JSON.stringify({ sas: token, expiry: new Date(expiry * 1000).toISOString() })}\n`);
    });
}
