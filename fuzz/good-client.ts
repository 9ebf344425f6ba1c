/** After the fuzzing: a device with its real key still connects over MQTT (azure-iot-device) and AMQP (rhea, CBS), and the REST API answers. */
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import { recordDeviceSession } from './amqp-inputs.js';
import type { FuzzHub } from './hub.js';

export async function goodClientsConnect(hub: FuzzHub, localAddress?: string): Promise<string> {
  const id = 'good-client';
  const key = await hub.deviceKey(id);
  const client = deviceSdk.Client.fromConnectionString(`HostName=${hub.address};DeviceId=${id};SharedAccessKey=${key}`, deviceMqtt.Mqtt);
  try {
    await client.setOptions({ ca: hub.ca });
    await client.open();
    await client.sendEvent(new deviceSdk.Message('{"still":"here"}'));
    await client.getTwin();
  } catch (err) {
    return `MQTT device failed: ${(err as Error).message}`;
  } finally {
    await client.close().catch(() => undefined);
  }
  try {
    await recordDeviceSession(hub.address, hub.ca, id, key, localAddress);
  } catch (err) {
    return `AMQP device failed: ${(err as Error).message}`;
  }
  const r = await hub.rest('GET', `/devices/${id}`);
  return r.status === 200 ? 'ok' : `REST answered ${r.status}`;
}
