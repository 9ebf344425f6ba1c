/**
 * The CLI against a real hub, the way an operator types it: JSON by default, `-o table` for
 * people, errors as one line with the stable code.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';

const { Registry } = iothub;
type Registry = InstanceType<typeof Registry>;
import { BIN, cli, removeDir, spawnReaped, startHubProcess, type HubProcess } from './support/hub-process.js';

const ADDRESS = '127.0.23.1';
let hub: HubProcess;

function gh(args: string[]) {
  return cli([...args, '--data-dir', hub.dataDir]);
}

function ok(args: string[]): unknown {
  const r = gh(args);
  assert.equal(r.status, 0, `gatehouse ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim() === '' ? undefined : (JSON.parse(r.stdout) as unknown);
}

before(async () => {
  hub = await startHubProcess({ address: ADDRESS });
});

after(async () => {
  await hub.stop();
  removeDir(hub.dataDir);
});

describe('gatehouse device', () => {
  it('create, show, list, update, connection-string, delete', async () => {
    const created = ok(['device', 'create', '-d', 'cli-1']) as { deviceId: string; authentication: { symmetricKey: { primaryKey: string } } };
    assert.equal(created.deviceId, 'cli-1');
    const key = created.authentication.symmetricKey.primaryKey;
    assert.equal(Buffer.from(key, 'base64').length, 32);

    ok(['device', 'create', '-d', 'cli-x509', '--am', 'x509_thumbprint', '--ptp', 'AB'.repeat(20)]);
    const shown = ok(['device', 'show', '-d', 'cli-x509']) as { authentication: { type: string } };
    assert.equal(shown.authentication.type, 'selfSigned');

    const list = ok(['device', 'list']) as Array<{ deviceId: string }>;
    assert.deepEqual(list.map((d) => d.deviceId), ['cli-1', 'cli-x509']);

    const table = gh(['device', 'list', '-o', 'table']);
    assert.equal(table.status, 0);
    const lines = table.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^deviceId\s+status\s+connectionState\s+authType\s+etag$/);
    assert.match(lines[2] ?? '', /^cli-1\s+enabled\s+Disconnected\s+sas\s+\S+$/);

    const updated = ok(['device', 'update', '-d', 'cli-1', '--status', 'disabled', '--status-reason', 'stolen']) as { status: string; statusReason: string };
    assert.equal(updated.status, 'disabled');
    assert.equal(updated.statusReason, 'stolen');

    const cs = ok(['device', 'connection-string', '-d', 'cli-1']) as { connectionString: string };
    assert.equal(cs.connectionString, `HostName=${ADDRESS};DeviceId=cli-1;SharedAccessKey=${key}`);
    const direct = cli(['connection-string', '--data-dir', hub.dataDir, '--device', 'cli-1']);
    assert.equal(direct.stdout.trim(), cs.connectionString);

    ok(['device', 'delete', '-d', 'cli-x509']);
    const gone = gh(['device', 'show', '-d', 'cli-x509']);
    assert.equal(gone.status, 1);
    assert.equal(gone.stderr, 'error: DeviceNotFound: Device cli-x509 not found\n');
  });

  it('errors are one line with the stable code', () => {
    const dup = gh(['device', 'create', '-d', 'cli-1']);
    assert.equal(dup.status, 1);
    assert.match(dup.stderr, /^error: DeviceAlreadyExists: .*\n$/);
    const bad = gh(['device', 'create', '-d', 'white space']);
    assert.match(bad.stderr, /^error: ArgumentInvalid: The device id 'white space' contains a character outside/);
    const stale = gh(['device', 'update', '-d', 'cli-1', '--status', 'enabled', '--etag', 'stale']);
    assert.match(stale.stderr, /^error: PreconditionFailed: /);
    const noHub = cli(['device', 'list', '--connection-string', `HostName=127.0.23.99;SharedAccessKeyName=iothubowner;SharedAccessKey=${Buffer.alloc(32).toString('base64')}`]);
    assert.match(noHub.stderr, /^error: ConnectionFailed: cannot reach 127\.0\.23\.99:443/);
  });
});

describe('a reader that goes away', () => {
  it('ends the command quietly: exit 0, no EPIPE stack trace', async () => {
    for (const args of [['audit'], ['device', 'list'], ['info', '--json']]) {
      // The read end is closed before the command writes: its first write meets EPIPE.
      const { proc, output, exited } = spawnReaped([BIN, ...args, '--data-dir', hub.dataDir]);
      proc.stdout?.destroy();
      const code = await exited;
      assert.equal(code, 0, `gatehouse ${args.join(' ')}: ${output()}`);
      assert.doesNotMatch(output(), /EPIPE|Error|at /, `gatehouse ${args.join(' ')}`);
    }
  });
});

describe('gatehouse twin', () => {
  it('update merges desired properties and tags; show reads them back', () => {
    ok(['device', 'create', '-d', 'cli-twin']);
    const t = ok(['twin', 'update', '-d', 'cli-twin', '--desired', '{"interval":30,"mode":{"a":1}}', '--tags', '{"site":"north"}']) as {
      tags: { site: string };
      properties: { desired: { interval: number; $version: number } };
    };
    assert.equal(t.tags.site, 'north');
    assert.equal(t.properties.desired.interval, 30);
    ok(['twin', 'update', '-d', 'cli-twin', '--desired', '{"mode":{"a":null,"b":2}}']);
    const shown = ok(['twin', 'show', '-d', 'cli-twin']) as { properties: { desired: { mode: unknown; $version: number } } };
    assert.deepEqual(shown.properties.desired.mode, { b: 2 });
    assert.equal(shown.properties.desired.$version, t.properties.desired.$version + 1);
    const bad = gh(['twin', 'update', '-d', 'cli-twin', '--desired', '{not json']);
    assert.match(bad.stderr, /^error: JsonInvalid: --desired is not valid JSON: /);
    assert.equal(bad.status, 2);
  });
});

describe('gatehouse sas generate', () => {
  it('makes a policy token the SDK accepts and a device token scoped to the device', async () => {
    const r = ok(['sas', 'generate', '--du', '120']) as { sas: string; expiry: string };
    assert.match(r.sas, new RegExp(`^SharedAccessSignature sr=${ADDRESS.replace(/\./g, '\\.')}&sig=[^&]+&skn=iothubowner&se=\\d+$`));
    const registry = Registry.fromSharedAccessSignature(r.sas);
    const { responseBody } = await registry.get('cli-twin');
    assert.equal(responseBody.deviceId, 'cli-twin');
    const dev = ok(['sas', 'generate', '--device', 'cli-twin']) as { sas: string };
    assert.match(dev.sas, new RegExp(`^SharedAccessSignature sr=${ADDRESS.replace(/\./g, '\\.')}%2Fdevices%2Fcli-twin&sig=[^&]+&se=\\d+$`));
  });
});
