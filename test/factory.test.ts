/**
 * The factory line end to end (issue "Device PKI", done-when 4): `gatehouse factory run` enrolls
 * 1,000 devices over EST with a factory credential, is killed part way and resumed without
 * signing anything twice; then every bundle, as a device would use it, registers through the
 * provisioning service's X.509 group flow with the unmodified SDK, connects to the assigned hub
 * and sends telemetry, and `gatehouse monitor-events` shows all 1,000.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import provDevice from 'azure-iot-provisioning-device';
import provMqtt from 'azure-iot-provisioning-device-mqtt';
import x509Security from 'azure-iot-security-x509';
import { BIN, cli, removeDir, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';
import { monitorEvents } from './support/monitor.js';
import { policyKey, restClient, type Rest } from './support/rest.js';

const HOST = '127.0.49.1';
const COUNT = 1000;

interface Bundle {
  deviceId: string;
  registrationId: string;
  idScope: string;
  provisioningHost: string;
  serial: string;
  key: string;
  chain: string;
}

describe('the factory line: 1,000 devices from CSR to telemetry (hub process)', () => {
  let hub: HubProcess;
  let ca: string;
  let rest: Rest;
  let out: string;
  let idScope = '';
  let password = '';

  before(async () => {
    hub = await startHubProcess({ address: HOST, extraArgs: ['--dps-registrations-per-minute', '100000'] });
    ca = readFileSync(hub.caFile, 'utf8');
    out = tempDir('factory');
    rest = restClient(HOST, ca, policyKey(hub.dataDir));
    const dpsRest = restClient(HOST, ca, policyKey(hub.dataDir, 'provisioningserviceowner'), 'provisioningserviceowner');
    idScope = (JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as { idScope: string }).idScope;
    assert.equal(cli(['ca', 'create', '--data-dir', hub.dataDir, '-n', 'factory-root']).status, 0);
    assert.equal(cli(['ca', 'create', '--data-dir', hub.dataDir, '-n', 'factory-line', '--parent', 'factory-root']).status, 0);
    const g = await dpsRest('PUT', '/enrollmentGroups/line-f', {
      enrollmentGroupId: 'line-f',
      attestation: { type: 'x509', x509: { caReferences: { primary: 'factory-line' } } },
      initialTwin: { properties: { desired: { madeOn: 'line-f' } } },
    });
    assert.equal(g.status, 200, JSON.stringify(g.body));
    const created = cli(['est', 'credential', 'create', '--data-dir', hub.dataDir, '--group', 'line-f', '--id', 'station-f', '--registration-ids', 'line-f-*']);
    assert.equal(created.status, 0, created.stderr);
    password = (JSON.parse(created.stdout) as { password: string }).password;
  });

  after(async () => {
    assert.equal(await hub.stop(), 0);
    removeDir(hub.dataDir);
    removeDir(out);
  });

  const args = () => ['factory', 'run', '--group', 'line-f', '--count', String(COUNT), '--out', out, '--host', HOST, '--id-scope', idScope, '--ca-file', hub.caFile, '--credential', 'station-f', '--json'];
  const env = () => ({ ...process.env, GATEHOUSE_EST_PASSWORD: password });
  const done = () => (existsSync(join(out, 'devices')) ? readdirSync(join(out, 'devices')).filter((d) => existsSync(join(out, 'devices', d, 'bundle.json'))).length : 0);

  it('enrolls 1,000 devices, survives a kill part way, and signs nothing twice', async () => {
    // First run: killed once about 150 devices are done.
    const first = spawn(process.execPath, [BIN, ...args()], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<NodeJS.Signals | null>((res) => first.once('exit', (_code, signal) => res(signal)));
    const deadline = Date.now() + 60_000;
    while (done() < 150 && Date.now() < deadline && first.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    first.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL', 'the first run was interrupted');
    const before = done();
    assert.ok(before >= 150 && before < COUNT, `${before} devices were done at the kill`);

    // The resumed run finishes the line; progress goes to stderr as plain lines (not a terminal).
    const second = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [BIN, ...args()], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      p.once('exit', (code) => resolve({ code, stdout, stderr }));
    });
    assert.equal(second.code, 0, second.stderr);
    const summary = JSON.parse(second.stdout) as { issued: number; resumed: number; failed: number; devices: number };
    assert.equal(summary.failed, 0);
    assert.equal(summary.devices, COUNT);
    assert.ok(summary.resumed >= before, `resumed ${summary.resumed}, done before ${before}`);
    assert.equal(summary.issued + summary.resumed, COUNT);
    assert.match(second.stderr, new RegExp(`${COUNT}/${COUNT} devices`));

    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Array<{ deviceId: string; serial: string; thumbprint: string; notAfter: string }>;
    assert.equal(manifest.length, COUNT);
    assert.equal(new Set(manifest.map((m) => m.deviceId)).size, COUNT);
    const csv = readFileSync(join(out, 'manifest.csv'), 'utf8').trim().split('\n');
    assert.equal(csv[0], 'deviceId,serial,thumbprint,notAfter');
    assert.equal(csv.length, COUNT + 1);

    // The hub signed exactly one certificate per device: the interruption cost no second signature.
    const serials: string[] = [];
    let afterSerial: string | undefined;
    for (;;) {
      const page = await rest('GET', `/certificateAuthorities/factory-line/issued?limit=1000${afterSerial === undefined ? '' : `&after=${afterSerial}`}`);
      const rows = (page.body as { value: Array<{ serial: string }> }).value;
      serials.push(...rows.map((r) => r.serial));
      if (rows.length < 1000) break;
      afterSerial = rows.at(-1)!.serial;
    }
    assert.equal(serials.length, COUNT);
    assert.deepEqual(new Set(serials), new Set(manifest.map((m) => m.serial)));
    // Keys stay with the device: 0600 in its own directory.
    const mode = (await import('node:fs')).statSync(join(out, 'devices', manifest[0]!.deviceId, 'device.key')).mode & 0o777;
    assert.equal(mode, 0o600);
  });

  it('every bundle registers through the X.509 group, connects with the SDK and sends telemetry', async () => {
    const ids = readdirSync(join(out, 'devices')).sort();
    assert.equal(ids.length, COUNT);
    const assigned = new Map<string, string>();
    let cursor = 0;
    const worker = async () => {
      while (cursor < ids.length) {
        const dir = join(out, 'devices', ids[cursor++]!);
        const bundle = JSON.parse(readFileSync(join(dir, 'bundle.json'), 'utf8')) as Bundle;
        const cert = readFileSync(join(dir, bundle.chain), 'utf8');
        const key = readFileSync(join(dir, bundle.key), 'utf8');
        const security = new x509Security.X509Security(bundle.registrationId, { cert, key });
        const prov = provDevice.ProvisioningDeviceClient.create(bundle.provisioningHost, bundle.idScope, new provMqtt.Mqtt(), security as never);
        const result = (await prov.register()) as unknown as { assignedHub: string; deviceId: string };
        assigned.set(result.deviceId, result.assignedHub);
        const client = deviceSdk.Client.fromConnectionString(`HostName=${result.assignedHub};DeviceId=${result.deviceId};x509=true`, deviceMqtt.Mqtt);
        await client.setOptions({ ca, cert, key });
        await client.open();
        try {
          await client.sendEvent(new deviceSdk.Message(JSON.stringify({ endOfLine: bundle.serial })));
        } finally {
          await client.close();
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    assert.equal(assigned.size, COUNT);
    assert.deepEqual(new Set(assigned.values()), new Set([HOST]));

    const seen = new Set(
      monitorEvents(hub.dataDir, { json: true })
        .filter((e) => typeof (e.payload as { endOfLine?: string } | undefined)?.endOfLine === 'string')
        .map((e) => e.origin),
    );
    assert.equal(seen.size, COUNT, 'telemetry from every device');
  });
});
