/**
 * `gatehouse audit`: the posture audit of a hub, read from its data dir (or PostgreSQL). Table or
 * JSON; exit code 2 when any finding is high severity, so CI can gate on it.
 */
import { Option, type Command } from 'commander';
import { openStoreFor } from '../connection.js';
import { renderTable } from '../output.js';
import { runPostureAudit } from '../../posture/posture-source.js';
import { usage } from '../errors.js';

/** The exit code that tells CI a high-severity finding exists. */
export const HIGH_FINDING_EXIT = 2;

export function registerAudit(program: Command, setExitCode: (code: number) => void): void {
  program
    .command('audit')
    .description('posture audit: SAS and TLS settings, IP filter, shared keys and certificates, expiring and revoked certificates, symmetric-key groups, least privilege; exit 2 on a high finding')
    .option('--data-dir <dir>', 'data directory', process.env.GATEHOUSE_DATA_DIR ?? './data')
    .option('--database-url <url>', 'PostgreSQL URL when the hub uses one')
    .option('--expiring-days <n>', 'certificates expiring within this many days are findings', '30')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['json', 'table']).default('table'))
    .action(async (o: { dataDir: string; databaseUrl?: string; expiringDays: string; output: 'json' | 'table' }) => {
      const days = Number(o.expiringDays);
      if (!Number.isInteger(days) || days < 0 || days > 3650) throw usage('--expiring-days must be a whole number of days (0-3650)');
      const { store } = await openStoreFor(o.dataDir, o.databaseUrl);
      try {
        const findings = await runPostureAudit(store, { now: Date.now(), expiringDays: days });
        const high = findings.filter((f) => f.severity === 'high').length;
        if (o.output === 'json') {
          process.stdout.write(`${JSON.stringify({ findings, summary: { high, medium: findings.filter((f) => f.severity === 'medium').length, low: findings.filter((f) => f.severity === 'low').length } }, null, 2)}\n`);
        } else {
          process.stdout.write(`${renderTable(findings.map((f) => ({ severity: f.severity.toUpperCase(), id: f.id, finding: f.title, fix: f.fix })), ['severity', 'id', 'finding', 'fix'])}\n`);
          process.stdout.write(`\n${findings.length} findings, ${high} high\n`);
        }
        if (high > 0) setExitCode(HIGH_FINDING_EXIT);
      } finally {
        await store.close();
      }
    });
}
