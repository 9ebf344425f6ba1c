/**
 * The CLI's one error line, `error: <StableCode>: <message>`, and its exit codes: 2 when the
 * command line was refused before anything was sent (unknown command or option, a missing or
 * invalid argument, JSON that does not parse, a file that cannot be read), 1 for everything after
 * (the hub refused, the hub cannot be reached, TLS). The hub's own refusals keep the hub's code
 * (docs/errors.md); the codes only the CLI raises are CLI_ERROR_CODES, listed there too.
 */
import { CommanderError } from 'commander';
import { isHubError } from '../core/errors.js';
import { StartupError } from '../hub/startup.js';

export const CLI_ERROR_CODES = {
  UnknownCommand: { exit: 2, summary: 'No such command; the message suggests the nearest one.' },
  UnknownOption: { exit: 2, summary: 'The command has no such option; the message suggests the nearest one.' },
  ArgumentMissing: { exit: 2, summary: 'A required argument or option, or the value of an option, is missing.' },
  ArgumentInvalid: { exit: 2, summary: 'An argument or option value is not allowed, or options that exclude each other were given together.' },
  JsonInvalid: { exit: 2, summary: 'An option that takes JSON (inline or a file) holds something that does not parse.' },
  FileUnreadable: { exit: 2, summary: 'A file named on the command line cannot be read.' },
  ConfigInvalid: { exit: 2, summary: '`gatehouse start`/`init`: a setting from the flags or the environment is invalid; the message lists every one.' },
  ConnectionStringInvalid: { exit: 2, summary: 'The connection string lacks HostName, SharedAccessKeyName or SharedAccessKey, or is malformed.' },
  StartupFailed: { exit: 1, summary: '`gatehouse start`/`init` could not start: a port in use, a data dir that cannot be written, a master key that does not match.' },
  HubNotFound: { exit: 1, summary: 'The data dir holds no hub (never started), or no policy to use; pass --connection-string.' },
  ConnectionFailed: { exit: 1, summary: 'The hub cannot be reached at the address from the data dir or connection string.' },
  TlsCertificateUntrusted: { exit: 1, summary: "The hub's TLS certificate is not signed by a trusted CA; pass the hub's CA with --ca-file." },
  TlsHostnameMismatch: { exit: 1, summary: "The hub's TLS certificate does not name the host in the connection string." },
  TlsFailed: { exit: 1, summary: 'The TLS handshake failed (protocol version, cipher, or the hub closed it).' },
  EnrollmentAlreadyExists: { exit: 1, summary: '`dps enrollment[-group] create`: the id is taken (the service would overwrite it); use `update`.' },
  Timeout: { exit: 1, summary: 'What the command waited for did not happen in --timeout.' },
  AuditLogNotIntact: { exit: 1, summary: '`gatehouse audit-log verify`: the hash chain is broken; the message names the first bad seq.' },
  ImportIncomplete: { exit: 1, summary: '`gatehouse device import`: some lines could not be applied; they are listed in the errors file the message names.' },
  InternalError: { exit: 1, summary: 'An unexpected failure inside the CLI; the message says what.' },
} as const;

export type CliErrorCode = keyof typeof CLI_ERROR_CODES;

export class CliError extends Error {
  constructor(
    /** A CLI code, a hub code (docs/errors.md), or `Http<status>` for an answer that was not the hub's. */
    readonly code: string,
    message: string,
    /** The HTTP status when the hub answered. */
    readonly status?: number,
    readonly exitCode: number = status === undefined && code in CLI_ERROR_CODES ? CLI_ERROR_CODES[code as CliErrorCode].exit : 1,
  ) {
    super(message);
    this.name = 'CliError';
  }

  /** The hub's answer, parsed, when it answered (a partly failed bulk request lists its errors there). */
  body?: unknown;
}

/** The command line is wrong: exit 2, nothing was sent. */
export function usage(message: string, code: 'ArgumentInvalid' | 'ArgumentMissing' | 'JsonInvalid' | 'FileUnreadable' = 'ArgumentInvalid'): CliError {
  return new CliError(code, message);
}

const COMMANDER_CODES: Readonly<Record<string, CliErrorCode>> = {
  'commander.unknownCommand': 'UnknownCommand',
  'commander.unknownOption': 'UnknownOption',
  'commander.missingArgument': 'ArgumentMissing',
  'commander.optionMissingArgument': 'ArgumentMissing',
  'commander.missingMandatoryOptionValue': 'ArgumentMissing',
  'commander.invalidArgument': 'ArgumentInvalid',
  'commander.excessArguments': 'ArgumentInvalid',
  'commander.conflictingOption': 'ArgumentInvalid',
};

/** Help and version are not errors: commander printed them and they keep its exit code. */
export function isCommanderOutput(err: unknown): err is CommanderError {
  return err instanceof CommanderError && (err.code === 'commander.helpDisplayed' || err.code === 'commander.help' || err.code === 'commander.version');
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** Any failure as the CLI reports it: a code, one line of message, an exit code. */
export function toCliError(err: unknown): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof CommanderError) {
    const code = COMMANDER_CODES[err.code] ?? 'ArgumentInvalid';
    return new CliError(code, oneLine(err.message.replace(/^error:\s*/, '')));
  }
  if (isHubError(err)) return new CliError(err.code, err.message, err.status, 1);
  if (err instanceof StartupError) return new CliError('StartupFailed', oneLine(err.message));
  if (err instanceof Error) {
    const sys = (err as NodeJS.ErrnoException).code;
    // A system error (EACCES, EADDRINUSE, ...) keeps its POSIX name, which is stable.
    if (typeof sys === 'string' && /^E[A-Z0-9_]+$/.test(sys)) return new CliError(sys, oneLine(err.message), undefined, 1);
    return new CliError('InternalError', oneLine(err.message));
  }
  return new CliError('InternalError', oneLine(String(err)));
}

export function errorLine(err: CliError): string {
  return `error: ${err.code}: ${oneLine(err.message)}\n`;
}

/** The TLS verification failures that mean "this CA did not sign the hub's certificate". */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);

export interface Endpoint {
  connectHost: string;
  port: number;
  /** Where the trusted CA came from, for the message: a file, or undefined for the system store. */
  caSource?: string | undefined;
}

/**
 * A failed request as one line that says what to do: which CA file to pass when the hub's
 * certificate is not trusted, the address when nothing answers.
 */
export function networkError(at: Endpoint, err: NodeJS.ErrnoException): CliError {
  const where = `${at.connectHost}:${at.port}`;
  const code = err.code ?? '';
  const trusted = at.caSource === undefined ? "Node's CA store (and NODE_EXTRA_CA_CERTS)" : at.caSource;
  if (UNTRUSTED.has(code)) {
    return new CliError(
      'TlsCertificateUntrusted',
      `the certificate of the hub at ${where} is not signed by a CA in ${trusted} (${code}); pass --ca-file with the CA that issued it (\`gatehouse info --json\` prints it as caFile, by default <data-dir>/tls/ca.pem) or set GATEHOUSE_CA_FILE`,
    );
  }
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    return new CliError('TlsCertificateUntrusted', `the certificate of the hub at ${where} is outside its validity (${code}); restart the hub to reissue it`);
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new CliError('TlsHostnameMismatch', `the certificate of the hub at ${where} does not name this host (${oneLine(err.message)}); use the HostName the hub was started with (--hostname)`);
  }
  if (code.startsWith('ERR_SSL') || code === 'EPROTO' || code.startsWith('ERR_TLS')) {
    return new CliError('TlsFailed', `TLS with the hub at ${where} failed: ${oneLine(err.message)}`);
  }
  return new CliError('ConnectionFailed', `cannot reach ${where}: ${code === '' ? oneLine(err.message) : code}`);
}

/**
 * The hub's hints name API fields ("pass force"); a person at the CLI needs the flag ("pass
 * --force"). Rewrites `pass <field>` for each field of `hints` in a CliError's message.
 */
export function withFlagHints(err: unknown, hints: Readonly<Record<string, string>>): unknown {
  if (!(err instanceof CliError)) return err;
  let message = err.message;
  for (const [field, flag] of Object.entries(hints)) message = message.replace(new RegExp(`\\b([Pp]ass) ${field}\\b`, 'g'), `$1 ${flag}`);
  return message === err.message ? err : new CliError(err.code, message, err.status, err.exitCode);
}
