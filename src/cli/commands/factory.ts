/**
 * `gatehouse factory run`: the factory line (src/factory/station.ts). The station authenticates
 * with a factory credential (`gatehouse est credential create`), never with hub rights.
 */
import { progressPrinter } from '../progress.js';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { runFactory, type DeviceKeyAlg, type FactoryProgress } from '../../factory/station.js';
import { readFileArg } from '../connection.js';
import { positiveInt } from './ca.js';
import { usage } from '../errors.js';

interface RunOpts {
  group: string;
  count: number;
  out: string;
  host: string;
  idScope: string;
  caFile?: string;
  credential?: string;
  password?: string;
  clientCert?: string;
  clientKey?: string;
  prefix?: string;
  first?: number;
  alg: DeviceKeyAlg;
  rate?: number;
  concurrency?: number;
  json?: boolean;
}

function positiveNumber(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

/** A bar on a terminal, a plain line per tenth otherwise (logs, CI). */
function factoryProgress(tty: boolean): (p: FactoryProgress) => void {
  const draw = progressPrinter(tty);
  return (p) => draw(p.done, p.total, `${p.done}/${p.total} devices, ${p.issued} issued, ${p.resumed} already done, ${p.failed} failed, ${p.perSecond.toFixed(1)}/s`, p.perSecond);
}

export function registerFactory(program: Command): void {
  const factory = program.command('factory').description('the factory line: devices make keys and CSRs, the station enrolls them over EST');
  factory
    .command('run')
    .description('enroll N devices into an enrollment group and write their bundles and a manifest (resumable)')
    .requiredOption('--group <id>', 'the enrollment group (its EST label)')
    .requiredOption('--count <n>', 'how many devices', positiveInt)
    .requiredOption('--out <dir>', 'where bundles and the manifest go; run again with the same dir to resume')
    .requiredOption('--host <host[:port]>', 'the hub (EST and the provisioning host written into bundles)')
    .requiredOption('--id-scope <scope>', 'the provisioning ID scope written into bundles')
    .option('--ca-file <file>', "CA certificate the hub's TLS certificate chains to")
    .option('--credential <id>', 'factory credential id (HTTP basic user)')
    .option('--password <password>', 'its password (or env GATEHOUSE_EST_PASSWORD)')
    .option('--client-cert <file>', 'station TLS client certificate (PEM), instead of a password')
    .option('--client-key <file>', 'its key (PEM)')
    .option('--prefix <prefix>', 'device id prefix (default: "<group>-")')
    .option('--first <n>', 'number of the first device (default 1)', positiveInt)
    .addOption(new Option('--alg <alg>', 'device key algorithm').choices(['p256', 'rsa2048']).default('p256'))
    .option('--rate <per-second>', 'at most this many devices per second', positiveNumber)
    .option('--concurrency <n>', 'devices in flight (default 8)', positiveInt)
    .option('--json', 'print the result as JSON')
    .action(async (o: RunOpts) => {
      const password = o.password ?? process.env.GATEHOUSE_EST_PASSWORD;
      if (o.credential !== undefined && password === undefined) throw usage('--credential needs --password or GATEHOUSE_EST_PASSWORD', 'ArgumentMissing');
      if ((o.clientCert === undefined) !== (o.clientKey === undefined)) throw usage('--client-cert and --client-key go together', 'ArgumentMissing');
      if (o.credential === undefined && o.clientCert === undefined) throw usage('give a factory credential: --credential and --password, or --client-cert and --client-key', 'ArgumentMissing');
      const result = await runFactory({
        group: o.group,
        count: o.count,
        out: o.out,
        host: o.host,
        idScope: o.idScope,
        alg: o.alg,
        ...(o.caFile === undefined ? {} : { ca: readFileArg(o.caFile, '--ca-file') }),
        ...(o.credential === undefined || password === undefined ? {} : { basic: { id: o.credential, password } }),
        ...(o.clientCert === undefined || o.clientKey === undefined ? {} : { clientCert: { cert: readFileArg(o.clientCert, '--client-cert'), key: readFileArg(o.clientKey, '--client-key') } }),
        ...(o.prefix === undefined ? {} : { prefix: o.prefix }),
        ...(o.first === undefined ? {} : { first: o.first }),
        ...(o.rate === undefined ? {} : { rate: o.rate }),
        ...(o.concurrency === undefined ? {} : { concurrency: o.concurrency }),
        onProgress: factoryProgress(process.stderr.isTTY === true),
      });
      const summary = {
        issued: result.issued,
        resumed: result.resumed,
        failed: result.failures.length,
        devices: result.manifest.length,
        seconds: Number(result.seconds.toFixed(2)),
        manifest: [`${o.out}/manifest.json`, `${o.out}/manifest.csv`],
        failures: result.failures.slice(0, 20),
      };
      process.stdout.write(o.json === true ? `${JSON.stringify(summary, null, 2)}\n` : `${summary.devices} devices in ${o.out} (${summary.issued} issued now, ${summary.resumed} from before, ${summary.failed} failed) in ${summary.seconds} s\n`);
      if (result.failures.length > 0) process.exitCode = 1;
    });
}
