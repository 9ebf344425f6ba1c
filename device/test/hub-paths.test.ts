/**
 * The gate controller's other ways to the hub, set up through the setup page's form over HTTP
 * (the browser flow is in gate-controller-e2e): DPS with a symmetric key, then, after a factory
 * reset, a device connection string; and a connection string whose key the hub refuses, which
 * lights the red LED and names the error while the device keeps retrying.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { request, type IncomingHttpHeaders } from 'node:http';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import common from 'azure-iot-common';
import iothub from 'azure-iothub';
import { cli, removeDir, startHubProcess, tempDir, type HubProcess } from '../../test/support/hub-process.js';
import { policyKey, restClient, type Rest } from '../../test/support/rest.js';
import { DEVICE_BIN, startDevice, type DeviceProcess } from './support/device-process.js';

const HUB = '127.0.57.1';
const DEVICE = '127.0.57.2';
const PORT = 8080;

describe('the gate controller over DPS with a symmetric key, and over a connection string', () => {
  let hub: HubProcess;
  let dps: Rest;
  let idScope = '';
  let dir: string;
  let sticker: { setupPassword: string; applicationKey: string };
  let device: DeviceProcess;
  let registry: InstanceType<typeof iothub.Registry>;
  let service: InstanceType<typeof iothub.Client>;

  before(async () => {
    hub = await startHubProcess({ address: HUB });
    const ca = readFileSync(hub.caFile, 'utf8');
    dps = restClient(HUB, ca, policyKey(hub.dataDir, 'provisioningserviceowner'), 'provisioningserviceowner');
    idScope = (JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as { idScope: string }).idScope;
    registry = iothub.Registry.fromConnectionString(hub.connectionString);
    service = iothub.Client.fromConnectionString(hub.connectionString);
    // A data dir that does not exist yet: manufacture makes it, private.
    dir = join(tempDir('gate-paths'), 'gate');
    const made = spawnSync(process.execPath, [DEVICE_BIN, 'manufacture', '--data-dir', dir, '--serial', 'GC-0202'], { encoding: 'utf8' });
    assert.equal(made.status, 0, made.stderr);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    sticker = JSON.parse(made.stdout) as typeof sticker;
    device = await startDevice(dir, ['--bind', DEVICE, '--port', String(PORT)]);
  });

  after(async () => {
    await service?.close().catch(() => undefined);
    assert.equal(await device?.stop(), 0);
    assert.equal(await hub.stop(), 0);
    removeDir(hub.dataDir);
    removeDir(dirname(dir));
  });

  /** One request on its own connection (the device restarts between forms, dropping old ones). */
  function http(method: string, path: string, body?: Record<string, string>, cookie?: string): Promise<{ status: number; headers: IncomingHttpHeaders; text: string }> {
    const data = body === undefined ? undefined : new URLSearchParams(body).toString();
    return new Promise((resolve, reject) => {
      const req = request(
        { host: DEVICE, port: PORT, method, path, agent: false, headers: { ...(cookie === undefined ? {} : { cookie }), ...(data === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded', 'content-length': String(Buffer.byteLength(data)) }) } },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
        },
      );
      req.on('error', reject);
      req.end(data);
    });
  }

  /** Signs in and posts the setup form as a browser would; answers the page's status. */
  async function setUp(fields: Record<string, string>): Promise<number> {
    await device.until('setup mode', (s) => s.web.open === 'setup');
    const login = await http('POST', '/login', { setupPassword: sticker.setupPassword, applicationKey: sticker.applicationKey });
    assert.equal(login.status, 303);
    const cookie = String(login.headers['set-cookie']?.[0] ?? '').split(';')[0]!;
    const csrf = /name="csrf" value="([\w-]+)"/.exec((await http('GET', '/', undefined, cookie)).text)?.[1] ?? '';
    const saved = await http('POST', '/setup', { csrf, ssid: 'yard', wifiPassword: 'yard passphrase', mode: 'hub', pulseMs: '400', softResetMs: '5000', factoryResetMs: '20000', ...fields }, cookie);
    return saved.status;
  }

  it('DPS with a symmetric key: registers, connects, and takes On as a direct method', async () => {
    const e = await dps('PUT', '/enrollments/gate-sk', { registrationId: 'gate-sk', deviceId: 'gate-sk-device', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: '', secondaryKey: '' } } });
    assert.equal(e.status, 200, JSON.stringify(e.body));
    const key = (e.body as { attestation: { symmetricKey: { primaryKey: string } } }).attestation.symmetricKey.primaryKey;
    const status = await setUp({ hubKind: 'dps', provisioningHost: HUB, idScope, registrationId: 'gate-sk', attestation: 'symmetricKey', symmetricKey: key });
    assert.equal(status, 200);
    const s = await device.until('connected', (x) => x.hub.state === 'connected', 30_000);
    assert.equal(s.hub.deviceId, 'gate-sk-device', 'the device id DPS assigned');
    assert.equal(s.hub.certificate, undefined);
    const { result } = (await service.invokeDeviceMethod('gate-sk-device', { methodName: 'On', payload: null, responseTimeoutInSeconds: 15 })) as unknown as { result: { status: number; payload: { relay: string } } };
    assert.equal(result.status, 200);
    assert.equal(result.payload.relay, 'on');
    await device.until('relay on', (x) => x.relay.state === 'on');
  });

  it('after a factory reset: a connection string, whose device takes Activate as C2D, with no DPS registration', async () => {
    assert.deepEqual(await device.control({ op: 'press', ms: 25_000 }), { action: 'factory-reset' });
    const created = await registry.create({ deviceId: 'gate-cs' });
    const key = (created.responseBody as unknown as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey;
    assert.equal(await setUp({ hubKind: 'connectionString', connectionString: `HostName=${HUB};DeviceId=gate-cs;SharedAccessKey=${key}` }), 200);
    const s = await device.until('connected as gate-cs', (x) => x.hub.state === 'connected' && x.hub.deviceId === 'gate-cs', 30_000);
    assert.equal(s.relay.state, 'off', 'the relay is off after the restart');
    const pulses = s.relay.pulses;
    await service.send('gate-cs', new common.Message('Activate'));
    const after = await device.until('a pulse', (x) => x.relay.pulses === pulses + 1 && x.relay.state === 'off');
    assert.equal(after.relay.history.findLast((c) => c.state === 'on')?.cause, 'Activate (c2d)');
    assert.doesNotMatch(device.output().split('gate-cs').slice(1).join(''), /provisioned/, 'no DPS registration for a connection string');
  });

  it('a key the hub refuses: red LED, the error named, and the device keeps trying', async () => {
    assert.deepEqual(await device.control({ op: 'press', ms: 25_000 }), { action: 'factory-reset' });
    const wrong = Buffer.alloc(32, 1).toString('base64');
    assert.equal(await setUp({ hubKind: 'connectionString', connectionString: `HostName=${HUB};DeviceId=gate-cs;SharedAccessKey=${wrong}` }), 200);
    const s = await device.until('the error', (x) => x.hub.state === 'error', 30_000);
    assert.equal(s.leds.red, 'on');
    assert.notEqual(s.error, null);
    assert.match(device.output(), /hub connection failed; retrying/);
    assert.equal(device.output().includes(wrong), false, 'the key is not logged');
  });
});
