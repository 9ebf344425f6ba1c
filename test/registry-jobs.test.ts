/**
 * Import and export jobs (azure-iothub's Registry.importDevicesFromBlob / exportDevicesToBlob) that
 * outlive the node running them: a hub stopped in the middle of an import goes on where it left
 * off once it is back, and one killed with SIGKILL goes on once its lease lapses, applying every
 * line (at most one chunk twice). And the blob pieces under them: devices.txt read line by line as
 * it streams in, and written block by block, with the embedded Azurite of a real `gatehouse start`.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import { BlobServiceClient, ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob';
import { BlockBlobWriter, blobInContainer, readBlobLines } from '../src/hub/files/container-sas.js';
import { cli, removeDir, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';

const { Registry } = iothub;
const ADDRESS = '127.0.160.1';

type Job = { jobId: string; status: string; progress: number; failureReason?: string };

let hub: HubProcess;
let storageCs: string;
const dataDir = tempDir('registry-jobs');

let registry: InstanceType<typeof Registry>;

/** Starts the hub on the test's data dir, and one service client for it (a client per call would leave a socket open per call). */
async function start(): Promise<void> {
  hub = await startHubProcess({ address: ADDRESS, dataDir });
  registry = Registry.fromConnectionString(hub.connectionString);
}

function blobs(): BlobServiceClient {
  return BlobServiceClient.fromConnectionString(storageCs);
}

async function containerUri(name: string): Promise<string> {
  await blobs().getContainerClient(name).create();
  const key = /AccountKey=([^;]+)/.exec(storageCs)?.[1] ?? '';
  const sas = generateBlobSASQueryParameters(
    { containerName: name, permissions: ContainerSASPermissions.parse('rwdl'), expiresOn: new Date(Date.now() + 3_600_000) },
    new StorageSharedKeyCredential('devstoreaccount1', key),
  ).toString();
  return `https://${ADDRESS}/devstoreaccount1/${name}?${sas}`;
}

async function blobText(container: string, name: string): Promise<string | undefined> {
  const blob = blobs().getContainerClient(container).getBlobClient(name);
  return (await blob.exists()) ? (await blob.downloadToBuffer()).toString('utf8') : undefined;
}

async function job(id: string): Promise<Job> {
  return (await registry.getJob(id)) as unknown as Job;
}

async function until(what: string, f: () => Promise<boolean>, ms: number, everyMs = 200): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Runs `f`; a failure names the step and carries the hub's last output. */
async function step<T>(name: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    throw new Error(`${name}: ${err instanceof Error ? err.message : String(err)}\nhub output:\n${hub.output().slice(-3000)}`);
  }
}

/** devices.txt of `n` devices with their keys, and the keys by id. */
function devicesTxt(prefix: string, n: number, importMode: string): { text: string; keys: Map<string, string> } {
  const keys = new Map<string, string>();
  const lines = Array.from({ length: n }, (_, i) => {
    const id = `${prefix}-${String(i).padStart(5, '0')}`;
    const key = randomBytes(32).toString('base64');
    keys.set(id, key);
    return JSON.stringify({ id, importMode, status: 'enabled', authentication: { type: 'sas', symmetricKey: { primaryKey: key, secondaryKey: key } }, tags: { batch: prefix } });
  });
  return { text: `${lines.join('\n')}\n`, keys };
}

/** Exports the registry and returns the lines of this prefix, by id. */
async function exported(prefix: string): Promise<Map<string, { authentication: { symmetricKey: { primaryKey: string } }; tags: Record<string, string> }>> {
  const container = `out-${randomBytes(4).toString('hex')}`;
  const started = (await registry.exportDevicesToBlob(await containerUri(container), false)) as unknown as Job;
  await until('the export', async () => (await job(started.jobId)).status === 'completed', 60_000);
  const lines = ((await blobText(container, 'devices.txt')) ?? '').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { id: string; authentication: { symmetricKey: { primaryKey: string } }; tags: Record<string, string> });
  return new Map(lines.filter((l) => l.id.startsWith(`${prefix}-`)).map((l) => [l.id, l]));
}

before(async () => {
  await start();
  const info = JSON.parse(cli(['info', '--data-dir', dataDir, '--json']).stdout) as { storageConnectionString: string };
  storageCs = info.storageConnectionString;
});

after(async () => {
  await hub?.stop();
  removeDir(dataDir);
});

describe('blob pieces of import and export', () => {
  it('reads a blob line by line as it streams in, and writes one block by block (a block staged again replaces it)', { timeout: 60_000 }, async () => {
    const uri = await containerUri(`pieces-${randomBytes(3).toString('hex')}`);
    const writer = new BlockBlobWriter(blobInContainer(uri, 'lines.txt'));
    const line = (i: number) => `{"n":${i},"pad":"${'x'.repeat(i % 300)}"}`;
    const block = (from: number, to: number) => Buffer.from(Array.from({ length: to - from }, (_, k) => `${line(from + k)}\n`).join(''));
    const ids = [await writer.stage(0, block(0, 2000)), await writer.stage(1, Buffer.from('not what is committed\n')), await writer.stage(2, block(4000, 6000))];
    await writer.stage(1, block(2000, 4000));
    await writer.commit(ids);
    const read = await readBlobLines(blobInContainer(uri, 'lines.txt'));
    assert.ok(read !== undefined);
    assert.ok(read.length > 900_000, `a blob of ${read.length} bytes streams in many chunks`);
    let n = 0;
    let last = 0;
    for await (const { line: got, read: upTo } of read.lines) {
      assert.equal(got, line(n));
      assert.ok(upTo > last && upTo <= read.length);
      last = upTo;
      n++;
    }
    assert.equal(n, 6000);
    assert.equal(last, read.length);
    assert.equal(await readBlobLines(blobInContainer(uri, 'missing.txt')), undefined);
  });
});

/** Starts an import of 2,000 devices in `importMode` and returns once it has done 5 % of them. */
async function importUnderWay(tag: string, importMode: string): Promise<{ prefix: string; keys: Map<string, string>; output: string; started: Job }> {
  const prefix = `${tag}-${randomBytes(3).toString('hex')}`;
  const { text, keys } = devicesTxt(prefix, 2000, importMode);
  const input = `in-${prefix}`;
  const output = `errors-${prefix}`;
  const inUri = await containerUri(input);
  const outUri = await containerUri(output);
  await blobs().getContainerClient(input).getBlockBlobClient('devices.txt').upload(text, Buffer.byteLength(text));
  const started = (await registry.importDevicesFromBlob(inUri, outUri)) as unknown as Job;
  await until('the import under way', async () => (await job(started.jobId)).progress >= 5, 60_000, 25);
  return { prefix, keys, output, started };
}

describe('import and export jobs across a restart of their node', () => {
  it('an import stopped with the hub (SIGTERM) goes on after the restart and applies every line once', { timeout: 180_000 }, async () => {
    const { prefix, keys, output, started } = await importUnderWay('term', 'createOrUpdate');
    assert.equal(await hub.stop(), 0);
    await start();
    await until('the import completed', async () => {
      const j = await job(started.jobId);
      assert.ok(j.status === 'running' || j.status === 'completed', `status ${j.status} ${j.failureReason ?? ''}`);
      return j.status === 'completed';
    }, 120_000);
    const lines = await exported(prefix);
    assert.equal(lines.size, 2000);
    for (const [id, key] of keys) assert.equal(lines.get(id)?.authentication.symmetricKey.primaryKey, key, id);
    assert.equal(await blobText(output, 'importErrors.log'), undefined, 'createOrUpdate lines applied again raise no error');
  });

  it('an import whose hub is killed (SIGKILL) is taken over once its lease lapses; a create line applied twice is the only error', { timeout: 240_000 }, async () => {
    const { prefix, keys, output, started } = await importUnderWay('kill', 'create');
    hub.proc.kill('SIGKILL');
    await hub.stop();
    await step('restart', () => start());
    assert.equal((await step('getJob after the restart', () => job(started.jobId))).status, 'running', 'the job is still running after the crash');
    await step('the import completing', () => until('the import completed', async () => (await job(started.jobId)).status === 'completed', 120_000));
    const lines = await step('the export', () => exported(prefix));
    assert.equal(lines.size, 2000);
    for (const [id, key] of keys) assert.equal(lines.get(id)?.authentication.symmetricKey.primaryKey, key, id);
    const errors = ((await blobText(output, 'importErrors.log')) ?? '').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { deviceId: string; errorCode: string });
    assert.ok(errors.length <= 100, `${errors.length} errors: at most the one chunk applied twice`);
    for (const e of errors) assert.equal(e.errorCode, 'DeviceAlreadyExists', JSON.stringify(e));
  });
});
