import { existsSync, readFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { resolveConnection } from '../connection.js';
import { CliError, usage } from '../errors.js';
import type { OutputFormat } from '../output.js';
import { RestClient } from '../rest-client.js';

export interface ConnOpts {
  connectionString?: string;
  login?: string;
  dataDir?: string;
  caFile?: string;
  databaseUrl?: string;
  token?: string;
  output: OutputFormat;
}

export function connectionOptions(cmd: Command, policy = 'iothubowner'): Command {
  return cmd
    .option('--connection-string <cs>', 'hub connection string with a policy (env GATEHOUSE_CONNECTION_STRING)')
    .option('-l, --login <cs>', "az's name for --connection-string")
    .option('--data-dir <dir>', `use the ${policy} policy of the hub in this data dir`)
    .option('--ca-file <file>', 'CA certificate to trust (env GATEHOUSE_CA_FILE; a data dir brings its own)')
    .option('--database-url <url>', 'PostgreSQL URL for a data-dir hub on PostgreSQL')
    .option('--token <jwt>', 'operator bearer token instead of a policy key (env GATEHOUSE_TOKEN)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['json', 'table']).default('json'));
}

/** The connection options of a command, without undefined values (exactOptionalPropertyTypes). */
export function connectionChoice(opts: ConnOpts, policy?: string): Parameters<typeof resolveConnection>[0] {
  const out: Parameters<typeof resolveConnection>[0] = {};
  if (opts.connectionString !== undefined) out.connectionString = opts.connectionString;
  if (opts.login !== undefined) out.login = opts.login;
  if (opts.dataDir !== undefined) out.dataDir = opts.dataDir;
  if (opts.caFile !== undefined) out.caFile = opts.caFile;
  if (opts.databaseUrl !== undefined) out.databaseUrl = opts.databaseUrl;
  if (opts.token !== undefined) out.token = opts.token;
  if (policy !== undefined) out.policy = policy;
  return out;
}

/** Runs `fn` with a client for the hub the options name (a data dir's `policy`, default iothubowner). */
export async function withClient<T>(opts: ConnOpts, fn: (client: RestClient, hostName: string) => Promise<T>, policy?: string): Promise<T> {
  const conn = await resolveConnection(connectionChoice(opts, policy));
  const client = new RestClient(conn);
  try {
    return await fn(client, conn.hostName);
  } finally {
    client.close();
  }
}

function parseJson(text: string, name: string, source: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new CliError('JsonInvalid', `${name}${source} is not valid JSON: ${(err as Error).message}`);
  }
}

/** Inline JSON. */
export function parseJsonOption(text: string | undefined, name: string): unknown {
  if (text === undefined) return undefined;
  return parseJson(text, name, '');
}

/** Inline JSON or the name of a file holding it, as az takes `--json`, `--method-payload`. */
export function jsonOrFile(text: string | undefined, name: string): unknown {
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (!/^[[{"]/.test(trimmed) && existsSync(trimmed)) {
    let content: string;
    try {
      content = readFileSync(trimmed, 'utf8');
    } catch (err) {
      throw usage(`${name} ${trimmed}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'FileUnreadable');
    }
    return parseJson(content, name, ` (file ${trimmed})`);
  }
  if (!/^[[{"]/.test(trimmed)) {
    try {
      return JSON.parse(trimmed) as unknown; // a bare number, true, null
    } catch {
      throw new CliError('JsonInvalid', `${name} '${trimmed.slice(0, 60)}' is neither JSON nor a file that exists`);
    }
  }
  return parseJson(text, name, '');
}

/** A JSON object option (twin patches, initial twins). */
export function jsonObjectOption(text: string | undefined, name: string): Record<string, unknown> | undefined {
  const v = jsonOrFile(text, name);
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw usage(`${name} must be a JSON object`, 'JsonInvalid');
  return v as Record<string, unknown>;
}

/** A commander value parser for whole numbers in a range. */
export function intInRange(min: number, max: number): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`);
    return n;
  };
}

/** az's three-state flags: `--ee`, `--ee true`, `--ee false`. */
export function boolFlag(v: string | undefined): boolean {
  if (v === undefined) return true;
  const s = v.toLowerCase();
  if (s === 'true' || s === 'yes' || s === 'on' || s === '1') return true;
  if (s === 'false' || s === 'no' || s === 'off' || s === '0') return false;
  throw new InvalidArgumentError('expected true or false');
}

/** A second name for an option (az has up to four per parameter; commander takes two). */
class AliasOption extends Option {
  constructor(
    flags: string,
    private readonly target: string,
  ) {
    super(flags);
    this.hideHelp();
  }

  override attributeName(): string {
    return this.target;
  }
}

/**
 * Adds `flags` as another spelling of the option stored as `target` (hidden from help: name it in
 * the main option's description). `like` copies the main option's value parser and choices.
 */
export function alias(cmd: Command, flags: string, target: string, like?: { choices?: readonly string[]; parse?: (v: string, prev: unknown) => unknown }): Command {
  const o = new AliasOption(flags, target);
  if (like?.choices !== undefined) o.choices(like.choices);
  if (like?.parse !== undefined) o.argParser(like.parse);
  return cmd.addOption(o);
}
