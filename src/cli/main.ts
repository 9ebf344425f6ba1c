import { Command } from 'commander';
import { registerStart } from './commands/start.js';
import { registerInfo } from './commands/info.js';
import { registerDevice } from './commands/device.js';
import { registerTwin } from './commands/twin.js';
import { registerPolicy } from './commands/policy.js';
import { registerConsumerGroup } from './commands/consumer-group.js';
import { registerConfiguration } from './commands/configuration.js';
import { registerJob } from './commands/job.js';
import { registerMessageRoute } from './commands/message-route.js';
import { registerMessageEndpoint, registerMessageEnrichment } from './commands/message-endpoint.js';
import { registerSas } from './commands/sas.js';
import { registerMonitorEvents } from './commands/monitor-events.js';
import { registerC2d } from './commands/c2d.js';
import { registerCa } from './commands/ca.js';
import { registerCert } from './commands/cert.js';
import { registerEst } from './commands/est.js';
import { registerFactory } from './commands/factory.js';
import { CliError, errorLine, isCommanderOutput, toCliError } from './errors.js';
import { registerDps } from './commands/dps.js';
import { registerAuditLog } from './commands/audit-log.js';
import { registerAlert } from './commands/alert.js';
import { registerSecurity } from './commands/security.js';
import { registerAudit } from './commands/audit.js';
import { registerModule } from './commands/module.js';
import { registerInvoke } from './commands/invoke.js';
import { registerPnp } from './commands/pnp.js';
import { registerCluster } from './commands/cluster.js';

export function buildProgram(setExitCode: (code: number) => void = () => undefined): Command {
  const program = new Command('gatehouse')
    .description('Self-hosted IoT hub speaking the Azure IoT Hub and DPS wire protocols')
    .version('0.1.0')
    .exitOverride()
    // Commander's own error lines are printed by main() as `error: <Code>: <message>`, and so is
    // the help it would dump on stderr for a missing subcommand; --help and --version still go
    // to stdout as commander writes them. Subcommands inherit these settings.
    .configureOutput({ outputError: () => undefined, writeErr: () => undefined })
    .showSuggestionAfterError();
  registerStart(program);
  registerInfo(program);
  registerDevice(program);
  registerModule(program);
  registerTwin(program);
  registerInvoke(program);
  registerPnp(program);
  registerPolicy(program);
  registerConsumerGroup(program);
  registerConfiguration(program);
  registerJob(program);
  registerMessageRoute(program);
  registerMessageEndpoint(program);
  registerMessageEnrichment(program);
  registerSas(program);
  registerDps(program);
  registerMonitorEvents(program);
  registerC2d(program);
  registerCa(program);
  registerCert(program);
  registerEst(program);
  registerFactory(program);
  registerAuditLog(program);
  registerAlert(program);
  registerSecurity(program);
  registerAudit(program, setExitCode);
  registerCluster(program);
  return program;
}

/**
 * A reader that goes away (`gatehouse audit | head -3`) ends the command quietly, as it does for
 * every Unix tool: EPIPE on stdout or stderr is an exit, not a stack trace.
 */
export function exitQuietlyOnClosedPipe(stream: NodeJS.WriteStream, exit: (code: number) => void = (c) => process.exit(c)): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') exit(0);
    else throw err;
  });
}

/** `gatehouse dps` alone: one line naming the commands it takes, instead of its help on stderr. */
function missingSubcommand(cmd: Command): CliError {
  const path: string[] = [];
  for (let c: Command | null = cmd; c !== null; c = c.parent) path.unshift(c.name());
  const name = path.join(' ');
  const subs = cmd.commands.filter((c) => c.name() !== 'help').map((c) => c.name());
  return new CliError('ArgumentMissing', `'${name}' needs a command: ${subs.join(', ')} (${name} --help)`);
}

/** Runs the CLI; returns the exit code. Errors are one line on stderr with a stable code. */
export async function main(argv: string[]): Promise<number> {
  exitQuietlyOnClosedPipe(process.stdout);
  exitQuietlyOnClosedPipe(process.stderr);
  let exitCode = 0;
  const program = buildProgram((code) => {
    exitCode = code;
  });
  // The command whose help commander shows (on stderr when its subcommand is missing).
  let helpOf: Command | undefined;
  program.on('beforeAllHelp', (ctx: { command: Command }) => {
    helpOf = ctx.command;
  });
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (err) {
    if (isCommanderOutput(err) && err.exitCode !== 0 && helpOf !== undefined) {
      const e = missingSubcommand(helpOf);
      process.stderr.write(errorLine(e));
      return e.exitCode;
    }
    if (isCommanderOutput(err)) return err.exitCode;
    const e = toCliError(err);
    process.stderr.write(errorLine(e));
    return e.exitCode;
  }
}
