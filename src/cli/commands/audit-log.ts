/**
 * `gatehouse audit-log list|verify`: read the audit log straight from the store of a data-dir hub
 * (like `policy list`), running or not; needs the master key, not a policy.
 *
 * `verify` exits 1 when the chain is broken, naming the first bad seq.
 */
import { Option, type Command } from 'commander';
import { isHubError } from '../../core/errors.js';
import { parseAuditFilters } from '../../audit/audit-filters.js';
import { queryAuditLog } from '../../audit/audit-entries.js';
import { verifyAuditChain, type AuditVerifyResult } from '../../audit/audit-chain.js';
import { openStoreFor } from '../connection.js';
import { print, type OutputFormat } from '../output.js';
import { CliError } from '../errors.js';

interface StoreOpts {
  dataDir: string;
  databaseUrl?: string;
  output: OutputFormat;
}

interface ListOpts extends StoreOpts {
  from?: string;
  to?: string;
  identity?: string;
  outcome?: string;
  type?: string;
  actor?: string;
  limit?: string;
  before?: string;
}

const LIST_COLUMNS = ['seq', 'at', 'type', 'identity', 'outcome', 'reason', 'remote', 'protocol', 'actor', 'action', 'target'];

function storeOptions(cmd: Command): Command {
  return cmd
    .option('--data-dir <dir>', 'data directory (env GATEHOUSE_DATA_DIR)', process.env.GATEHOUSE_DATA_DIR ?? './data')
    .option('--database-url <url>', 'PostgreSQL URL when the hub uses one')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['json', 'table']).default('json'));
}

/** A HubError (a bad filter) as the CLI's one-line error with its stable code. */
async function cliErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (isHubError(err)) throw new CliError(err.code, err.message, err.status);
    throw err;
  }
}

function printVerify(r: AuditVerifyResult, format: OutputFormat): void {
  if (format === 'json') {
    print(r, 'json', []);
    return;
  }
  const start = r.start === null ? '' : r.start.from === 'genesis' ? 'seq 1 (genesis)' : `seq ${r.start.seq} (after retention; anchored at its prevHash)`;
  print(
    [
      { field: 'status', value: r.ok ? 'intact' : 'BROKEN' },
      { field: 'checked', value: r.checked },
      { field: 'firstSeq', value: r.firstSeq },
      { field: 'lastSeq', value: r.lastSeq },
      { field: 'start', value: start },
      { field: 'checkpointSeq', value: r.checkpointSeq },
      { field: 'lastHash', value: r.lastHash },
    ],
    'table',
    ['field', 'value'],
  );
  if (r.problems.length > 0) {
    process.stdout.write('\n');
    print(r.problems, 'table', ['seq', 'kind', 'detail']);
  }
}

export function registerAuditLog(program: Command): void {
  const audit = program.command('audit-log').description('the tamper-evident audit log of auth decisions and changes');

  storeOptions(audit.command('list').description('audit entries, newest first'))
    .option('--from <time>', 'from this time on: ISO-8601, ms since the epoch, or relative (-15m, -1h, -7d)')
    .option('--to <time>', 'before this time (same forms)')
    .option('--identity <id>', 'one device, module (device/module), policy or registration')
    .addOption(new Option('--outcome <outcome>', 'auth decisions that succeeded or failed').choices(['success', 'failure']))
    .addOption(new Option('--type <type>', 'auth decisions or changes').choices(['auth', 'change']))
    .option('--actor <actor>', 'changes made by policy:NAME, operator:ID, cli:USER or hub')
    .option('--limit <n>', 'at most this many, 1-1000', '100')
    .option('--before <seq>', 'only entries older than this seq (the next of the previous page)')
    .action(async (o: ListOpts) => {
      const { store } = await openStoreFor(o.dataDir, o.databaseUrl);
      try {
        const { from, to, identity, outcome, type, actor, limit, before } = o;
        const page = await cliErrors(async () =>
          queryAuditLog(store.audit, parseAuditFilters({ from, to, identity, outcome, type, actor, limit, before }, Date.now())),
        );
        if (o.output === 'table') {
          print(page.entries, 'table', LIST_COLUMNS);
          if (page.next !== null) process.stderr.write(`more: --before ${page.next}\n`);
        } else {
          print(page, 'json', []);
        }
      } finally {
        await store.close();
      }
    });

  storeOptions(audit.command('verify').description('check the hash chain; exit code 1 when a row was edited, removed or added'))
    .action(async (o: StoreOpts) => {
      const { store } = await openStoreFor(o.dataDir, o.databaseUrl);
      let result: AuditVerifyResult;
      try {
        result = await verifyAuditChain(store.audit, store);
      } finally {
        await store.close();
      }
      printVerify(result, o.output);
      const first = result.problems[0];
      if (first !== undefined) {
        const more = result.problems.length > 1 ? ` (and ${result.problems.length - 1} more problem${result.problems.length > 2 ? 's' : ''})` : '';
        throw new CliError('AuditLogNotIntact', `the audit log is not intact: seq ${first.seq} ${first.kind}: ${first.detail}${more}`);
      }
    });
}
