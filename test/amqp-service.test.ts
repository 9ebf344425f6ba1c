/**
 * AMQP for the unmodified `azure-iothub` Client (wire doc §6.7-6.8): open (CBS put-token), send
 * with properties and ack full to an MQTT device, getFeedbackReceiver with Success, Expired and
 * Rejected records, the 51st pending message refused, an unknown device refused, a bad key
 * refused at open; and a link to an unknown address refused without harm to the connection.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import common from 'azure-iot-common';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import deviceHttp from 'azure-iot-device-http';
import rhea from 'rhea';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { restClient, policyKey, type Rest } from './support/rest.js';
import { generateSasToken } from '../src/auth/sas.js';

const { Client } = iothub;
const { Message } = common;
const HOST = '127.0.54.1';

let hub: HubProcess;
let ca: string;
let rest: Rest;
let service: InstanceType<typeof Client>;
const keys = new Map<string, string>();

type Feedback = { originalMessageId: string; deviceId: string; statusCode: string; description: string };
const feedback: Feedback[] = [];

async function waitFor<T>(what: string, fn: () => T | undefined, ms = 15_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function deviceCs(id: string): string {
  return `HostName=${HOST};DeviceId=${id};SharedAccessKey=${keys.get(id) ?? ''}`;
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  for (const id of ['mqtt-dev', 'http-dev', 'sleeper', 'full-queue']) {
    const r = await rest('PUT', `/devices/${id}`, { deviceId: id });
    assert.equal(r.status, 200);
    keys.set(id, (r.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey);
  }
  service = Client.fromConnectionString(hub.connectionString);
  await service.open();
  type FeedbackReceiver = { on(e: 'message', f: (m: { data: Buffer }) => void): void; complete(m: unknown, done: () => void): void };
  const receiver = await new Promise<FeedbackReceiver>((resolve, reject) =>
    service.getFeedbackReceiver((err, r) => (err ? reject(err) : resolve(r as unknown as FeedbackReceiver))),
  );
  receiver.on('message', (msg) => {
    for (const record of JSON.parse(msg.data.toString('utf8')) as Feedback[]) feedback.push(record);
    receiver.complete(msg, () => undefined);
  });
});

after(async () => {
  await service?.close().catch(() => undefined);
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('azure-iothub Client over AMQP', () => {
  it('sends with properties and ack full to an MQTT device; Success feedback arrives', async () => {
    const device = deviceSdk.Client.fromConnectionString(deviceCs('mqtt-dev'), deviceMqtt.Mqtt);
    await device.setOptions({ ca });
    const received = new Promise<{ data: string; props: Record<string, string>; messageId: string }>((resolve) => {
      device.on('message', (m: InstanceType<typeof deviceSdk.Message>) => {
        const props: Record<string, string> = {};
        for (let i = 0; i < m.properties.count(); i++) {
          const p = m.properties.getItem(i);
          props[p.key] = p.value;
        }
        resolve({ data: m.data.toString(), props, messageId: String(m.messageId) });
        void device.complete(m);
      });
    });
    await device.open();
    try {
      const msg = new Message('turn on');
      msg.messageId = 'c2d-amqp-1';
      msg.ack = 'full';
      msg.properties.add('colour', 'green');
      await service.send('mqtt-dev', msg);
      const got = await received;
      assert.equal(got.data, 'turn on');
      assert.equal(got.messageId, 'c2d-amqp-1');
      assert.equal(got.props.colour, 'green');
      const record = await waitFor('Success feedback', () => feedback.find((f) => f.originalMessageId === 'c2d-amqp-1'));
      assert.equal(record.statusCode, 'Success');
      assert.equal(record.deviceId, 'mqtt-dev');
    } finally {
      await device.close();
    }
  });

  it('Rejected feedback when an HTTP device rejects, Expired feedback when the TTL passes', async () => {
    const rejected = new Message('no thanks');
    rejected.messageId = 'c2d-amqp-reject';
    rejected.ack = 'full';
    await service.send('http-dev', rejected);
    const expiring = new Message('too late');
    expiring.messageId = 'c2d-amqp-expire';
    expiring.ack = 'full';
    // The SDK's rhea 1.x writes absolute_expiry_time as a long: it takes ms since the epoch, not a Date.
    expiring.expiryTimeUtc = Date.now() + 1500;
    await service.send('sleeper', expiring);

    const http = deviceSdk.Client.fromConnectionString(deviceCs('http-dev'), deviceHttp.Http);
    await http.setOptions({ ca, http: { receivePolicy: { interval: 1 } } });
    const got = new Promise<void>((resolve) => {
      http.on('message', (m: InstanceType<typeof deviceSdk.Message>) => {
        void http.reject(m).then(() => resolve());
      });
    });
    await http.open();
    try {
      await got;
    } finally {
      await http.close();
    }
    const r = await waitFor('Rejected feedback', () => feedback.find((f) => f.originalMessageId === 'c2d-amqp-reject'));
    assert.equal(r.statusCode, 'Rejected');
    const e = await waitFor('Expired feedback', () => feedback.find((f) => f.originalMessageId === 'c2d-amqp-expire'), 20_000);
    assert.equal(e.statusCode, 'Expired');
  });

  it('refuses the 51st pending message and an unknown device with the SDK error types', async () => {
    for (let i = 0; i < 50; i += 1) await service.send('full-queue', new Message(`m${i}`));
    await assert.rejects(service.send('full-queue', new Message('m51')), (err: Error) => err.name === 'DeviceMaximumQueueDepthExceededError');
    await assert.rejects(service.send('nobody', new Message('x')), (err: Error) => err.name === 'DeviceNotFoundError');
  });

  it('over AMQP on the WebSocket (AmqpWs) too', async () => {
    const ws = Client.fromConnectionString(hub.connectionString, iothub.AmqpWs);
    await ws.open();
    try {
      assert.equal((await rest('PUT', '/devices/ws-target', { deviceId: 'ws-target' })).status, 200);
      const msg = new Message('via websocket');
      msg.messageId = 'c2d-ws';
      await ws.send('ws-target', msg);
      const purged = await rest('DELETE', '/devices/ws-target/commands');
      assert.equal((purged.body as { totalMessagesPurged: number }).totalMessagesPurged, 1, 'the message sent over AmqpWs was queued');
    } finally {
      await ws.close();
    }
  });

  it('a wrong key is refused at open', async () => {
    const bad = Client.fromConnectionString(`HostName=${HOST};SharedAccessKeyName=iothubowner;SharedAccessKey=${Buffer.alloc(32, 9).toString('base64')}`);
    await assert.rejects(bad.open());
    await waitFor('the refusal in the log', () => (/CBS put-token refused/.test(hub.output()) ? true : undefined), 5000);
  });
});

describe('AMQP bad input', () => {
  const connect = () =>
    new Promise<rhea.Connection>((resolve, reject) => {
      const container = rhea.create_container();
      const conn = container.connect({ host: HOST, port: 5671, transport: 'tls', ca, servername: undefined, reconnect: false } as never);
      conn.once('connection_open', () => resolve(conn));
      conn.once('connection_error', (ctx: rhea.EventContext) => reject(new Error(String(ctx.connection.error))));
      conn.once('disconnected', (ctx: rhea.EventContext & { error?: Error }) => reject(ctx.error ?? new Error('disconnected')));
    });

  it('a link to an unknown address, and devicebound without a token, are refused; the connection stays', async () => {
    const conn = await connect();
    try {
      const unknown = await new Promise<{ condition?: string }>((resolve) => {
        const r = conn.open_receiver('/nowhere');
        r.once('receiver_close', (ctx: rhea.EventContext) => resolve((ctx.receiver?.error as { condition?: string } | undefined) ?? {}));
      });
      assert.equal(unknown.condition, 'amqp:not-found');
      const noToken = await new Promise<{ condition?: string }>((resolve) => {
        const s = conn.open_sender('/messages/devicebound');
        s.once('sender_close', (ctx: rhea.EventContext) => resolve((ctx.sender?.error as { condition?: string } | undefined) ?? {}));
      });
      assert.equal(noToken.condition, 'amqp:unauthorized-access');
      assert.ok(conn.is_open(), 'the connection is still open');
      // A device token proves the device, not the service: devicebound stays closed to it; another device's
      // token (or the right token under another device's name) is refused at put-token.
      const token = generateSasToken({ resource: `${HOST}/devices/mqtt-dev`, key: keys.get('mqtt-dev') ?? '', expiry: Math.floor(Date.now() / 1000) + 600 });
      const cbsIn = conn.open_receiver('$cbs');
      const cbsOut = conn.open_sender('$cbs');
      const replies = new Map<string, number>();
      cbsIn.on('message', (ctx: rhea.EventContext) => replies.set(String(ctx.message?.correlation_id), Number(ctx.message?.application_properties?.['status-code'])));
      await new Promise<void>((resolve) => cbsOut.once('sendable', () => resolve()));
      const put = (id: string, name: string, body: string) =>
        cbsOut.send({ to: '$cbs', reply_to: 'cbs', message_id: id, application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name }, body });
      put('own', `${HOST}/devices/mqtt-dev`, token);
      put('other', `${HOST}/devices/http-dev`, token);
      await waitFor('both put-token replies', () => (replies.size === 2 ? true : undefined), 5000);
      assert.equal(replies.get('own'), 200);
      assert.equal(replies.get('other'), 401);
      const serviceLink = await new Promise<{ condition?: string }>((resolve) => {
        const s = conn.open_sender('/messages/devicebound');
        s.once('sender_close', (ctx: rhea.EventContext) => resolve((ctx.sender?.error as { condition?: string } | undefined) ?? {}));
      });
      assert.equal(serviceLink.condition, 'amqp:unauthorized-access');
    } finally {
      conn.close();
    }
  });

  /** Writes bytes on a fresh TLS connection to the AMQP port; resolves with what came back once the hub closed it. */
  const raw = (bytes: Buffer) =>
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = tlsConnect({ host: HOST, port: 5671, ca }, () => socket.write(bytes));
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.once('close', () => resolve(Buffer.concat(chunks)));
      socket.once('error', () => undefined);
      setTimeout(() => {
        socket.destroy();
        reject(new Error('the hub kept a garbage connection open'));
      }, 10_000);
    });

  it('garbage and an oversized frame close that connection only; the hub keeps serving', async () => {
    await raw(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    const header = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0x00, 0x01, 0x00, 0x00]);
    await raw(Buffer.concat([header, Buffer.from([0x00, 0x00, 0x00, 0x09, 0xff, 0x00, 0x00, 0x00, 0x42])]));
    // A frame that declares 2 GiB: refused on its header, nothing buffered.
    await raw(Buffer.concat([header, Buffer.from([0x7f, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00])]));
    const msg = new Message('still here');
    msg.messageId = 'after-garbage';
    await service.send('sleeper', msg);
  });

  it('answers each attach with the client\'s own source and target, as a link it takes', async () => {
    // A null source (to a receiving client) or target (to a sending one) in the answer means the link
    // is refused (AMQP 1.0, 2.6.3): proton-j clients such as Azure's Java SDKs then wait for a detach
    // and never open the link.
    const conn = await connect();
    try {
      const termini = (l: rhea.Sender | rhea.Receiver) => (l as unknown as { remote: { attach?: { source?: { address?: string } | null; target?: { address?: string } | null } } }).remote.attach;
      const opened = <L extends rhea.Sender | rhea.Receiver>(l: L, event: string) => new Promise<L>((resolve) => l.once(event, () => resolve(l)));
      const cbsIn = await opened(conn.open_receiver({ source: { address: '$cbs' }, target: { address: 'cbs-replies' } }), 'receiver_open');
      const cbsOut = await opened(conn.open_sender({ target: { address: '$cbs' }, source: { address: 'cbs-requests' } }), 'sendable');
      assert.deepEqual([termini(cbsIn)?.source?.address, termini(cbsIn)?.target?.address], ['$cbs', 'cbs-replies']);
      assert.deepEqual([termini(cbsOut)?.target?.address, termini(cbsOut)?.source?.address], ['$cbs', 'cbs-requests']);
      const status = new Promise<number>((resolve) => cbsIn.on('message', (ctx: rhea.EventContext) => resolve(Number(ctx.message?.application_properties?.['status-code']))));
      const token = generateSasToken({ resource: HOST, key: policyKey(hub.dataDir, 'service'), keyName: 'service', expiry: Math.floor(Date.now() / 1000) + 600 });
      cbsOut.send({ to: '$cbs', reply_to: 'cbs-replies', message_id: 'echo', application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: HOST }, body: token });
      assert.equal(await status, 200);
      const c2d = await opened(conn.open_sender('/messages/devicebound'), 'sendable');
      assert.equal(termini(c2d)?.target?.address, '/messages/devicebound');
      const feedback = await opened(conn.open_receiver('/messages/serviceBound/feedback'), 'receiver_open');
      assert.equal(termini(feedback)?.source?.address, '/messages/serviceBound/feedback');
    } finally {
      conn.close();
    }
  });

  it('a link is detached when the token that allowed it expires without renewal', async () => {
    const conn = await connect();
    try {
      const cbsIn = conn.open_receiver('$cbs');
      const cbsOut = conn.open_sender('$cbs');
      const status = new Promise<number>((resolve) => cbsIn.on('message', (ctx: rhea.EventContext) => resolve(Number(ctx.message?.application_properties?.['status-code']))));
      await new Promise<void>((resolve) => cbsOut.once('sendable', () => resolve()));
      const token = generateSasToken({ resource: HOST, key: policyKey(hub.dataDir, 'service'), keyName: 'service', expiry: Math.floor(Date.now() / 1000) + 2 });
      cbsOut.send({ to: '$cbs', reply_to: 'cbs', message_id: 'short', application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: HOST }, body: token });
      assert.equal(await status, 200);
      const closed = await new Promise<{ condition?: string; after: number }>((resolve) => {
        const opened = Date.now();
        const s = conn.open_sender('/messages/devicebound');
        // The error is a described AMQP type: its fields are getters, read them one by one.
        s.once('sender_close', (ctx: rhea.EventContext) => resolve({ condition: (ctx.sender?.error as { condition?: string } | undefined)?.condition, after: Date.now() - opened }));
      });
      assert.equal(closed.condition, 'amqp:unauthorized-access');
      assert.ok(closed.after > 500, 'attached first, detached at expiry');
    } finally {
      conn.close();
    }
  });
});
