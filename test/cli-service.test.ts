/**
 * The service verbs of the CLI against a real hub, with az's names and flags (issue 15, items 16
 * and 17): direct methods answered by SDK devices and modules, queries, module identities and
 * twins, twin replace, policy show, C2D feedback followed as it arrives, and monitor-events in
 * the shape `az iot hub monitor-events` prints.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { BIN, cli, removeDir, spawnReaped, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';

const { Client, ModuleClient, Message } = deviceSdk;
const { Mqtt } = deviceMqtt;

const HOST = '127.0.87.1';
let hub: HubProcess;
let ca: string;
let files: string;

function gh(args: string[]) {
  return cli([...args, '--data-dir', hub.dataDir]);
}

function ok<T = Record<string, unknown>>(args: string[]): T {
  const r = gh(args);
  assert.equal(r.status, 0, `gatehouse ${args.join(' ')}: ${r.stderr}`);
  return (r.stdout.trim() === '' ? undefined : JSON.parse(r.stdout)) as T;
}

/**
 * For commands an SDK client in this process must answer (direct methods): cli()'s spawnSync
 * would block the event loop the client answers on.
 */
async function okAsync<T = Record<string, unknown>>(args: string[]): Promise<T> {
  const run = spawnReaped([BIN, ...args, '--data-dir', hub.dataDir]);
  const stdout: Buffer[] = [];
  run.proc.stdout?.on('data', (c: Buffer) => stdout.push(c));
  const code = await run.exited;
  assert.equal(code, 0, `gatehouse ${args.join(' ')}: ${run.output()}`);
  return JSON.parse(Buffer.concat(stdout).toString('utf8')) as T;
}

function fails(args: string[], status: number, line: RegExp): void {
  const r = gh(args);
  assert.equal(r.status, status, `gatehouse ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, line);
  assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
}

/** A device made with the CLI, connected with the SDK over MQTT. */
async function connectedDevice(id: string): Promise<InstanceType<typeof Client>> {
  const d = ok<{ authentication: { symmetricKey: { primaryKey: string } } }>(['device', 'create', '-d', id]);
  const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${d.authentication.symmetricKey.primaryKey}`, Mqtt);
  await client.setOptions({ ca });
  await client.open();
  return client;
}

async function waitFor(what: string, check: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  files = tempDir('cli-service');
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
  removeDir(files);
});

describe('invoke-device-method and invoke-module-method', () => {
  it('a connected SDK device answers; the CLI prints {status, payload}', async () => {
    const client = await connectedDevice('gate-1');
    try {
      client.onDeviceMethod('open-gate', (req, res) => {
        res.send(200, { opened: true, seconds: (req.payload as { seconds: number }).seconds }, () => undefined);
      });
      // The method subscription goes out before the twin request on the same connection: once the
      // twin is back, the hub knows the device takes methods.
      await client.getTwin();
      const answer = await okAsync(['invoke-device-method', '-d', 'gate-1', '--mn', 'open-gate', '--mp', '{"seconds":5}', '--to', '10']);
      assert.deepEqual(answer, { status: 200, payload: { opened: true, seconds: 5 } });
      const file = join(files, 'payload.json');
      writeFileSync(file, '{"seconds": 9}');
      assert.deepEqual(await okAsync(['invoke-device-method', '--device-id', 'gate-1', '--method-name', 'open-gate', '--method-payload', file]), { status: 200, payload: { opened: true, seconds: 9 } });
    } finally {
      await client.close();
    }
    fails(['invoke-device-method', '-d', 'gate-1', '--mn', 'open-gate', '--to', '5'], 2, /^error: ArgumentInvalid: option '--to, --timeout <seconds>' argument '5' is invalid\. expected a whole number from 10 to 300$/m);
    fails(['invoke-device-method', '-d', 'gate-1', '--mn', 'open-gate', '--mp', '{seconds'], 2, /^error: JsonInvalid: --method-payload is not valid JSON: /);
  });

  it('module-identity create/list/show/update/delete, and a module answers invoke-module-method', async () => {
    ok(['device', 'create', '-d', 'edge-1']);
    const m = ok<{ moduleId: string; authentication: { symmetricKey: { primaryKey: string } } }>(['module-identity', 'create', '-d', 'edge-1', '-m', 'filter']);
    assert.equal(m.moduleId, 'filter');
    ok(['module-identity', 'create', '-d', 'edge-1', '-m', 'spare']);
    const table = gh(['module-identity', 'list', '-d', 'edge-1', '-o', 'table']);
    assert.match(table.stdout.split('\n')[0] ?? '', /^deviceId\s+moduleId\s+connectionState\s+authType\s+etag$/);
    assert.deepEqual(ok<Array<{ moduleId: string }>>(['module-identity', 'list', '-d', 'edge-1']).map((x) => x.moduleId).sort(), ['filter', 'spare']);

    const client = ModuleClient.fromConnectionString(`HostName=${HOST};DeviceId=edge-1;ModuleId=filter;SharedAccessKey=${m.authentication.symmetricKey.primaryKey}`, Mqtt);
    await client.setOptions({ ca });
    await client.open();
    try {
      client.onMethod('ping', (_req, res) => res?.send(200, 'pong', () => undefined));
      await client.getTwin();
      assert.deepEqual(await okAsync(['invoke-module-method', '-d', 'edge-1', '-m', 'filter', '--mn', 'ping']), { status: 200, payload: 'pong' });
    } finally {
      await client.close();
    }

    const key = Buffer.alloc(32, 3).toString('base64');
    const updated = ok<{ authentication: { symmetricKey: { primaryKey: string } } }>(['module-identity', 'update', '-d', 'edge-1', '-m', 'spare', '--pk', key]);
    assert.equal(updated.authentication.symmetricKey.primaryKey, key);
    fails(['module-identity', 'update', '-d', 'edge-1', '-m', 'spare', '--pk', key, '-e', 'stale'], 1, /^error: PreconditionFailed: /);
    ok(['module-identity', 'delete', '-d', 'edge-1', '-m', 'spare']);
    fails(['module-identity', 'show', '-d', 'edge-1', '-m', 'spare'], 1, /^error: ModuleNotFound: /);
  });
});

describe('twins, query, policy show', () => {
  it('module-twin update/show, twin replace (inline and from a file), etag checks', () => {
    const t = ok<{ properties: { desired: Record<string, unknown> }; moduleId: string }>(['module-twin', 'update', '-d', 'edge-1', '-m', 'filter', '--desired', '{"threshold":3}']);
    assert.equal(t.moduleId, 'filter');
    assert.equal(t.properties.desired.threshold, 3);
    assert.equal(ok<{ properties: { desired: Record<string, unknown> } }>(['module-twin', 'show', '-d', 'edge-1', '-m', 'filter']).properties.desired.threshold, 3);

    ok(['device', 'create', '-d', 'plant-1']);
    ok(['twin', 'update', '-d', 'plant-1', '--tags', '{"old":true}', '--desired', '{"a":1}']);
    const replaced = ok<{ tags: Record<string, unknown>; properties: { desired: Record<string, unknown> }; etag: string }>([
      'twin',
      'replace',
      '-d',
      'plant-1',
      '-j',
      '{"tags":{"site":"north"},"properties":{"desired":{"b":2}}}',
    ]);
    assert.deepEqual(replaced.tags, { site: 'north' }, 'replace drops the old tags');
    assert.equal(replaced.properties.desired.a, undefined);
    assert.equal(replaced.properties.desired.b, 2);
    const file = join(files, 'twin.json');
    writeFileSync(file, JSON.stringify({ tags: { site: 'north', line: 2 }, properties: { desired: { b: 3 } } }));
    const fromFile = ok<{ tags: Record<string, unknown> }>(['device-twin', 'replace', '-d', 'plant-1', '--json', file, '--etag', replaced.etag]);
    assert.deepEqual(fromFile.tags, { site: 'north', line: 2 });
    fails(['twin', 'replace', '-d', 'plant-1', '-j', '{"tags":{}}', '-e', replaced.etag], 1, /^error: PreconditionFailed: /);
    fails(['module-twin', 'replace', '-d', 'edge-1', '-j', '{"tags":{}}'], 2, /^error: ArgumentMissing: required option '-m, --module-id <id>' not specified$/m);
  });

  it('query -q pages through the results; --top caps them', () => {
    for (const id of ['plant-2', 'plant-3']) {
      ok(['device', 'create', '-d', id]);
      ok(['twin', 'update', '-d', id, '--tags', '{"site":"north"}']);
    }
    const rows = ok<Array<{ deviceId: string }>>(['query', '-q', "SELECT * FROM devices WHERE tags.site = 'north'"]);
    assert.deepEqual(rows.map((r) => r.deviceId).sort(), ['plant-1', 'plant-2', 'plant-3']);
    assert.equal(ok<unknown[]>(['query', '--query-command', "SELECT * FROM devices WHERE tags.site = 'north'", '--top', '2']).length, 2);
    const count = ok<Array<{ n: number }>>(['query', '-q', 'SELECT COUNT() AS n FROM devices']);
    assert.ok((count[0]?.n ?? 0) >= 5);
    fails(['query', '-q', 'SELECT FROM WHERE'], 1, /^error: ArgumentInvalid: /);
  });

  it('policy show: rights and keys of one policy', () => {
    const owner = ok<{ keyName: string; rights: string; primaryKey: string }>(['policy', 'show', 'iothubowner']);
    assert.equal(owner.keyName, 'iothubowner');
    assert.equal(owner.rights, 'RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect');
    assert.ok(hub.connectionString.endsWith(`SharedAccessKey=${owner.primaryKey}`));
    assert.equal(ok<{ rights: string }>(['policy', 'show', '-n', 'service']).rights, 'ServiceConnect');
    fails(['policy', 'show', 'nobody'], 1, /^error: PolicyNotFound: /);
  });
});

describe('c2d feedback --wait', () => {
  it('prints a feedback record as it arrives, keeps waiting, and ends on SIGINT with exit 0', async () => {
    const device = await connectedDevice('c2d-1');
    const after = String(Math.max(0, ...ok<Array<{ seq: number }>>(['c2d', 'feedback', '--top', '1000']).map((r) => r.seq)));
    const follower = spawnReaped([BIN, 'c2d', 'feedback', '--wait', '--after', after, '--data-dir', hub.dataDir]);
    try {
      device.on('message', (msg: InstanceType<typeof Message>) => {
        device.complete(msg, () => undefined);
      });
      await new Promise((r) => setTimeout(r, 500));
      const sent = ok<{ messageId: string }>(['device', 'c2d-send', '-d', 'c2d-1', '--data', 'open', '--ack', 'full', '--mid', 'fb-1']);
      assert.equal(sent.messageId, 'fb-1');
      await waitFor('the feedback line', () => follower.output().includes('"originalMessageId":"fb-1"'));
      const record = JSON.parse(follower.output().trim().split('\n').find((l) => l.includes('fb-1')) ?? '{}') as Record<string, unknown>;
      assert.equal(record.deviceId, 'c2d-1');
      assert.equal(record.statusCode, 'Success');
      assert.equal(follower.proc.exitCode, null, 'still following after the record');

      // --wait-on-msg: ends by itself once that message's record is in.
      const waiter = spawnReaped([BIN, 'c2d', 'feedback', '--wait-on-msg', 'fb-2', '--after', after, '--timeout', '60', '--data-dir', hub.dataDir]);
      ok(['device', 'c2d-send', '-d', 'c2d-1', '--data', 'close', '--ack', 'positive', '--mid', 'fb-2']);
      assert.equal(await waiter.exited, 0, waiter.output());
      assert.match(waiter.output(), /"originalMessageId":"fb-2"/);
    } finally {
      follower.proc.kill('SIGINT');
      assert.equal(await follower.exited, 0, follower.output());
      await device.close();
    }
    fails(['c2d', 'feedback', '--wait-on-msg', 'never', '--timeout', '1'], 1, /^error: Timeout: no feedback for message never within --timeout 1 seconds$/m);
  });
});

describe('monitor-events in the shape of az iot hub monitor-events', () => {
  it('--props all: origin, module, interface, component, properties {system, application}, annotations, payload', async () => {
    const client = await connectedDevice('mon-1');
    try {
      const m = new Message(JSON.stringify({ temperature: 21.5 }));
      m.messageId = 'mon-m1';
      m.contentType = 'application/json';
      m.contentEncoding = 'utf-8';
      m.properties.add('alert', 'high');
      await client.sendEvent(m);
      await client.sendEvent(new Message('second'));
    } finally {
      await client.close();
    }
    const all = gh(['monitor-events', '-d', 'mon-*', '--from', 'earliest', '--props', 'all', '--timeout', '2']);
    assert.equal(all.status, 0, all.stderr);
    const lines = all.stdout.trim().split('\n');
    assert.equal(lines.length, 2);
    const first = JSON.parse(lines[0] ?? '{}') as { event: Record<string, unknown> };
    assert.deepEqual(Object.keys(first), ['event']);
    const e = first.event as {
      origin: string;
      module: string;
      properties: { system: Record<string, unknown>; application: Record<string, string> };
      annotations: Record<string, unknown>;
      payload: unknown;
    };
    assert.deepEqual(Object.keys(e), ['origin', 'module', 'interface', 'component', 'properties', 'annotations', 'payload']);
    assert.equal(e.origin, 'mon-1');
    assert.equal(e.module, '');
    assert.deepEqual(e.properties.application, { alert: 'high' });
    assert.equal(e.properties.system.message_id, 'mon-m1');
    assert.equal(e.properties.system.content_type, 'application/json');
    assert.equal(e.properties.system.content_encoding, 'utf-8');
    assert.deepEqual(Object.keys(e.properties.system), Object.keys(e.properties.system).sort());
    assert.equal(e.annotations['iothub-connection-device-id'], 'mon-1');
    assert.equal(e.annotations['iothub-message-source'], 'Telemetry');
    assert.equal(typeof e.annotations['iothub-enqueuedtime'], 'number');
    assert.equal(typeof e.annotations['x-opt-sequence-number'], 'number');
    assert.equal(typeof e.annotations['x-opt-enqueued-time'], 'number');
    assert.deepEqual(e.payload, { temperature: 21.5 }, 'application/json: the payload parsed');
    assert.equal((JSON.parse(lines[1] ?? '{}') as { event: { payload: unknown } }).event.payload, 'second');

    // Without --props, az prints only the ids and the payload; --mc stops after that many.
    const bare = gh(['monitor-events', '--device-id', 'mon-1', '--from', 'earliest', '--mc', '1', '--timeout', '0']);
    assert.equal(bare.status, 0, bare.stderr);
    assert.deepEqual(JSON.parse(bare.stdout), { event: { origin: 'mon-1', module: '', interface: '', component: '', payload: { temperature: 21.5 } } });
    assert.match(bare.stderr, /Successfully parsed 1 message\(s\)\./);

    const table = gh(['monitor-events', '-d', 'mon-1', '--from', 'earliest', '--timeout', '2', '-o', 'table']);
    const rows = table.stdout.trim().split('\n');
    assert.match(rows[0] ?? '', /^enqueuedTime\s+origin\s+module\s+payload$/);
    assert.match(rows[2] ?? '', /^\d{4}-\d\d-\d\dT\S+\s+mon-1\s+\{"temperature":21\.5\}$/);
    assert.match(rows[3] ?? '', /\s+mon-1\s+second$/);
  });
});
