/**
 * Logs: one JSON object per line on stderr, so the status line owns stdout. Fields whose names
 * say "secret" are never written, whatever a caller passes: keys, passwords, connection strings.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const SECRET_NAME = /(password|passphrase|key|secret|token|connectionstring|sig)/i;

export function redact(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (SECRET_NAME.test(k)) out[k] = '[redacted]';
    else if (typeof v === 'string') out[k] = v.replace(/SharedAccessKey=[^;]+/gi, 'SharedAccessKey=[redacted]').replace(/sig=[^&\s]+/gi, 'sig=[redacted]');
    else out[k] = v;
  }
  return out;
}

export function jsonLogger(write: (line: string) => void = (l) => process.stderr.write(l), base: Record<string, unknown> = {}): Logger {
  const emit = (level: Level, msg: string, fields: Record<string, unknown> = {}) => write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...base, ...redact(fields) })}\n`);
  return { info: (m, f) => emit('info', m, f), warn: (m, f) => emit('warn', m, f), error: (m, f) => emit('error', m, f) };
}
