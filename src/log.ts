import pino, { type Logger } from 'pino';

/**
 * JSON logs on stdout. Secrets never reach a log line: handlers log no headers or bodies, and
 * these paths are redacted as a second line of defence.
 */
export function createLogger(level: string, destination: pino.DestinationStream | undefined = undefined): Logger {
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
  return destination === undefined ? pino(options) : pino(options, destination);
}
