/**
 * The data dir holds the master key and the database: only the hub's user may read it. It is
 * created 0700 with every file in it 0600 whatever the umask; at start an existing dir or file
 * that group or others can read is tightened with a warning when it is the hub user's, and the
 * start is refused when it is another user's. `start` on a busy port writes nothing.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BIN, cli, removeDir, startHubProcess, tempDir, testCaArgs } from './support/hub-process.js';

function mode(path: string): string {
  return (lstatSync(path).mode & 0o777).toString(8);
}

/** Every path under `dir` (itself included) with its mode, for one readable assertion. */
function modes(dir: string): Record<string, string> {
  const out: Record<string, string> = { '.': mode(dir) };
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel))) {
      const r = rel === '' ? name : `${rel}/${name}`;
      out[r] = mode(join(dir, r));
      if (lstatSync(join(dir, r)).isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

function expectPrivate(dir: string): void {
  const all = modes(dir);
  const loose = Object.entries(all).filter(([path, m]) => m !== (lstatSync(join(dir, path)).isDirectory() ? '700' : '600'));
  assert.deepEqual(loose, [], `not 0700/0600: ${JSON.stringify(all)}`);
}

/** `gatehouse start` from a shell with `umask 000`, until it is ready. */
async function startWithUmask000(address: string, dataDir: string): Promise<{ stop(): Promise<void>; output(): string }> {
  const args = [BIN, 'start', '--data-dir', dataDir, '--bind', address, '--hostname', address, '--log-level', 'warn', ...testCaArgs()];
  const proc = spawn('/bin/sh', ['-c', 'umask 000; exec "$0" "$@"', process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const reap = () => proc.kill('SIGKILL');
  process.once('exit', reap);
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`not ready in 30 s:\n${out}`)), 30_000);
    proc.stdout.on('data', () => {
      if (/ready/i.test(out)) {
        clearTimeout(timer);
        res();
      }
    });
    void exited.then(() => rej(new Error(`exited before ready:\n${out}`)));
  });
  return {
    output: () => out,
    async stop() {
      proc.kill('SIGTERM');
      await exited;
      process.off('exit', reap);
    },
  };
}

describe('data dir permissions', () => {
  it('with umask 000 the data dir is 0700 and every file in it 0600', async () => {
    const parent = tempDir('umask');
    const dataDir = join(parent, 'data');
    try {
      const hub = await startWithUmask000('127.0.74.1', dataDir);
      try {
        assert.ok(existsSync(join(dataDir, 'gatehouse.db-wal')), 'the database is open in WAL mode');
        expectPrivate(dataDir);
      } finally {
        await hub.stop();
      }
      expectPrivate(dataDir);
    } finally {
      removeDir(parent);
    }
  });

  it('an existing data dir that others can read is tightened at start, with a warning per path', async () => {
    const address = '127.0.74.2';
    const first = await startHubProcess({ address });
    const dataDir = first.dataDir;
    assert.equal(await first.stop(), 0);
    try {
      chmodSync(dataDir, 0o755);
      chmodSync(join(dataDir, 'gatehouse.db'), 0o644);
      chmodSync(join(dataDir, 'master.key'), 0o640);
      chmodSync(join(dataDir, 'tls'), 0o755);
      chmodSync(join(dataDir, 'tls', 'ca.pem'), 0o644);
      const second = await startHubProcess({ address, dataDir });
      try {
        expectPrivate(dataDir);
        // pino writes asynchronously: the warnings may arrive after the ready line.
        for (let i = 0; i < 200 && (second.output().match(/data-dir\.permissions/g) ?? []).length < 5; i++) await new Promise((r) => setTimeout(r, 50));
        const warnings = second
          .output()
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as { level: number; event?: string; path?: string; mode?: string; msg: string })
          .filter((l) => l.event === 'data-dir.permissions');
        assert.deepEqual(
          warnings.map((w) => [w.level, w.path, w.mode]).sort(),
          [
            [40, dataDir, '755'],
            [40, join(dataDir, 'gatehouse.db'), '644'],
            [40, join(dataDir, 'master.key'), '640'],
            [40, join(dataDir, 'tls'), '755'],
            [40, join(dataDir, 'tls', 'ca.pem'), '644'],
          ].sort(),
        );
        assert.match(warnings.find((w) => w.path === join(dataDir, 'gatehouse.db'))?.msg ?? '', /readable by group or others \(mode 644\); changed to 600/);
      } finally {
        assert.equal(await second.stop(), 0);
      }
    } finally {
      removeDir(dataDir);
    }
  });

  it("refuses to start when a file others can read is another user's", { skip: process.getuid?.() !== 0 ? 'needs root to give a file away' : false }, async () => {
    const address = '127.0.74.3';
    const first = await startHubProcess({ address });
    assert.equal(await first.stop(), 0);
    const db = join(first.dataDir, 'gatehouse.db');
    try {
      chmodSync(db, 0o644);
      chownSync(db, 65534, 65534);
      const r = cli(['start', '--data-dir', first.dataDir, '--bind', address, '--hostname', address, '--log-level', 'silent', ...testCaArgs()]);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, new RegExp(`${db.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is readable by group or others \\(mode 644\\) and belongs to another user`));
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.equal(mode(db), '644', 'left as it was');
    } finally {
      removeDir(first.dataDir);
    }
  });
});

describe('start on a busy port', () => {
  for (const [which, port, address] of [
    ['HTTPS', 443, '127.0.74.9'],
    ['MQTT', 8883, '127.0.74.10'],
    ['AMQP', 5671, '127.0.74.11'],
  ] as const) {
    it(`the ${which} port in use: one line, and no data dir, key or CA written`, async () => {
      const blocker = createServer();
      await new Promise<void>((r) => blocker.listen(port, address, () => r()));
      const parent = tempDir('busy');
      const dataDir = join(parent, 'new-hub');
      try {
        const r = cli(['start', '--data-dir', dataDir, '--bind', address, '--hostname', address, '--log-level', 'silent']);
        assert.notEqual(r.status, 0);
        assert.equal(r.stderr.trim(), `error: StartupFailed: port ${port} on ${address} is already in use`);
        assert.equal(existsSync(dataDir), false, 'nothing written');
      } finally {
        blocker.close();
        removeDir(parent);
      }
    });
  }
});
