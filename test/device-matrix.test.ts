/**
 * Every transport of the unmodified azure-iot-device SDK (Mqtt, MqttWs, Http) with every device
 * credential (device SAS, policy SAS, X.509 self-signed, X.509 CA-signed through an
 * intermediate): open, send telemetry that monitor-events shows with its properties.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import deviceHttp from 'azure-iot-device-http';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { monitorEvents } from './support/monitor.js';
import { chainPem, makeIntermediate, makeLeaf, makeRoot, makeSelfSigned, thumbprints } from './support/pki.js';

const HOST = '127.0.33.1';
let hub: HubProcess;
let ca: string;

type Options = Record<string, unknown>;
const credentials: Array<{ name: string; connectionString: (id: string) => string; options: Options; create: (id: string) => Promise<void> }> = [];

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  const registry = iothub.Registry.fromConnectionString(hub.connectionString);
  const devicePolicyKey = /SharedAccessKey=([^;\s]+)/.exec(cli(['connection-string', '--data-dir', hub.dataDir, '--policy', 'device']).stdout)?.[1] ?? '';
  const selfSigned = new Map<string, Awaited<ReturnType<typeof makeSelfSigned>>>();
  const root = await makeRoot('Matrix Root');
  const intermediate = await makeIntermediate(root, 'Matrix Intermediate');
  const dir = mkdtempSync(join(tmpdir(), 'gh-matrix-'));
  writeFileSync(join(dir, 'root.pem'), root.certPem);
  assert.equal(cli(['ca', 'add', '--name', 'matrix', '--cert', join(dir, 'root.pem'), '--verified', '--data-dir', hub.dataDir]).status, 0);
  rmSync(dir, { recursive: true, force: true });
  const leaves = new Map<string, Awaited<ReturnType<typeof makeLeaf>>>();
  const keys = new Map<string, string>();

  credentials.push(
    {
      name: 'device SAS',
      create: async (id) => void keys.set(id, String((await registry.create({ deviceId: id })).responseBody.authentication?.symmetricKey?.primaryKey)),
      connectionString: (id) => `HostName=${HOST};DeviceId=${id};SharedAccessKey=${keys.get(id) ?? ''}`,
      options: {},
    },
    {
      name: 'policy SAS',
      create: async (id) => void (await registry.create({ deviceId: id })),
      connectionString: (id) => `HostName=${HOST};DeviceId=${id};SharedAccessKeyName=device;SharedAccessKey=${devicePolicyKey}`,
      options: {},
    },
    {
      name: 'X.509 self-signed',
      create: async (id) => {
        const c = await makeSelfSigned(id);
        selfSigned.set(id, c);
        await registry.create({ deviceId: id, authentication: { x509Thumbprint: { primaryThumbprint: thumbprints(c.certPem).sha256 } } });
      },
      connectionString: (id) => `HostName=${HOST};DeviceId=${id};x509=true`,
      options: {},
    },
    {
      name: 'X.509 CA-signed',
      create: async (id) => {
        leaves.set(id, await makeLeaf(intermediate, id));
        await registry.create({ deviceId: id, authentication: { type: 'certificateAuthority' } });
      },
      connectionString: (id) => `HostName=${HOST};DeviceId=${id};x509=true`,
      options: {},
    },
  );
  // Certificates are only known after create(); resolve them lazily per device.
  certificateFor = (id) => {
    const s = selfSigned.get(id);
    if (s !== undefined) return { cert: s.certPem, key: s.keyPem };
    const l = leaves.get(id);
    return l === undefined ? undefined : { cert: chainPem(l, intermediate), key: l.keyPem };
  };
});

let certificateFor: (id: string) => { cert: string; key: string } | undefined = () => undefined;

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

it('Mqtt, MqttWs and Http with device SAS, policy SAS, X.509 self-signed and CA-signed', async () => {
  const transports = [
    ['Mqtt', deviceMqtt.Mqtt],
    ['MqttWs', deviceMqtt.MqttWs],
    ['Http', deviceHttp.Http],
  ] as const;
  const sent = new Map<string, string>();
  let n = 0;
  for (const credential of credentials) {
    for (const [tName, transport] of transports) {
      const id = `matrix-${n++}`;
      await credential.create(id);
      const client = deviceSdk.Client.fromConnectionString(credential.connectionString(id), transport);
      const cert = certificateFor(id);
      // Http answers setOptions only when a receive policy is given (azure-iot-device-http 1.14.4).
      await client.setOptions({ ca, ...(cert ?? {}), ...(tName === 'Http' ? { http: { receivePolicy: { interval: 1 } } } : {}) });
      await client.open();
      try {
        const m = new deviceSdk.Message(JSON.stringify({ cell: `${credential.name} / ${tName}` }));
        m.properties.add('transport', tName);
        await client.sendEvent(m);
        sent.set(id, `${credential.name} / ${tName}`);
      } finally {
        await client.close();
      }
    }
  }
  const seen = new Map<string, { cell: string; transport: string | undefined }>();
  for (const e of monitorEvents(hub.dataDir, { json: true })) {
    const cell = (e.payload as { cell?: string } | null)?.cell;
    if (cell !== undefined) seen.set(e.origin, { cell, transport: e.properties.application.transport });
  }
  for (const [id, cell] of sent) {
    assert.equal(seen.get(id)?.cell, cell, `telemetry of ${cell}`);
    assert.equal(seen.get(id)?.transport, cell.split(' / ')[1]);
  }
  assert.equal(sent.size, 12);
});
