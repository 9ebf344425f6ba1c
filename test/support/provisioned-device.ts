/**
 * What every provisioning scenario ends with: the device connects to its assigned hub with
 * azure-iot-device, reads its twin (the initial desired properties) from the device side, sends
 * telemetry, and `gatehouse monitor-events` shows it.
 */
import assert from 'node:assert/strict';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { monitorEvents } from './monitor.js';

export interface ProvisionedState {
  assignedHub: string;
  deviceId: string;
}

export async function connectAndCheck(opts: {
  state: ProvisionedState;
  ca: string;
  dataDir: string;
  credential: { key: string } | { cert: string; privateKey: string };
  expectDesired?: Record<string, unknown>;
}): Promise<void> {
  const { state, ca, dataDir, credential } = opts;
  const cs =
    'key' in credential
      ? `HostName=${state.assignedHub};DeviceId=${state.deviceId};SharedAccessKey=${credential.key}`
      : `HostName=${state.assignedHub};DeviceId=${state.deviceId};x509=true`;
  const client = deviceSdk.Client.fromConnectionString(cs, deviceMqtt.Mqtt);
  await client.setOptions('key' in credential ? { ca } : { ca, cert: credential.cert, key: credential.privateKey });
  await client.open();
  const marker = `hello from ${state.deviceId} ${Date.now()}`;
  try {
    const twin = await client.getTwin();
    for (const [k, v] of Object.entries(opts.expectDesired ?? {})) {
      assert.deepEqual((twin.properties.desired as Record<string, unknown>)[k], v, `initial desired ${k} as the device reads it`);
    }
    await client.sendEvent(new deviceSdk.Message(JSON.stringify({ marker })));
  } finally {
    await client.close();
  }
  const seen = monitorEvents(dataDir, { deviceId: state.deviceId, json: true }).some((e) => (e.payload as { marker?: string } | undefined)?.marker === marker);
  assert.ok(seen, `monitor-events shows the telemetry of ${state.deviceId}`);
}
