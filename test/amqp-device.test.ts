/**
 * Devices on AMQP with the unmodified `azure-iot-device-amqp` (transports Amqp and AmqpWs): SAS
 * through CBS put-token and X.509 through the TLS client certificate; telemetry into
 * monitor-events with its properties; C2D complete, reject and abandon as AMQP dispositions (the
 * feedback says which); twin get, reported patch and a desired push; a direct method through the
 * service API; another device's token refused.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceAmqp from 'azure-iot-device-amqp';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { monitorEvents } from './support/monitor.js';
import { makeSelfSigned, thumbprints } from './support/pki.js';
import { errorCode, policyKey, restClient, type Rest } from './support/rest.js';

const { Registry, Client: ServiceClient } = iothub;
const { Client, Message } = deviceSdk;
const { Amqp, AmqpWs } = deviceAmqp;
const HOST = '127.0.55.1';

let hub: HubProcess;
let ca: string;
let rest: Rest;
let registry: InstanceType<typeof Registry>;
let service: InstanceType<typeof ServiceClient>;

async function createDevice(id: string): Promise<string> {
  const r = await rest('PUT', `/devices/${id}`, { deviceId: id });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return (r.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

type Feedback = { originalMessageId: string; statusCode: string };
async function feedbackFor(messageId: string): Promise<Feedback> {
  return waitFor(`feedback for ${messageId}`, async () => {
    const r = await rest('GET', '/messages/serviceBound/feedback?after=0&top=1000');
    return (r.body as Feedback[]).find((f) => f.originalMessageId === messageId);
  });
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  registry = Registry.fromConnectionString(hub.connectionString);
  service = ServiceClient.fromConnectionString(hub.connectionString);
});

after(async () => {
  await service.close().catch(() => undefined);
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

for (const [name, transport] of [
  ['Amqp', Amqp],
  ['AmqpWs', AmqpWs],
] as const) {
  describe(`device over ${name}`, () => {
    it('telemetry into monitor-events; twin get, reported patch, desired push; a direct method', async () => {
      const id = `amqp-${name}`;
      const key = await createDevice(id);
      const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${key}`, transport);
      await client.setOptions({ ca });
      await client.open();
      try {
        const m = new Message(JSON.stringify({ temp: 21.5 }));
        m.messageId = `tel-${name}`;
        m.contentType = 'application/json';
        m.properties.add('site', 'north');
        await client.sendEvent(m);
        const events = monitorEvents(hub.dataDir, { deviceId: id });
        assert.equal(events.length, 1);
        assert.deepEqual(events[0]?.payload, { temp: 21.5 });
        assert.equal(events[0]?.properties.application.site, 'north');
        assert.equal(events[0]?.properties.system?.message_id, `tel-${name}`);

        client.onDeviceMethod('open-gate', (req, res) => {
          res.send(200, { opened: true, seconds: (req.payload as { seconds: number }).seconds }, () => undefined);
        });
        const twin = await client.getTwin();
        await new Promise<void>((resolve, reject) => twin.properties.reported.update({ relay: 'off' }, (e?: Error) => (e ? reject(e) : resolve())));
        assert.equal((await registry.getTwin(id)).responseBody.properties.reported.relay, 'off');
        const desired: Array<Record<string, unknown>> = [];
        twin.on('properties.desired', (p: Record<string, unknown>) => desired.push(p));
        await waitFor('the SDK to subscribe to desired properties', () => (desired.length > 0 ? true : undefined));
        for (let i = 0; i < 20 && !desired.some((p) => p.pulseMs !== undefined); i += 1) {
          await registry.updateTwin(id, { properties: { desired: { pulseMs: 500 + i } } }, '*');
          await new Promise((r) => setTimeout(r, 250));
        }
        assert.ok(desired.some((p) => typeof p.pulseMs === 'number'), 'a desired push arrived');

        const { result } = await service.invokeDeviceMethod(id, { methodName: 'open-gate', payload: { seconds: 3 }, responseTimeoutInSeconds: 10 });
        assert.deepEqual(result, { status: 200, payload: { opened: true, seconds: 3 } });
        assert.equal((await registry.get(id)).responseBody.connectionState, 'Connected');
      } finally {
        await client.close();
      }
    });
  });
}

describe('C2D over AMQP', () => {
  it('complete, reject and abandon are AMQP dispositions; the feedback says which', async () => {
    const id = 'amqp-c2d';
    const key = await createDevice(id);
    for (const [mid, data] of [
      ['c-complete', 'complete me'],
      ['c-reject', 'reject me'],
      ['c-abandon', 'abandon me'],
    ]) {
      const r = await rest('POST', `/devices/${id}/messages/deviceBound`, undefined, { raw: data, headers: { 'iothub-messageid': mid ?? '', 'iothub-ack': 'full', 'iothub-app-kind': 'test' } });
      assert.equal(r.status, 204);
    }
    const client = Client.fromConnectionString(`HostName=${HOST};DeviceId=${id};SharedAccessKey=${key}`, Amqp);
    await client.setOptions({ ca });
    const seen: string[] = [];
    // The SDK's rhea 1.0.24 merges dispositions settled in the same tick into one range with the
    // first one's outcome, so each settlement gets a turn of its own.
    let chain = Promise.resolve();
    const settle = (fn: () => Promise<unknown>) => {
      chain = chain.then(async () => {
        await new Promise((r) => setTimeout(r, 50));
        await fn();
      });
    };
    const done = new Promise<void>((resolve) => {
      client.on('message', (msg: InstanceType<typeof Message>) => {
        const text = msg.data.toString();
        seen.push(`${String(msg.messageId)}:${text}`);
        if (text === 'complete me') settle(() => client.complete(msg));
        else if (text === 'reject me') settle(() => client.reject(msg));
        else if (text === 'abandon me') {
          // Abandoned once, redelivered, then completed.
          if (seen.filter((s) => s.startsWith('c-abandon')).length === 1) settle(() => client.abandon(msg));
          else settle(() => client.complete(msg).then(() => resolve()));
        }
      });
    });
    await client.open();
    try {
      await done;
      assert.equal((await feedbackFor('c-complete')).statusCode, 'Success');
      assert.equal((await feedbackFor('c-reject')).statusCode, 'Rejected');
      assert.equal((await feedbackFor('c-abandon')).statusCode, 'Success');
      assert.equal(seen.filter((s) => s.startsWith('c-abandon')).length, 2, 'abandoned, then delivered again');
    } finally {
      await client.close();
    }
  });
});

describe('AMQP device credentials', () => {
  it('an X.509 device connects with its certificate; another device\'s token is refused', async () => {
    const cert = await makeSelfSigned('amqp-x509');
    const r = await rest('PUT', '/devices/amqp-x509', { deviceId: 'amqp-x509', authentication: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: thumbprints(cert.certPem).sha256 } } });
    assert.equal(r.status, 200, errorCode(r));
    const x = Client.fromConnectionString(`HostName=${HOST};DeviceId=amqp-x509;x509=true`, Amqp);
    await x.setOptions({ ca, cert: cert.certPem, key: cert.keyPem });
    await x.open();
    try {
      await x.sendEvent(new Message('from a certificate'));
      assert.equal((await registry.get('amqp-x509')).responseBody.connectionState, 'Connected');
    } finally {
      await x.close();
    }

    const victimKey = await createDevice('amqp-victim');
    await createDevice('amqp-attacker');
    // The attacker presents the victim's id with a token signed by its own key: refused at put-token.
    const attackerKey = (await rest('GET', '/devices/amqp-attacker')).body as { authentication: { symmetricKey: { primaryKey: string } } };
    const impostor = Client.fromConnectionString(`HostName=${HOST};DeviceId=amqp-victim;SharedAccessKey=${attackerKey.authentication.symmetricKey.primaryKey}`, Amqp);
    await impostor.setOptions({ ca });
    await assert.rejects(impostor.open());
    const victim = Client.fromConnectionString(`HostName=${HOST};DeviceId=amqp-victim;SharedAccessKey=${victimKey}`, Amqp);
    await victim.setOptions({ ca });
    await victim.open();
    await victim.close();
    await waitFor('the refusal in the log', () => (/CBS put-token refused/.test(hub.output()) ? true : undefined), 5000);
  });
});

describe('hub settings on AMQP', () => {
  it('disableDeviceSAS refuses an AMQP device with a key; a TLS 1.2 client is refused under minTlsVersion 1.3; metrics count AMQP sessions', async () => {
    const key = await createDevice('amqp-settings');
    const open = async () => {
      const c = Client.fromConnectionString(`HostName=${HOST};DeviceId=amqp-settings;SharedAccessKey=${key}`, Amqp);
      await c.setOptions({ ca });
      await c.open();
      return c;
    };
    const live = await open();
    const metrics = await rest('GET', '/metrics');
    assert.match(String(metrics.raw), /gatehouse_connections\{[^}]*protocol="amqp"[^}]*\} [1-9]/);
    assert.equal((await rest('PATCH', '/settings', { disableDeviceSAS: true })).status, 200);
    await waitFor('the SAS session to close', async () => (String((await registry.get('amqp-settings')).responseBody.connectionState).toLowerCase() === 'disconnected' ? true : undefined));
    await assert.rejects(open());
    await live.close().catch(() => undefined);
    assert.equal((await rest('PATCH', '/settings', { disableDeviceSAS: false, minTlsVersion: '1.3' })).status, 200);
    const { connect } = await import('node:tls');
    const tls12 = await new Promise<string>((resolve) => {
      const s = connect({ host: HOST, port: 5671, ca, maxVersion: 'TLSv1.2' }, () => resolve('connected'));
      s.once('error', (e: Error) => resolve(e.message));
    });
    assert.notEqual(tls12, 'connected');
    const again = await open();
    await again.close();
    assert.equal((await rest('PATCH', '/settings', { minTlsVersion: '1.2' })).status, 200);
  });
});
