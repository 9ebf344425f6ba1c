/**
 * File upload as Azure IoT Hub does it (issue 18 item 3), with Microsoft's unmodified SDKs against
 * a real `gatehouse start` process and its embedded Azurite: azure-iot-device's uploadToBlob over
 * HTTPS puts a file in the blob store (read back with @azure/storage-blob and the connection string
 * `gatehouse info` prints), and azure-iothub's getFileNotificationReceiver gets its notification
 * once. The SAS a device gets writes its one blob only, cannot read it, and stops working when it
 * expires; the store refuses Azurite's well-known development key. A second hub given the first
 * one's store with --storage-connection-string uploads there too.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request } from 'node:https';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceHttp from 'azure-iot-device-http';
import { BlobServiceClient, BlockBlobClient, ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob';
import { join } from 'node:path';
import { generateSasToken } from '../src/auth/sas.js';
import { SecretBox } from '../src/core/secret-box.js';
import { DEFAULT_SETTINGS } from '../src/core/settings.js';
import { fileNotificationQueue } from '../src/hub/files/file-notifications.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { cli, removeDir, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';

const { Registry, Client: ServiceClient } = iothub;
const { Client } = deviceSdk;
const { Http } = deviceHttp;

const ADDRESS = '127.0.183.1';
const SECOND = '127.0.183.2';
const WELL_KNOWN_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

interface Notification {
  deviceId: string;
  blobUri: string;
  blobName: string;
  lastUpdatedTime: string;
  blobSizeInBytes: number;
  enqueuedTimeUtc: string;
}
type Receiver = { on(e: 'message', f: (m: { data: Buffer }) => void): void; complete(m: unknown, done: (err?: Error) => void): void };

let hub: HubProcess;
let storageCs: string;
let service: InstanceType<typeof ServiceClient>;
const notifications: Notification[] = [];

async function device(h: HubProcess, address: string, id: string): Promise<{ cs: string; key: string }> {
  const registry = Registry.fromConnectionString(h.connectionString);
  const made = await registry.create({ deviceId: id });
  const key = (made.responseBody as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey;
  return { cs: `HostName=${address};DeviceId=${id};SharedAccessKey=${key}`, key };
}

async function openReceiver(h: HubProcess, into: Notification[]): Promise<InstanceType<typeof ServiceClient>> {
  const client = ServiceClient.fromConnectionString(h.connectionString);
  await client.open();
  const receiver = await new Promise<Receiver>((resolve, reject) => client.getFileNotificationReceiver((err, r) => (err ? reject(err) : resolve(r as unknown as Receiver))));
  receiver.on('message', (msg) => {
    into.push(JSON.parse(msg.data.toString('utf8')) as Notification);
    receiver.complete(msg, () => undefined);
  });
  return client;
}

async function waitFor<T>(what: string, f: () => T | undefined, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** A device-authenticated raw call (what the SDK would not send). */
function deviceCall(id: string, key: string, method: string, path: string, body: unknown, withAuth = true): Promise<{ status: number; code: string | undefined }> {
  const token = generateSasToken({ resource: `${ADDRESS}/devices/${id}`, key, expiry: Math.floor(Date.now() / 1000) + 600 });
  return new Promise((resolve, reject) => {
    const req = request(
      { host: ADDRESS, port: 443, method, path: `${path}?api-version=2021-04-12`, headers: { 'content-type': 'application/json', ...(withAuth ? { authorization: token } : {}) } },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, code: res.headers['iothub-errorcode'] as string | undefined }));
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** The hub process's child processes (the embedded Azurite, once it runs). */
function children(pid: number | undefined): string[] {
  return spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l !== '');
}

before(async () => {
  hub = await startHubProcess({ address: ADDRESS });
  const info = JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as { storageConnectionString: string | null };
  assert.ok(info.storageConnectionString, 'gatehouse info prints the embedded store connection string');
  storageCs = info.storageConnectionString;
  service = await openReceiver(hub, notifications);
});

after(async () => {
  await service?.close().catch(() => undefined);
  await hub?.stop();
  if (hub !== undefined) removeDir(hub.dataDir);
});

describe('file upload with the embedded Azurite', () => {
  it('uploadToBlob stores the file, readable with @azure/storage-blob, and the notification arrives once', async () => {
    assert.deepEqual(children(hub.proc.pid), [], 'no blob store runs before the first upload');
    const id = `up-${randomBytes(4).toString('hex')}`;
    const { cs } = await device(hub, ADDRESS, id);
    const content = randomBytes(300 * 1024);
    const client = Client.fromConnectionString(cs, Http);
    try {
      await client.uploadToBlob('dir/hello.bin', Readable.from([content]), content.length);
    } finally {
      await client.close();
    }
    assert.equal(children(hub.proc.pid).length, 1, 'the embedded Azurite runs');
    const n = await waitFor('the notification', () => notifications.find((x) => x.deviceId === id));
    assert.equal(n.blobName, `${id}/dir/hello.bin`);
    assert.equal(n.blobSizeInBytes, content.length);
    assert.equal(n.blobUri, `https://${ADDRESS}/devstoreaccount1/fileupload/${id}/dir/hello.bin`);
    assert.ok(Date.parse(n.lastUpdatedTime) > Date.now() - 60_000, n.lastUpdatedTime);
    assert.ok(Date.parse(n.enqueuedTimeUtc) >= Date.parse(n.lastUpdatedTime) - 1000, n.enqueuedTimeUtc);

    const blobs = BlobServiceClient.fromConnectionString(storageCs);
    const stored = await blobs.getContainerClient('fileupload').getBlobClient(`${id}/dir/hello.bin`).downloadToBuffer();
    assert.ok(stored.equals(content), 'the stored blob is the uploaded file');

    // Delivered once: nothing more here, nor on a receiver that attaches afterwards.
    const late: Notification[] = [];
    const other = await openReceiver(hub, late);
    await sleep(2500);
    await other.close();
    assert.equal(notifications.filter((x) => x.deviceId === id).length, 1);
    assert.deepEqual(late.filter((x) => x.deviceId === id), []);
  });

  it('a device SAS writes its one blob only: not another blob, not a read; the report completes it', async () => {
    const id = `sas-${randomBytes(4).toString('hex')}`;
    const { cs } = await device(hub, ADDRESS, id);
    const client = Client.fromConnectionString(cs, Http);
    try {
      const p = await client.getBlobSharedAccessSignature('one.txt');
      assert.equal(p.blobName, `${id}/one.txt`);
      assert.equal(p.containerName, 'fileupload');
      const url = (name: string) => `https://${p.hostName}/${p.containerName}/${name}${p.sasToken}`;
      await assert.rejects(new BlockBlobClient(url(`${id}/other.txt`)).upload('x', 1), (e: { statusCode?: number }) => e.statusCode === 403, 'another blob');
      await assert.rejects(new BlockBlobClient(url(`other-device/one.txt`)).upload('x', 1), (e: { statusCode?: number }) => e.statusCode === 403, "another device's blob");
      const put = await new BlockBlobClient(url(`${id}/one.txt`)).upload('hello', 5);
      assert.equal(put._response.status, 201);
      await assert.rejects(new BlockBlobClient(url(`${id}/one.txt`)).downloadToBuffer(), (e: { statusCode?: number }) => e.statusCode === 403, 'no read');
      await client.notifyBlobUploadStatus(p.correlationId, true, 201, 'uploaded');
      const n = await waitFor('the notification', () => notifications.find((x) => x.deviceId === id));
      assert.equal(n.blobSizeInBytes, 5);
      // The same report again: the upload is over.
      await assert.rejects(client.notifyBlobUploadStatus(p.correlationId, true, 201, 'again'));
    } finally {
      await client.close();
    }
  });

  it('refuses bad requests precisely, and unauthenticated ones', async () => {
    const id = `bad-${randomBytes(4).toString('hex')}`;
    const { key } = await device(hub, ADDRESS, id);
    assert.deepEqual(await deviceCall(id, key, 'POST', `/devices/${id}/files`, { blobName: 'a/../b' }), { status: 400, code: 'ArgumentInvalid' });
    assert.deepEqual(await deviceCall(id, key, 'POST', `/devices/${id}/files`, {}), { status: 400, code: 'ArgumentInvalid' });
    assert.deepEqual(await deviceCall(id, key, 'POST', `/devices/${id}/files/notifications`, { correlationId: 'nope', isSuccess: true, statusCode: 201 }), { status: 404, code: 'ResourceNotFound' });
    assert.equal((await deviceCall(id, key, 'POST', `/devices/${id}/files`, { blobName: 'x' }, false)).status, 401);
  });

  it("refuses Azurite's well-known development key", async () => {
    const wellKnown = storageCs.replace(/AccountKey=[^;]+/, `AccountKey=${WELL_KNOWN_KEY}`);
    assert.notEqual(wellKnown, storageCs);
    await assert.rejects(BlobServiceClient.fromConnectionString(wellKnown).getContainerClient('fileupload').getProperties(), (e: { statusCode?: number }) => e.statusCode === 403);
  });

  it('a SAS stops working once it expires (fileUpload.sasTtlAsIso8601)', async () => {
    const set = cli(['settings', 'set', '--file-upload-sas-ttl', 'PT1M', '--data-dir', hub.dataDir]);
    assert.equal(set.status, 0, set.stderr);
    const id = `exp-${randomBytes(4).toString('hex')}`;
    const { cs } = await device(hub, ADDRESS, id);
    const client = Client.fromConnectionString(cs, Http);
    try {
      const p = await client.getBlobSharedAccessSignature('late.txt');
      const expiry = new URLSearchParams(p.sasToken?.slice(1)).get('se');
      assert.ok(expiry !== null && Math.abs(Date.parse(expiry) - (Date.now() + 60_000)) < 10_000, `expires in a minute: ${String(expiry)}`);
      const blob = new BlockBlobClient(`https://${p.hostName}/${p.containerName}/${p.blobName}${p.sasToken}`);
      await sleep(Math.max(0, Date.parse(expiry) - Date.now()) + 2000);
      await assert.rejects(blob.upload('late', 4), (e: { statusCode?: number }) => e.statusCode === 403);
    } finally {
      await client.close();
      cli(['settings', 'set', '--file-upload-sas-ttl', 'PT1H', '--data-dir', hub.dataDir]);
    }
  });
});

describe('file upload to a storage account given by --storage-connection-string', () => {
  it("uploads into that account (here the first hub's store)", async () => {
    const second = await startHubProcess({ address: SECOND, extraArgs: ['--storage-connection-string', storageCs] });
    const got: Notification[] = [];
    let client: InstanceType<typeof ServiceClient> | undefined;
    try {
      const info = JSON.parse(cli(['info', '--data-dir', second.dataDir, '--json']).stdout) as { storageConnectionString: string | null };
      assert.equal(info.storageConnectionString, null, 'no embedded store of its own');
      client = await openReceiver(second, got);
      const id = `ext-${randomBytes(4).toString('hex')}`;
      const { cs } = await device(second, SECOND, id);
      const dev = Client.fromConnectionString(cs, Http);
      try {
        const p = await dev.getBlobSharedAccessSignature('x.txt');
        assert.equal(p.hostName, `${ADDRESS}/devstoreaccount1`);
        await dev.uploadToBlob('x.txt', Readable.from([Buffer.from('external')]), 8);
      } finally {
        await dev.close();
      }
      const n = await waitFor('the notification', () => got.find((x) => x.deviceId === id));
      assert.equal(n.blobSizeInBytes, 8);
      const stored = await BlobServiceClient.fromConnectionString(storageCs).getContainerClient('fileupload').getBlobClient(`${id}/x.txt`).downloadToBuffer();
      assert.equal(stored.toString(), 'external');
    } finally {
      await client?.close().catch(() => undefined);
      await second.stop();
      removeDir(second.dataDir);
    }
  });
});

describe('the file notification queue (shared by the nodes)', () => {
  it('hands each notification to one receiver; released ones again, at most maxDeliveryCount times; never expired ones', async () => {
    const dir = tempDir('file-notifications');
    const store = await openSqliteStore(join(dir, 'q.db'), new SecretBox(randomBytes(32)));
    try {
      const clock = { t: 1_000_000, now: () => clock.t };
      const fileUpload = { ...DEFAULT_SETTINGS.fileUpload, notificationMaxDeliveryCount: 2, notificationTtlAsIso8601: 'PT1H' };
      const queue = () => fileNotificationQueue({ counters: store.counters, notifications: store.fileNotifications, settings: () => ({ fileUpload }), clock, lockMs: 5000 });
      const [a, b] = [queue(), queue()];
      await store.fileNotifications.append('d1', '{"n":1}', clock.t);
      await store.fileNotifications.append('d2', '{"n":2}', clock.t);
      const first = await a.claim(1);
      const second = await b.claim(1);
      assert.deepEqual([first?.records.map((r) => r.body), second?.records.map((r) => r.body)], [['{"n":1}'], ['{"n":2}']]);
      assert.equal(await a.claim(1), undefined, 'both are held');
      assert.equal(await b.complete(second!.token), true);
      assert.equal(await a.release(first!.token), true);
      const again = await b.claim(1);
      assert.deepEqual(again?.records.map((r) => r.body), ['{"n":1}'], 'a released one goes out again');
      clock.t += 5001; // its lock lapses: that was its second delivery, the last allowed
      assert.equal(await a.claim(1), undefined, 'dropped after maxDeliveryCount deliveries; the completed one never returns');
      await store.fileNotifications.append('d3', '{"n":3}', clock.t);
      clock.t += 3_600_001;
      await store.fileNotifications.append('d4', '{"n":4}', clock.t);
      assert.deepEqual((await a.claim(5))?.records.map((r) => r.body), ['{"n":4}'], 'the one past its time to live is skipped');
    } finally {
      await store.close();
      removeDir(dir);
    }
  });
});

describe('import and export of device identities through blob containers (Registry.exportDevicesToBlob, importDevicesFromBlob)', () => {
  type Job = { jobId: string; status: string; type: string; failureReason?: string };
  const containerUri = async (name: string): Promise<string> => {
    const blobs = BlobServiceClient.fromConnectionString(storageCs);
    await blobs.getContainerClient(name).create();
    const key = /AccountKey=([^;]+)/.exec(storageCs)?.[1] ?? '';
    const sas = generateBlobSASQueryParameters(
      { containerName: name, permissions: ContainerSASPermissions.parse('rwdl'), expiresOn: new Date(Date.now() + 3_600_000) },
      new StorageSharedKeyCredential('devstoreaccount1', key),
    ).toString();
    return `https://${ADDRESS}/devstoreaccount1/${name}?${sas}`;
  };
  const blobText = async (container: string, name: string) =>
    (await BlobServiceClient.fromConnectionString(storageCs).getContainerClient(container).getBlobClient(name).downloadToBuffer()).toString('utf8');
  const finished = async (registry: InstanceType<typeof Registry>, jobId: string): Promise<Job> => {
    for (let i = 0; i < 100; i++) {
      const job = (await registry.getJob(jobId)) as unknown as Job;
      if (job.status !== 'enqueued' && job.status !== 'running') return job;
      await sleep(200);
    }
    throw new Error(`job ${jobId} did not finish`);
  };

  it('exports every device with keys (or without) and twin, and imports devices.txt with its import modes, errors in importErrors.log', async () => {
    const registry = Registry.fromConnectionString(hub.connectionString);
    const tag = randomBytes(3).toString('hex');
    const ids = [`ex-${tag}-1`, `ex-${tag}-2`];
    const keys = new Map<string, string>();
    for (const id of ids) keys.set(id, (await device(hub, ADDRESS, id)).key);
    await registry.updateTwin(ids[0]!, { tags: { site: 'north' } }, '*');

    const out = await containerUri(`export-${tag}`);
    const started = (await registry.exportDevicesToBlob(out, false)) as unknown as Job;
    assert.equal(started.type, 'export');
    assert.equal((await finished(registry, started.jobId)).status, 'completed');
    const lines = (await blobText(`export-${tag}`, 'devices.txt')).trim().split('\n').map((l) => JSON.parse(l) as { id: string; authentication: { symmetricKey: { primaryKey: string | null } }; tags: Record<string, unknown>; status: string });
    const mine = lines.filter((l) => ids.includes(l.id));
    assert.equal(mine.length, 2);
    for (const l of mine) assert.equal(l.authentication.symmetricKey.primaryKey, keys.get(l.id));
    assert.deepEqual(mine.find((l) => l.id === ids[0])?.tags, { site: 'north' });

    const noKeysOut = await containerUri(`export-nokeys-${tag}`);
    const noKeys = (await registry.exportDevicesToBlob(noKeysOut, true)) as unknown as Job;
    assert.equal((await finished(registry, noKeys.jobId)).status, 'completed');
    const redacted = (await blobText(`export-nokeys-${tag}`, 'devices.txt')).trim().split('\n').map((l) => JSON.parse(l) as { id: string; authentication: { symmetricKey: { primaryKey: string | null } } });
    assert.equal(redacted.find((l) => l.id === ids[0])?.authentication.symmetricKey.primaryKey, null);

    // Import: two new devices with their keys, one deleted, one update of a device that does not exist.
    const input = await containerUri(`import-${tag}`);
    const newKey = randomBytes(32).toString('base64');
    const devicesTxt = [
      { id: `im-${tag}-1`, importMode: 'create', status: 'enabled', authentication: { symmetricKey: { primaryKey: newKey, secondaryKey: newKey } } },
      { id: `im-${tag}-2`, importMode: 'createOrUpdate', status: 'disabled', authentication: { symmetricKey: { primaryKey: newKey, secondaryKey: newKey } } },
      { id: ids[1], importMode: 'delete' },
      { id: `im-${tag}-missing`, importMode: 'update', status: 'enabled' },
    ].map((d) => JSON.stringify(d)).join('\r\n');
    await BlobServiceClient.fromConnectionString(storageCs).getContainerClient(`import-${tag}`).getBlockBlobClient('devices.txt').upload(devicesTxt, Buffer.byteLength(devicesTxt));
    const imp = (await registry.importDevicesFromBlob(input, out)) as unknown as Job;
    assert.equal((await finished(registry, imp.jobId)).status, 'completed');
    const created = await registry.get(`im-${tag}-1`);
    assert.equal(created.responseBody.authentication?.symmetricKey?.primaryKey, newKey);
    assert.equal((await registry.get(`im-${tag}-2`)).responseBody.status, 'disabled');
    await assert.rejects(registry.get(ids[1]!), (e: Error) => e.name === 'DeviceNotFoundError');
    const errors = await blobText(`export-${tag}`, 'importErrors.log');
    assert.match(errors, new RegExp(`im-${tag}-missing`));

    const listed = ((await registry.listJobs()).responseBody as Job[]).map((j) => j.jobId);
    for (const j of [started.jobId, noKeys.jobId, imp.jobId]) assert.ok(listed.includes(j), `listJobs has ${j}`);
  });

  it('refuses a job without containers and one with an unreadable container', async () => {
    const registry = Registry.fromConnectionString(hub.connectionString);
    await assert.rejects(registry.importDevicesFromBlob('not a uri', 'also not'), (e: Error) => /ArgumentInvalid|400/.test(`${e.name} ${e.message}`) || e.name === 'ArgumentError');
    const bogus = `https://${ADDRESS}/devstoreaccount1/nosuchcontainer-${randomBytes(3).toString('hex')}?sv=2020-08-04&sig=bad`;
    const job = (await registry.exportDevicesToBlob(bogus, false)) as unknown as Job;
    const done = await finished(registry, job.jobId);
    assert.equal(done.status, 'failed');
    assert.ok(done.failureReason !== undefined && done.failureReason !== '', 'a failure reason');
  });
});
