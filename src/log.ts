import { format } from 'node:util';
import pino, { type Logger } from 'pino';
import pinoPretty from 'pino-pretty';

/** `json`: one JSON object per line, for machines; `pretty`: pino-pretty's readable lines, for a person. */
export type LogFormat = 'json' | 'pretty';
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

/** Pretty on a terminal, JSON everywhere else (pipes, files, log shippers, tests). */
export function defaultLogFormat(stdout: { isTTY?: boolean } = process.stdout): LogFormat {
  return stdout.isTTY === true ? 'pretty' : 'json';
}

/**
 * Logs on stdout, JSON or pretty. Secrets never reach a log line: handlers log no headers or
 * bodies, and these paths are redacted as a second line of defence (before either format).
 * Pretty goes through pino-pretty in this process (synchronous, so a log line and the `ready`
 * line on stdout keep their order), not through a worker-thread transport.
 */
export function createLogger(level: string, destination: pino.DestinationStream | undefined = undefined, format: LogFormat = 'json'): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: 'gatehouse' },
    redact: {
      paths: [
        'authorization',
        '*.authorization',
        'req.headers.authorization',
        'primaryKey',
        'secondaryKey',
        '*.primaryKey',
        '*.secondaryKey',
        'key',
        'password',
        'connectionString',
      ],
      censor: '[redacted]',
    },
  };
  if (format === 'pretty') {
    const stream = pinoPretty({
      sync: true,
      destination: destination ?? 1,
      // Colour only on a terminal (pino-pretty's own check also turns it on whenever CI is set).
      colorize: destination === undefined && process.stdout.isTTY === true,
      translateTime: 'SYS:standard',
      ignore: 'pid,hostname,service',
      singleLine: true,
    });
    return pino(options, stream);
  }
  return destination === undefined ? pino(options) : pino(options, destination);
}

/** At most this many library lines per second reach the log; the rest are counted. */
const CONSOLE_LINES_PER_SECOND = 20;

/**
 * Libraries that print with `console.*` write into the log (JSON or pretty) instead of raw lines on stdout and
 * stderr: rhea prints "WARNING: did not recognise message section ..." and the like when a peer
 * sends something it does not understand. A peer controls part of that text and how often it
 * comes, so a line is cut at 500 characters (pino escapes it) and at most 20 a second are logged,
 * then one line says how many were left out. For the `start` process only: it replaces the
 * process's console.
 */
export function routeConsoleToLog(logger: Logger, now: () => number = Date.now): void {
  const log = logger.child({ component: 'console' });
  let windowStart = 0;
  let inWindow = 0;
  let suppressed = 0;
  const flush = () => {
    if (suppressed > 0) log.warn({ event: 'library.console', suppressed }, `${suppressed} more library console lines left out`);
    suppressed = 0;
  };
  const write = (level: 'debug' | 'info' | 'warn', method: string) => (...args: unknown[]) => {
    const t = now();
    if (t - windowStart >= 1000) {
      flush();
      windowStart = t;
      inWindow = 0;
    }
    if (++inWindow > CONSOLE_LINES_PER_SECOND) {
      if (suppressed++ === 0) setTimeout(flush, 1000).unref();
      return;
    }
    log[level]({ event: 'library.console', method }, format(...args).slice(0, 500));
  };
  console.log = write('info', 'log');
  console.info = write('info', 'info');
  console.debug = write('debug', 'debug');
  console.trace = write('debug', 'trace');
  console.warn = write('warn', 'warn');
  console.error = write('warn', 'error');
}
