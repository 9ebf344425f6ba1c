/**
 * Every CLI failure is one line, `error: <StableCode>: <message>`, exit 2 when the command line
 * was refused before anything was sent and 1 after (issue 15, item 18); hints name CLI flags. And
 * the hub's logs: JSON for machines, pino-pretty's readable lines with --log-format pretty (item 19).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CommanderError } from 'commander';
import { CLI_ERROR_CODES, networkError, toCliError } from '../src/cli/errors.js';
import { defaultLogFormat } from '../src/log.js';
import { cli, removeDir, ROOT, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';
import { makeRoot } from './support/pki.js';

const HOST = '127.0.88.1';
let hub: HubProcess;
let files: string;

/** Runs the CLI and checks the one error line and the exit code. */
function refused(args: string[], exit: number, line: RegExp, env: NodeJS.ProcessEnv = {}): string {
  const r = cli(args, env);
  assert.equal(r.status, exit, `gatehouse ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, line);
  assert.match(r.stderr, /^error: [A-Za-z0-9]+: [^\n]+\n$/, `exactly one line: ${JSON.stringify(r.stderr)}`);
  assert.equal(r.stdout, '');
  return r.stderr;
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  files = tempDir('cli-errors');
});

after(async () => {
  await hub.stop();
  removeDir(hub.dataDir);
  removeDir(files);
});

describe('the command line refused before anything is sent: exit 2', () => {
  it("commander's own errors: unknown command and option, missing and invalid arguments", () => {
    refused(['devcie', 'list'], 2, /^error: UnknownCommand: unknown command 'devcie' \(Did you mean device\?\)$/m);
    // A group without its subcommand: one line naming what it takes, not its help on stderr.
    refused(['dps'], 2, /^error: ArgumentMissing: 'gatehouse dps' needs a command: enrollment, enrollment-group, registration, compute-device-key, settings \(gatehouse dps --help\)$/m);
    refused(['device', 'list', '--dta-dir', hub.dataDir], 2, /^error: UnknownOption: unknown option '--dta-dir' \(Did you mean --data-dir\?\)$/m);
    refused(['device', 'show', '--data-dir', hub.dataDir], 2, /^error: ArgumentMissing: required option '-d, --device-id <id>' not specified$/m);
    refused(['device', 'show', '--data-dir', hub.dataDir, '-d'], 2, /^error: ArgumentMissing: option '-d, --device-id <id>' argument missing$/m);
    refused(['device', 'list', '--data-dir', hub.dataDir, '-o', 'xml'], 2, /^error: ArgumentInvalid: option '-o, --output <format>' argument 'xml' is invalid\. Allowed choices are json, table\.$/m);
    refused(['device', 'list', 'extra', '--data-dir', hub.dataDir], 2, /^error: ArgumentInvalid: too many arguments for 'list'/);
    refused(['settings', 'set', '--lockout', 'maybe', '--data-dir', hub.dataDir], 2, /^error: ArgumentInvalid: option '--lockout <bool>' argument 'maybe' is invalid\. --lockout must be true or false$/m);
  });

  it('invalid JSON, unreadable files, bad connection strings, bad configuration', () => {
    refused(['twin', 'update', '-d', 'x', '--desired', '{"a":', '--data-dir', hub.dataDir], 2, /^error: JsonInvalid: --desired is not valid JSON: /);
    refused(['device', 'list', '--data-dir', hub.dataDir, '--ca-file', join(files, 'missing.pem')], 2, /^error: FileUnreadable: --ca-file .*missing\.pem: ENOENT$/m);
    refused(['device', 'list', '--connection-string', 'HostName=x;SharedAccessKeyName=y'], 2, /^error: ConnectionStringInvalid: the connection string needs HostName, SharedAccessKeyName and SharedAccessKey$/m);
    refused(['device', 'list'], 2, /^error: ArgumentMissing: give --connection-string, set GATEHOUSE_CONNECTION_STRING, or give --data-dir$/m, { GATEHOUSE_CONNECTION_STRING: '' });
    refused(['start', '--data-dir', join(files, 'never'), '--https-port', 'abc', '--log-format', 'xml'], 2, /^error: ConfigInvalid: --https-port: https-port must be a number; --log-format: log-format must be json or pretty$/m);
  });
});

describe('after the command line: exit 1', () => {
  it('no hub in the data dir, nothing listening, the hub refuses', () => {
    refused(['device', 'list', '--data-dir', files], 1, /^error: HubNotFound: no hub has started in /);
    const key = Buffer.alloc(32).toString('base64');
    refused(['device', 'list', '--connection-string', `HostName=127.0.88.99;SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`], 1, /^error: ConnectionFailed: cannot reach 127\.0\.88\.99:443: ECONNREFUSED$/m);
    refused(['device', 'list', '--connection-string', `HostName=${HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`], 1, /^error: IotHubUnauthorizedAccess: Unauthorized$/m);
    refused(['device', 'show', '-d', 'nobody', '--data-dir', hub.dataDir], 1, /^error: DeviceNotFound: Device nobody not found$/m);
  });

  it("a hub certificate the CA file does not sign: says which CA file to pass", async () => {
    const other = await makeRoot('Some Other CA');
    const caFile = join(files, 'other-ca.pem');
    writeFileSync(caFile, other.certPem);
    const line = refused(['device', 'list', '--connection-string', hub.connectionString, '--ca-file', caFile], 1, /^error: TlsCertificateUntrusted: /);
    assert.ok(line.includes(`not signed by a CA in ${caFile}`), line);
    assert.ok(line.includes('pass --ca-file with the CA that issued it'), line);
    // The hub's own CA file (what `gatehouse info` prints) is the one that works.
    assert.equal(cli(['device', 'list', '--connection-string', hub.connectionString, '--ca-file', hub.caFile]).status, 0);
    // The same answer from the streaming commands, which open their own connections.
    refused(['monitor-events', '--connection-string', hub.connectionString, '--ca-file', caFile, '--timeout', '1'], 1, /^error: TlsCertificateUntrusted: /);
  });

  it("the hub's hints name the CLI flag, not the API field", () => {
    const legacy = refused(['settings', 'set', '--min-tls-version', '1.1', '--data-dir', hub.dataDir], 1, /^error: ArgumentInvalid: .*pass --allow-legacy-tls to set it anyway/);
    assert.doesNotMatch(legacy, /allowLegacyTls/);
    const lockout = refused(['settings', 'set', '--disable-local-auth', 'true', '--data-dir', hub.dataDir], 1, /^error: SettingsLockout: .*Pass --force to apply anyway\.$/m);
    assert.doesNotMatch(lockout, /Pass force/);
  });
});

describe('error codes are a contract', () => {
  it("docs/errors.md lists every code only the CLI raises, with its exit code", () => {
    const doc = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8');
    const documented = new Map<string, string>();
    for (const m of doc.matchAll(/^\| `(\w+)` \| exit (\d) \|/gm)) documented.set(m[1] ?? '', m[2] ?? '');
    for (const [code, info] of Object.entries(CLI_ERROR_CODES)) assert.equal(documented.get(code), String(info.exit), `docs/errors.md: ${code}`);
    assert.equal(documented.size, Object.keys(CLI_ERROR_CODES).length, 'docs/errors.md lists CLI codes that do not exist');
  });

  it('TLS failures are told apart; commander errors keep one line', () => {
    const at = { connectHost: 'hub.example', port: 443, caSource: undefined };
    const mismatch = networkError(at, Object.assign(new Error("Hostname/IP does not match certificate's altnames"), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }));
    assert.equal(mismatch.code, 'TlsHostnameMismatch');
    const expired = networkError(at, Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' }));
    assert.equal(expired.code, 'TlsCertificateUntrusted');
    const version = networkError(at, Object.assign(new Error('tlsv1 alert protocol version'), { code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' }));
    assert.equal(version.code, 'TlsFailed');
    const e = toCliError(new CommanderError(1, 'commander.unknownOption', "error: unknown option '--x'\n(Did you mean --y?)"));
    assert.deepEqual([e.code, e.message, e.exitCode], ['UnknownOption', "unknown option '--x' (Did you mean --y?)", 2]);
  });
});

describe('logs: --log-format pretty|json', () => {
  it('pretty: readable lines from pino-pretty, no JSON; json (and the default off a terminal): JSON lines', async () => {
    assert.equal(defaultLogFormat({ isTTY: true }), 'pretty');
    assert.equal(defaultLogFormat({ isTTY: false }), 'json');
    const run = async (address: string, extra: string[], env: NodeJS.ProcessEnv = {}) => {
      const h = await startHubProcess({ address, extraArgs: ['--log-level', 'info', ...extra], env });
      assert.equal(await h.stop(), 0);
      removeDir(h.dataDir);
      return h.output().split('\n').filter((l) => l.trim() !== '');
    };
    const pretty = await run('127.0.88.2', ['--log-format', 'pretty']);
    const prettyLogs = pretty.filter((l) => !/ready/.test(l));
    assert.ok(prettyLogs.some((l) => /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d{4}\] INFO: store opened/.test(l)), pretty.join('\n'));
    assert.ok(prettyLogs.some((l) => /INFO: stopped/.test(l)), pretty.join('\n'));
    for (const l of prettyLogs) assert.throws(() => JSON.parse(l), `not JSON: ${l}`);
    assert.ok(pretty.some((l) => /^Gatehouse ready: /.test(l)));

    for (const [address, extra, env] of [
      ['127.0.88.3', ['--log-format', 'json'], {}],
      ['127.0.88.4', [], {}],
      ['127.0.88.5', [], { GATEHOUSE_LOG_FORMAT: 'json' }],
    ] as const) {
      const lines = await run(address, [...extra], env);
      const logs = lines.filter((l) => !/^Gatehouse ready: /.test(l)).map((l) => JSON.parse(l) as { level: number; msg: string; service: string });
      assert.ok(logs.some((l) => l.msg === 'store opened' && l.level === 30 && l.service === 'gatehouse'), lines.join('\n'));
    }
  });
});
