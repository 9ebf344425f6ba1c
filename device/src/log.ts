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

/** Words that make a field name secret: `primaryKey`, `setup_password`, `sasToken`, `sig`. */
const SECRET_WORDS = new Set(['password', 'passphrase', 'key', 'secret', 'token', 'sig', 'signature', 'sas', 'credential', 'credentials']);
/** Whole names that are secret though none of their words is: `connectionString`. */
const SECRET_NAMES = new Set(['connectionstring']);

/** The words of a field name: camelCase, snake_case, kebab-case and dotted names split apart. */
function words(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .split(/[^A-Za-z0-9]+/)
    .filter((w) => w !== '')
    .map((w) => w.toLowerCase());
}

export function isSecretName(name: string): boolean {
  return SECRET_NAMES.has(name.toLowerCase().replace(/[^a-z0-9]/g, '')) || words(name).some((w) => SECRET_WORDS.has(w));
}

/** SAS material inside a value: a connection string's key, a token's signature (its own parameter, not "design="). */
function redactValue(v: string): string {
  return v.replace(/SharedAccessKey=[^;]+/gi, 'SharedAccessKey=[redacted]').replace(/(^|[?&\s])sig=[^&\s]+/gi, '$1sig=[redacted]');
}

export function redact(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (isSecretName(k)) out[k] = '[redacted]';
    else if (typeof v === 'string') out[k] = redactValue(v);
    else out[k] = v;
  }
  return out;
}

export function jsonLogger(write: (line: string) => void = (l) => process.stderr.write(l), base: Record<string, unknown> = {}): Logger {
  const emit = (level: Level, msg: string, fields: Record<string, unknown> = {}) => write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...base, ...redact(fields) })}\n`);
  return { info: (m, f) => emit('info', m, f), warn: (m, f) => emit('warn', m, f), error: (m, f) => emit('error', m, f) };
}
