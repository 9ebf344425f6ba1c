/**
 * `gatehouse device export --out FILE` and `device import --in FILE` (issue 18 item 4): 10,000
 * devices with tags and desired properties exported from one hub and imported into a fresh one
 * come back the same, keys included; with --exclude-keys the file holds no key and the new hub
 * gives each device keys of its own; a line that cannot be applied is reported in the errors file
 * and the command exits 1.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIN, removeDir, spawnReaped, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';
import { policyKey, restClient, type Rest } from './support/rest.js';

const [A, B, C] = ['127.0.123.1', '127.0.123.2', '127.0.123.3'] as const;
const N = 10_000;
let source: HubProcess;
let files: string;
const started: HubProcess[] = [];

async function gatehouse(args: string[]): Promise<{ code: number | null; stdout: string; output: string }> {
  const run = spawnReaped([BIN, ...args]);
  const out: Buffer[] = [];
  run.proc.stdout?.on('data', (c: Buffer) => out.push(c));
  const code = await run.exited;
  return { code, stdout: Buffer.concat(out).toString('utf8'), output: run.output() };
}

async function hub(address: string): Promise<{ hub: HubProcess; rest: Rest }> {
  const h = await startHubProcess({ address });
  started.push(h);
  return { hub: h, rest: restClient(address, readFileSync(h.caFile, 'utf8'), policyKey(h.dataDir)) };
}

interface Device {
  deviceId: string;
  status: string;
  authentication: { symmetricKey: { primaryKey: string; secondaryKey: string } };
}
interface Twin {
  deviceId: string;
  tags?: Record<string, unknown>;
  properties: { desired: Record<string, unknown> };
}

async function allTwins(rest: Rest): Promise<Map<string, Twin>> {
  const out = new Map<string, Twin>();
  let continuation: string | undefined;
  do {
    const r = await rest('POST', '/devices/query', { query: 'SELECT * FROM devices' }, { headers: { 'x-ms-max-item-count': '1000', ...(continuation === undefined ? {} : { 'x-ms-continuation': continuation }) } });
    assert.equal(r.status, 200);
    for (const t of r.body as Twin[]) out.set(t.deviceId, t);
    const next = r.headers['x-ms-continuation'];
    continuation = typeof next === 'string' && next !== '' ? next : undefined;
  } while (continuation !== undefined);
  return out;
}

before(async () => {
  files = tempDir('device-transfer');
  const { hub: h, rest } = await hub(A);
  source = h;
  for (let i = 0; i < N; i += 100) {
    const chunk = Array.from({ length: 100 }, (_, k) => {
      const n = i + k;
      return {
        id: `dev-${String(n).padStart(5, '0')}`,
        importMode: 'create',
        status: n % 10 === 0 ? 'disabled' : 'enabled',
        tags: { site: `site-${n % 7}`, n },
        properties: { desired: { interval: n % 60 } },
      };
    });
    const r = await rest('POST', '/devices', chunk);
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
});

after(async () => {
  for (const h of started) await h.stop();
  for (const h of started) removeDir(h.dataDir);
  removeDir(files);
});

describe('device export and import through a devices.txt file', () => {
  it('moves 10,000 devices with keys, status, tags and desired properties into a fresh hub', { timeout: 600_000 }, async () => {
    const file = join(files, 'devices.txt');
    const ex = await gatehouse(['device', 'export', '--out', file, '--data-dir', source.dataDir]);
    assert.equal(ex.code, 0, ex.output);
    assert.deepEqual(JSON.parse(ex.stdout), { exported: N, file, keys: true });
    assert.equal(readFileSync(file, 'utf8').trim().split('\n').length, N);

    const { hub: target, rest } = await hub(B);
    const im = await gatehouse(['device', 'import', '--in', file, '--data-dir', target.dataDir]);
    assert.equal(im.code, 0, im.output);
    assert.deepEqual(JSON.parse(im.stdout), { imported: N, failed: 0 });

    const src = restClient(A, readFileSync(source.caFile, 'utf8'), policyKey(source.dataDir));
    const [before, after] = [await allTwins(src), await allTwins(rest)];
    assert.equal(after.size, N);
    for (const id of ['dev-00000', 'dev-00007', 'dev-04321', 'dev-09999']) {
      const [s, t] = [(await src('GET', `/devices/${id}`)).body as Device, (await rest('GET', `/devices/${id}`)).body as Device];
      assert.deepEqual(t.authentication.symmetricKey, s.authentication.symmetricKey, `${id} keeps its keys`);
      assert.equal(t.status, s.status);
    }
    for (const [id, t] of before) {
      const moved = after.get(id);
      assert.ok(moved !== undefined, id);
      assert.deepEqual(moved.tags, t.tags, `${id} tags`);
      assert.deepEqual(moved.properties.desired.interval, t.properties.desired.interval, `${id} desired`);
    }
  });

  it('--exclude-keys writes no key; the importing hub makes new ones; a bad line goes to the errors file', { timeout: 300_000 }, async () => {
    const file = join(files, 'nokeys.txt');
    const ex = await gatehouse(['device', 'export', '--out', file, '--exclude-keys', '--data-dir', source.dataDir]);
    assert.equal(ex.code, 0, ex.output);
    const lines = readFileSync(file, 'utf8').trim().split('\n').slice(0, 50);
    for (const l of lines) assert.deepEqual((JSON.parse(l) as Device).authentication.symmetricKey, { primaryKey: null, secondaryKey: null });
    // One device that cannot be updated on a hub that never had it (importMode update).
    writeFileSync(file, `${lines.join('\n')}\n${JSON.stringify({ id: 'ghost', importMode: 'update' })}\n`);

    const { hub: target, rest } = await hub(C);
    const errors = join(files, 'errors.log');
    const im = await gatehouse(['device', 'import', '--in', file, '--errors', errors, '--data-dir', target.dataDir]);
    assert.equal(im.code, 1, im.output);
    assert.deepEqual(JSON.parse(im.stdout), { imported: 50, failed: 1, errorsFile: errors });
    assert.match(readFileSync(errors, 'utf8'), /ghost/);
    const d = (await rest('GET', '/devices/dev-00001')).body as Device;
    assert.match(d.authentication.symmetricKey.primaryKey, /^[A-Za-z0-9+/]{43}=$/);
  });
});
