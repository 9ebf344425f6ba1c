/**
 * Secure by default (docs/decisions/0002-secure-defaults.md): the hub listens on loopback unless
 * told otherwise and warns when it listens on every interface; `disableDeviceSAS` refuses every
 * SAS a device signs in with, a policy-signed token included; a default policy an operator
 * deleted stays deleted; and the hub's stdout is its JSON log, whatever the AMQP library prints.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { describe, it } from 'node:test';
import iothub from 'azure-iothub';
import rhea from 'rhea';
import { generateSasToken } from '../src/auth/sas.js';
import { createLogger, routeConsoleToLog } from '../src/log.js';
import { BIN, cli, removeDir, spawnReaped, startHubProcess, tempDir, testCaArgs } from './support/hub-process.js';
import { connectPacket, connectRaw, deviceToken } from './support/raw-mqtt.js';
import { policyKey } from './support/rest.js';

const { Registry } = iothub;

/** Resolves with whether a TCP connection to host:port was accepted. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** `gatehouse start` with the given extra flags (high ports, no --bind unless given), until ready. */
async function startRaw(extra: string[]): Promise<{ output(): string; stop(): Promise<number | null>; dataDir: string }> {
  const dataDir = tempDir('defaults');
  const { proc, output, exited } = spawnReaped([BIN, 'start', '--data-dir', dataDir, '--log-level', 'warn', ...testCaArgs(), ...extra]);
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`not ready in 30 s:\n${output()}`)), 30_000);
    proc.stdout?.on('data', () => {
      if (/ready/i.test(output())) {
        clearTimeout(timer);
        res();
      }
    });
    void exited.then(() => rej(new Error(`exited before ready:\n${output()}`)));
  });
  return {
    output,
    dataDir,
    async stop() {
      proc.kill('SIGTERM');
      return exited;
    },
  };
}

/** pino writes asynchronously: a line logged before `ready` may arrive after it. */
async function waitFor(check: () => boolean, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

function jsonLines(text: string): Array<{ level: number; event?: string; msg: string; bind?: string; text?: string }> {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: number; event?: string; msg: string });
}

describe('listen address', () => {
  it('listens on loopback by default, not on every interface', async () => {
    const ports = { https: 31443, mqtt: 31883, amqp: 31671 }; // below the ephemeral range (32768-60999): no outgoing connection holds them
    const hub = await startRaw(['--hostname', '127.0.0.1', '--https-port', String(ports.https), '--mqtt-port', String(ports.mqtt), '--amqp-port', String(ports.amqp)]);
    try {
      assert.match(hub.output(), /\(bind 127\.0\.0\.1,/);
      for (const port of Object.values(ports)) {
        assert.equal(await accepts('127.0.0.1', port), true, `127.0.0.1:${port}`);
        assert.equal(await accepts('127.0.75.1', port), false, `another local address reaches port ${port}`);
      }
    } finally {
      assert.equal(await hub.stop(), 0);
      removeDir(hub.dataDir);
    }
    assert.deepEqual(jsonLines(hub.output()).filter((l) => l.event === 'listen.all-interfaces'), []);
  });

  it('warns when told to listen on every interface', async () => {
    const hub = await startRaw(['--bind', '0.0.0.0', '--hostname', '127.0.75.1', '--https-port', '31444', '--mqtt-port', '31884', '--amqp-port', '31672']);
    try {
      assert.equal(await accepts('127.0.75.1', 31444), true);
      await waitFor(() => hub.output().includes('listen.all-interfaces'));
      const warnings = jsonLines(hub.output()).filter((l) => l.event === 'listen.all-interfaces');
      assert.equal(warnings.length, 1, hub.output());
      assert.equal(warnings[0]?.level, 40);
      assert.equal(warnings[0]?.bind, '0.0.0.0');
    } finally {
      assert.equal(await hub.stop(), 0);
      removeDir(hub.dataDir);
    }
  });
});

describe('device SAS and default policies', () => {
  it('disableDeviceSAS refuses a token signed with the device policy, and drops a live session on one', async () => {
    const host = '127.0.75.2';
    const hub = await startHubProcess({ address: host });
    try {
      const ca = readFileSync(hub.caFile, 'utf8');
      await Registry.fromConnectionString(hub.connectionString).create({ deviceId: 'signed-by-policy' });
      const policySigned = () =>
        generateSasToken({ resource: `${host}/devices/signed-by-policy`, key: policyKey(hub.dataDir, 'device'), keyName: 'device', expiry: Math.floor(Date.now() / 1000) + 600 });
      const live = await connectRaw(host, ca, connectPacket(host, 'signed-by-policy', policySigned()));
      assert.equal(live.code, 0, 'allowed while device SAS is on');

      const set = cli(['settings', 'set', '--disable-device-sas', 'true', '--data-dir', hub.dataDir]);
      assert.equal(set.status, 0, set.stderr);
      const dropped = await Promise.race([live.client.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))]);
      assert.equal(dropped, true, 'the live session on a policy-signed token is dropped when the setting is applied');

      const refused = await connectRaw(host, ca, connectPacket(host, 'signed-by-policy', policySigned()));
      assert.equal(refused.code, 4, 'a policy-signed device token is device SAS too');
      await refused.client.closed;
    } finally {
      await hub.stop();
      removeDir(hub.dataDir);
    }
  });

  it('a default policy the operator deleted is not created again at the next start', async () => {
    const host = '127.0.75.3';
    const first = await startHubProcess({ address: host });
    const names = () => (JSON.parse(cli(['policy', 'list', '--data-dir', first.dataDir]).stdout) as Array<{ keyName: string }>).map((p) => p.keyName);
    try {
      assert.ok(names().includes('device'), 'a new hub has the device policy, as Azure does');
      const del = cli(['policy', 'delete', 'device', '--data-dir', first.dataDir]);
      assert.equal(del.status, 0, del.stderr);
      assert.equal(await first.stop(), 0);
      const second = await startHubProcess({ address: host, dataDir: first.dataDir });
      try {
        assert.ok(!names().includes('device'), `deleted, and it stays deleted: ${names().join(', ')}`);
        assert.ok(names().includes('iothubowner'));
      } finally {
        assert.equal(await second.stop(), 0);
      }
    } finally {
      removeDir(first.dataDir);
    }
  });
});

describe('log output', () => {
  it('library console lines are log lines, at most 20 a second, then one line counts the rest', () => {
    const lines: Array<{ level: number; event?: string; method?: string; msg: string; suppressed?: number }> = [];
    const sink = { write: (l: string) => void lines.push(JSON.parse(l) as (typeof lines)[number]) };
    const saved = { log: console.log, info: console.info, debug: console.debug, trace: console.trace, warn: console.warn, error: console.error };
    let t = 1_000_000;
    try {
      routeConsoleToLog(createLogger('info', sink), () => t);
      for (let i = 0; i < 25; i++) console.error('[connection-1] error on read: %s', `x${i}`, 'y'.repeat(1000));
      t += 1000;
      console.warn('next second');
    } finally {
      Object.assign(console, saved);
    }
    assert.equal(lines.length, 22);
    assert.deepEqual(lines[0] && [lines[0].level, lines[0].event, lines[0].method, lines[0].msg.length], [40, 'library.console', 'error', 500]);
    assert.match(lines[0]?.msg ?? '', /^\[connection-1\] error on read: x0 y+$/);
    assert.equal(lines[19]?.msg.startsWith('[connection-1] error on read: x19 '), true);
    assert.deepEqual(lines[20] && [lines[20].suppressed, lines[20].msg], [5, '5 more library console lines left out']);
    assert.equal(lines[21]?.msg, 'next second');
  });

  it("malformed AMQP messages leave only JSON on stdout: the AMQP library's complaints are log lines", async () => {
    const host = '127.0.75.4';
    const hub = await startHubProcess({ address: host });
    let stdout = '';
    let stderr = '';
    hub.proc.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
    hub.proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    try {
      const ca = readFileSync(hub.caFile, 'utf8');
      const conn = await new Promise<rhea.Connection>((resolve, reject) => {
        const c = rhea.create_container().connect({ host, port: 5671, transport: 'tls', ca, reconnect: false } as never);
        c.once('connection_open', () => resolve(c));
        c.once('disconnected', (ctx: rhea.EventContext & { error?: Error }) => reject(ctx.error ?? new Error('disconnected')));
      });
      const cbs = conn.open_sender('$cbs');
      await new Promise<void>((resolve) => cbs.once('sendable', () => resolve()));
      // Not a message: a bare string, then a section with a descriptor AMQP does not define.
      cbs.send(Buffer.from([0xa1, 0x05, ...Buffer.from('hello')]) as never, undefined, 0);
      cbs.send(Buffer.from([0x00, 0x53, 0x99, 0x40]) as never, undefined, 0);
      // The hub has read both once a later exchange on the same connection completes.
      const probe = conn.open_receiver('$cbs');
      await new Promise<void>((resolve) => probe.once('receiver_open', () => resolve()));
      await waitFor(() => stdout.includes('did not recognise message section'));
      conn.close();

      assert.equal(stderr, '', 'nothing on stderr');
      const lines = stdout.split('\n').filter((l) => l !== '');
      for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `not JSON: ${line}`);
      const routed = jsonLines(stdout).filter((l) => l.event === 'library.console');
      assert.ok(routed.some((l) => /expected described message section/.test(l.msg)), stdout);
      assert.ok(routed.some((l) => /did not recognise message section/.test(l.msg)), stdout);
    } finally {
      await hub.stop();
      removeDir(hub.dataDir);
    }
  });
});
