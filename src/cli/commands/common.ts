import { Option, type Command } from 'commander';
import { resolveConnection } from '../connection.js';
import type { OutputFormat } from '../output.js';
import { RestClient } from '../rest-client.js';

export interface ConnOpts {
  connectionString?: string;
  dataDir?: string;
  caFile?: string;
  databaseUrl?: string;
  token?: string;
  output: OutputFormat;
}

export function connectionOptions(cmd: Command): Command {
  return cmd
    .option('--connection-string <cs>', 'hub connection string with a policy (env GATEHOUSE_CONNECTION_STRING)')
    .option('--data-dir <dir>', 'use the iothubowner policy of the hub in this data dir')
    .option('--ca-file <file>', 'CA certificate to trust (env GATEHOUSE_CA_FILE; a data dir brings its own)')
    .option('--database-url <url>', 'PostgreSQL URL for a data-dir hub on PostgreSQL')
    .option('--token <jwt>', 'operator bearer token instead of a policy key (env GATEHOUSE_TOKEN)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['json', 'table']).default('json'));
}

export async function withClient<T>(opts: ConnOpts, fn: (client: RestClient, hostName: string) => Promise<T>): Promise<T> {
  const conn = await resolveConnection({
    ...(opts.connectionString === undefined ? {} : { connectionString: opts.connectionString }),
    ...(opts.dataDir === undefined ? {} : { dataDir: opts.dataDir }),
    ...(opts.caFile === undefined ? {} : { caFile: opts.caFile }),
    ...(opts.databaseUrl === undefined ? {} : { databaseUrl: opts.databaseUrl }),
    ...(opts.token === undefined ? {} : { token: opts.token }),
  });
  const client = new RestClient(conn);
  try {
    return await fn(client, conn.hostName);
  } finally {
    client.close();
  }
}

export function parseJsonOption(text: string | undefined, name: string): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new Error(`${name} is not valid JSON`);
  }
}
