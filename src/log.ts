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
