/**
 * The bus conformance suite on the NATS server at 127.0.0.1:4222 (npm test starts one when none
 * answers; GATEHOUSE_TEST_NATS_URL points elsewhere), plus what only the NATS bus does: URLs and
 * credentials, and a clear error when the server is not there.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { connect as tcpConnect } from 'node:net';
import { busConformance } from '../src/bus/bus.case.js';
import { connectNatsBus } from '../src/bus/nats/nats-bus.js';
import { parseNatsUrl, redactNatsUrl } from '../src/bus/nats/nats-options.js';
import { loadConfig } from '../src/config/schema.js';

const url = process.env.GATEHOUSE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

busConformance('NATS', {
  prefix: `t${randomUUID().replace(/-/g, '')}`,
  open: (onHandlerError) => connectNatsBus({ nodeId: `node-${randomUUID().slice(0, 8)}`, url, onHandlerError }),
});

describe('NATS bus options', () => {
  it('takes user and password, or a token, from the URL and keeps them out of what it logs', () => {
    assert.deepEqual(parseNatsUrl('nats://alice:s%40cret@nats.example:4333'), { server: 'nats.example:4333', tls: false, user: 'alice', pass: 's@cret' });
    assert.deepEqual(parseNatsUrl('tls://tok123@nats.example'), { server: 'nats.example:4222', tls: true, token: 'tok123' });
    assert.equal(redactNatsUrl('nats://alice:secret@nats.example:4333'), 'nats://nats.example:4333');
  });

  it('refuses a URL that is not nats:// or tls://, without repeating its secret', () => {
    for (const bad of ['http://u:hunter2@h:4222', 'nats://h:4222/path', 'nats://:hunter2@h', 'not a url']) {
      assert.throws(() => parseNatsUrl(bad), (err: Error) => !err.message.includes('hunter2'), bad);
    }
  });

  it('says which server did not answer, and not the password', async () => {
    await assert.rejects(connectNatsBus({ nodeId: 'n', url: 'nats://bob:hunter2@127.0.0.1:1', connectTimeoutMs: 2000 }), (err: Error) => {
      assert.match(err.message, /nats:\/\/127\.0\.0\.1:1/);
      assert.doesNotMatch(err.message, /hunter2/);
      return true;
    });
  });

  it('refuses a creds file that is not one, naming the file and not its content', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-creds-'));
    const file = join(dir, 'user.creds');
    writeFileSync(file, 'password=hunter2\n');
    await assert.rejects(connectNatsBus({ nodeId: 'n', url, credsFile: file }), (err: Error) => err.message.includes(file) && !err.message.includes('hunter2'));
  });

  it('validates --nats-url, --nats-creds and --nats-ca once, with the config, without echoing a password', () => {
    assert.equal(loadConfig({ natsUrl: 'nats://u:p@127.0.0.1:4222' }, {}).natsUrl, 'nats://u:p@127.0.0.1:4222');
    assert.equal(loadConfig({}, { GATEHOUSE_NATS_URL: 'tls://nats.example:4222', GATEHOUSE_NATS_CA: '/etc/ca.pem' }).natsCa, '/etc/ca.pem');
    assert.throws(() => loadConfig({ natsUrl: 'http://u:hunter2@h' }, {}), (err: Error) => /--nats-url: /.test(err.message) && !err.message.includes('hunter2'));
    assert.throws(() => loadConfig({ natsCreds: '/x.creds' }, {}), /--nats-creds: goes with --nats-url/);
    assert.throws(() => loadConfig({ natsUrl: 'nats://h:4222', natsCa: '/ca.pem' }, {}), /--nats-ca: needs a tls:\/\/ --nats-url/);
  });

  it('puts the event log on JetStream only with NATS', () => {
    assert.equal(loadConfig({}, {}).eventLog, 'sql');
    assert.equal(loadConfig({ natsUrl: 'nats://h:4222' }, { GATEHOUSE_EVENT_LOG: 'jetstream' }).eventLog, 'jetstream');
    assert.throws(() => loadConfig({ eventLog: 'jetstream' }, {}), /--event-log: the JetStream event log needs NATS \(--nats-url\)/);
    assert.throws(() => loadConfig({ natsUrl: 'nats://h:4222', eventLog: 'kafka' }, {}), /--event-log/);
  });
});

const natsServer = spawnSync('sh', ['-c', 'command -v nats-server'], { encoding: 'utf8' }).stdout.trim();

/** Resolves once something accepts TCP on 127.0.0.1:port. */
async function listening(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = tcpConnect({ host: '127.0.0.1', port }, () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nats-server did not listen on ${port}`);
}

describe('NATS bus when the server goes away', { skip: natsServer === '' ? 'no nats-server on PATH' : false }, () => {
  it('reconnects when the server is back, with its subscriptions, and logs the loss and the return without the token', async () => {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const token = `tok${randomUUID().replace(/-/g, '')}`;
    const start = (): ChildProcess => spawn(natsServer, ['-a', '127.0.0.1', '-p', String(port), '--auth', token], { stdio: 'ignore' });
    let server = start();
    await listening(port);
    const logs: Array<Record<string, unknown>> = [];
    const bus = await connectNatsBus({ nodeId: 'n', url: `nats://${token}@127.0.0.1:${port}`, log: (fields) => void logs.push(fields) });
    try {
      const got: string[] = [];
      bus.subscribe('r.x', (m) => void got.push(new TextDecoder().decode(m.data)));
      await bus.flush();
      server.kill('SIGKILL');
      await new Promise((r) => server.once('exit', r));
      const end = Date.now() + 10_000;
      while (!logs.some((l) => l.event === 'bus.disconnected') && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      server = start();
      while (!logs.some((l) => l.event === 'bus.reconnected') && Date.now() < end + 10_000) await new Promise((r) => setTimeout(r, 20));
      bus.publish('r.x', new TextEncoder().encode('after'));
      await bus.flush();
      while (!got.includes('after') && Date.now() < end + 15_000) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(got, ['after'], JSON.stringify(logs));
      assert.ok(logs.some((l) => l.event === 'bus.disconnected' && l.server === `127.0.0.1:${port}`), JSON.stringify(logs));
      assert.ok(logs.some((l) => l.event === 'bus.reconnected' && l.server === `127.0.0.1:${port}`), JSON.stringify(logs));
      assert.ok(!JSON.stringify(logs).includes(token), 'no token in the log');
    } finally {
      await bus.close();
      server.kill('SIGKILL');
    }
  });
});

