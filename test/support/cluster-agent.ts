/**
 * A client process for cluster tests: the unmodified Azure SDKs, run under pin-dns so the cluster's
 * hostname leads to one node. The test drives it over IPC: each request `{ id, op, args }` gets
 * `{ id, ok, result | error }`; what the device sees arrives as `{ event, ... }`.
 */
import { request } from 'node:https';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import deviceAmqp from 'azure-iot-device-amqp';
import iothub from 'azure-iothub';
import { generateSasToken } from '../../src/auth/sas.js';
import common from 'azure-iot-common';
import rhea from 'rhea';
import { EventHubConsumerClient, latestEventPosition, type Subscription } from '@azure/event-hubs';

const { NoRetry, Message } = common;

type Args = Record<string, unknown>;
type DeviceClient = InstanceType<typeof deviceSdk.Client>;

const send = (msg: unknown) => process.send?.(msg);
const devices = new Map<string, DeviceClient>();
const consumers = new Map<string, { client: EventHubConsumerClient; subscription: Subscription }>();

const transports = { mqtt: deviceMqtt.Mqtt, 'mqtt-ws': deviceMqtt.MqttWs, amqp: deviceAmqp.Amqp } as const;

async function openDevice(a: Args): Promise<unknown> {
  const name = String(a.name);
  const Transport = transports[(a.transport as keyof typeof transports | undefined) ?? 'mqtt'];
  const client = deviceSdk.Client.fromConnectionString(String(a.connectionString), Transport);
  if (typeof a.cert === 'string') await client.setOptions({ cert: a.cert, key: String(a.key) });
  // A client that must not come back on its own (the test watches its session end) gives up at once.
  if (a.retry === false) client.setRetryPolicy(new NoRetry());
  client.on('message', (msg) => {
    send({ event: 'c2d', name, body: msg.data.toString(), messageId: msg.messageId });
    client.complete(msg, () => undefined);
  });
  client.on('disconnect', (err?: Error) => send({ event: 'disconnect', name, error: err?.message ?? null }));
  client.on('error', (err: Error) => send({ event: 'error', name, error: err.message }));
  await client.open();
  client.onDeviceMethod(String(a.method ?? 'echo'), (req, res) => {
    send({ event: 'method', name, payload: req.payload });
    res.send(200, { echo: req.payload, at: name }, () => undefined);
  });
  const twin = await client.getTwin();
  twin.on('properties.desired', (patch: Record<string, unknown>) => send({ event: 'desired', name, patch }));
  devices.set(name, client);
  return { opened: name };
}

function device(a: Args): DeviceClient {
  const c = devices.get(String(a.name));
  if (c === undefined) throw new Error(`no device client ${String(a.name)}`);
  return c;
}

function rest(a: Args): Promise<{ status: number; body: unknown }> {
  const host = String(a.hostname);
  const token = generateSasToken({ resource: host, key: String(a.key), keyName: String(a.keyName ?? 'iothubowner'), expiry: Date.now() / 1000 + 600 });
  const payload = a.body === undefined ? undefined : Buffer.from(JSON.stringify(a.body));
  const path = `${String(a.path)}${String(a.path).includes('?') ? '&' : '?'}api-version=2021-04-12`;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port: 443,
        method: String(a.method),
        path,
        headers: {
          authorization: token,
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': payload.length }),
          ...(a.ifMatch === undefined ? {} : { 'if-match': String(a.ifMatch) }),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let body: unknown = text;
          try {
            body = text === '' ? undefined : JSON.parse(text);
          } catch {
            /* not JSON: keep the text */
          }
          resolve({ status: res.statusCode ?? 0, body });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/**
 * A fleet: many devices in this process, each sending QoS 1 telemetry on a timer (message ids
 * `<device>:<n>`) and completing every C2D message. What was acknowledged and received is kept for
 * the test to compare with the hub's event stream and what it accepted.
 */
const fleet = { clients: [] as DeviceClient[], acked: new Set<string>(), failedSends: 0, c2d: [] as string[], timers: [] as NodeJS.Timeout[], running: false };

async function startFleet(a: Args): Promise<unknown> {
  const list = a.devices as Array<{ id: string; connectionString: string }>;
  const intervalMs = Number(a.intervalMs ?? 500);
  fleet.running = true;
  await Promise.all(
    list.map(async ({ id, connectionString }) => {
      const client = deviceSdk.Client.fromConnectionString(connectionString, deviceMqtt.Mqtt);
      client.on('message', (msg) => {
        fleet.c2d.push(msg.data.toString());
        client.complete(msg, () => undefined);
      });
      client.on('error', () => undefined);
      await client.open();
      fleet.clients.push(client);
      let n = 0;
      const tick = () => {
        if (!fleet.running) return;
        const messageId = `${id}:${n++}`;
        const m = new deviceSdk.Message(messageId);
        m.messageId = messageId;
        client.sendEvent(m).then(
          () => fleet.acked.add(messageId),
          () => fleet.failedSends++,
        );
        fleet.timers.push(setTimeout(tick, intervalMs));
      };
      fleet.timers.push(setTimeout(tick, Math.random() * intervalMs));
    }),
  );
  return { open: fleet.clients.length };
}

/**
 * A service's feedback receiver (azure-iothub getFeedbackReceiver, which accepts each batch as it
 * arrives): the original message ids of the records in each batch it got, in order.
 */
type FeedbackReceiver = { on(e: 'message', f: (m: { data: Buffer }) => void): void; complete(m: unknown, done: () => void): void };
const feedback = { client: undefined as InstanceType<typeof iothub.Client> | undefined, got: [] as string[][] };
const feedbackIds = (body: Buffer) => (JSON.parse(body.toString('utf8')) as Array<{ originalMessageId: string }>).map((r) => r.originalMessageId);

async function startFeedback(a: Args): Promise<unknown> {
  const client = iothub.Client.fromConnectionString(String(a.connectionString));
  await client.open();
  const receiver = await new Promise<FeedbackReceiver>((resolve, reject) =>
    client.getFeedbackReceiver((err, r) => (err ? reject(err) : resolve(r as unknown as FeedbackReceiver))),
  );
  receiver.on('message', (msg) => {
    const ids = feedbackIds(msg.data);
    feedback.got.push(ids);
    send({ event: 'feedback', ids, by: 'sdk' });
    receiver.complete(msg, () => undefined);
  });
  feedback.client = client;
  return { receiving: true };
}

/**
 * A back end that takes a feedback batch and hangs: a plain AMQP receiver (rhea, no auto-accept)
 * that never settles what it gets. The SDK cannot be made to do this.
 */
async function holdFeedback(a: Args): Promise<unknown> {
  const host = String(a.hostname);
  const conn = rhea.create_container().connect({ host, port: 5671, transport: 'tls', servername: host, reconnect: false } as never);
  await new Promise<void>((resolve, reject) => {
    conn.once('connection_open', () => resolve());
    conn.once('disconnected', (ctx: rhea.EventContext & { error?: Error }) => reject(ctx.error ?? new Error('disconnected')));
  });
  const cbsIn = conn.open_receiver('$cbs');
  const cbsOut = conn.open_sender('$cbs');
  const status = new Promise<number>((resolve) => cbsIn.once('message', (ctx: rhea.EventContext) => resolve(Number(ctx.message?.application_properties?.['status-code']))));
  await new Promise<void>((resolve) => cbsOut.once('sendable', () => resolve()));
  const token = generateSasToken({ resource: host, key: String(a.key), keyName: 'iothubowner', expiry: Math.floor(Date.now() / 1000) + 600 });
  cbsOut.send({ to: '$cbs', reply_to: 'cbs', message_id: 'hold', application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: host }, body: token });
  if ((await status) !== 200) throw new Error('put-token refused');
  const link = conn.open_receiver({ source: { address: '/messages/serviceBound/feedback' }, autoaccept: false });
  link.on('message', (ctx: rhea.EventContext) => {
    const body = ctx.message?.body as { content?: Buffer } | Buffer;
    const ids = feedbackIds(Buffer.isBuffer(body) ? body : Buffer.from(body.content ?? []));
    send({ event: 'feedback', ids, by: 'hold' });
  });
  return { holding: true };
}

const ops: Record<string, (a: Args) => Promise<unknown>> = {
  'feedback.start': startFeedback,
  'feedback.hold': holdFeedback,
  'feedback.got': async () => feedback.got,
  'feedback.stop': async () => {
    await feedback.client?.close();
    feedback.client = undefined;
    return { stopped: true };
  },
  'fleet.start': startFleet,
  'fleet.stats': async () => ({ acked: [...fleet.acked], failedSends: fleet.failedSends, c2d: fleet.c2d }),
  'fleet.quiet': async () => {
    fleet.running = false;
    for (const t of fleet.timers) clearTimeout(t);
    return { stopped: true };
  },
  'device.open': openDevice,
  'device.send': async (a) => {
    const m = new deviceSdk.Message(String(a.body));
    for (const [k, v] of Object.entries((a.props as Record<string, string> | undefined) ?? {})) m.properties.add(k, v);
    await device(a).sendEvent(m);
    return { sent: true };
  },
  'device.close': async (a) => {
    await device(a).close();
    devices.delete(String(a.name));
    return { closed: true };
  },
  'service.c2d': async (a) => {
    const client = iothub.Client.fromConnectionString(String(a.connectionString));
    await client.open();
    try {
      await client.send(String(a.deviceId), String(a.body));
    } finally {
      await client.close();
    }
    return { sent: true };
  },
  /** One service client, many messages; a send that fails is not retried (the test counts what was accepted). */
  'service.c2dMany': async (a) => {
    // A send whose connection died may hang in the SDK's retries: after 5 s it counts as not accepted
    // (the hub may still have it: the test only asks that what was acknowledged arrives).
    const within = <T>(p: Promise<T>, ms: number) => Promise.race([p, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('timeout')), ms).unref())]);
    const client = iothub.Client.fromConnectionString(String(a.connectionString));
    const accepted: string[] = [];
    let failed = 0;
    try {
      await within(client.open(), 5000);
      for (const m of a.messages as Array<{ deviceId: string; body: string }>) {
        // With an ack mode, the body is the message id too (the feedback names it).
        const message = new Message(m.body);
        if (typeof a.ack === 'string') {
          message.messageId = m.body;
          message.ack = a.ack;
        }
        await within(client.send(m.deviceId, message), 5000).then(
          () => accepted.push(m.body),
          () => failed++,
        );
      }
    } catch {
      failed = (a.messages as unknown[]).length - accepted.length;
    } finally {
      void within(client.close(), 2000).catch(() => undefined);
    }
    return { accepted, failed };
  },
  'service.method': async (a) => {
    const client = iothub.Client.fromConnectionString(String(a.connectionString));
    const r = await client.invokeDeviceMethod(String(a.deviceId), { methodName: String(a.methodName ?? 'echo'), payload: a.payload, responseTimeoutInSeconds: 10 });
    return r.result;
  },
  'service.twin': async (a) => {
    const registry = iothub.Registry.fromConnectionString(String(a.connectionString));
    const r = await registry.updateTwin(String(a.deviceId), a.patch as Record<string, unknown>, '*');
    return r.responseBody.properties?.desired;
  },
  'service.disable': async (a) => {
    const registry = iothub.Registry.fromConnectionString(String(a.connectionString));
    const { responseBody } = await registry.get(String(a.deviceId));
    await registry.update({ deviceId: responseBody.deviceId, status: 'disabled', etag: responseBody.etag });
    return { disabled: true };
  },
  rest,
  /** An Event Hubs receiver on one partition (with an owner level: an epoch receiver); its errors arrive as `eh-error` events. */
  'eh.subscribe': async (a) => {
    const tag = String(a.tag);
    const client = new EventHubConsumerClient(String(a.consumerGroup ?? '$Default'), String(a.connectionString));
    const subscription = client.subscribe(
      String(a.partition),
      {
        processEvents: async () => undefined,
        processError: async (err: Error & { code?: string }) => void send({ event: 'eh-error', tag, code: err.code ?? err.name, message: err.message }),
        processInitialize: async () => void send({ event: 'eh-open', tag }),
      },
      { startPosition: latestEventPosition, maxWaitTimeInSeconds: 1, ...(a.ownerLevel === undefined ? {} : { ownerLevel: Number(a.ownerLevel) }) },
    );
    consumers.set(tag, { client, subscription });
    return { subscribed: tag };
  },
  'eh.close': async (a) => {
    const c = consumers.get(String(a.tag));
    consumers.delete(String(a.tag));
    await c?.subscription.close();
    await c?.client.close();
    return { closed: true };
  },
};

process.on('message', (m: { id: number; op: string; args: Args }) => {
  const op = ops[m.op];
  if (op === undefined) {
    send({ id: m.id, ok: false, error: `unknown op ${m.op}` });
    return;
  }
  op(m.args).then(
    (result) => send({ id: m.id, ok: true, result }),
    (err: Error) => send({ id: m.id, ok: false, error: `${err.name}: ${err.message}` }),
  );
});
send({ event: 'ready' });
