/**
 * A device that sends requests and never reads its socket (issue 14 item 7): the hub must stop
 * reading from it instead of buffering every answer, keep its memory bounded while the device
 * sits there, close a connection whose pending output passes the cap with the reason in the log,
 * and give the memory back once the device is gone. Driven over real TLS against a real hub
 * process; the hub's resident memory is VmRSS from /proc/<pid>/status.
 *
 * Each device's twin is made large (about 28 KB of desired properties), so that the answers to a
 * few thousand twin GETs (a few hundred KB of requests) add up to well over a hundred megabytes.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import mqttPacket, { type Packet } from 'mqtt-packet';
import rhea, { type Connection, type EventContext, type Message, type Receiver, type Sender } from 'rhea';
import { WebSocket, createWebSocketStream } from 'ws';
import { connectPacket, deviceToken, rawMqtt, type RawMqtt } from './support/raw-mqtt.js';
import { policyKey, restClient, type Rest } from './support/rest.js';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';

const HOST = '127.0.63.1';
/** Twin GETs each hoarding device sends: ~35 bytes each on MQTT, answered with ~28 KB each (280 MB). */
const REQUESTS = 10_000;
/**
 * The hub may grow by this much while a device hoards. It does answer until the kernel's socket
 * buffers are full (a few MB on loopback), and the garbage of those answers (the twin parsed,
 * serialized, framed) grows V8's heap by a few tens of MB that an idle process keeps.
 */
const GROWTH_BOUND_MB = 64;
/** ... and must be back within this much of where it started once the device is gone. */
const SETTLED_MB = 48;

let hub: HubProcess;
let ca: string;
let rest: Rest;

function rssMb(): number {
  const pid = hub.proc.pid;
  assert.ok(pid !== undefined);
  let status = '';
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    // gone
  }
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  if (m?.[1] === undefined) assert.fail(`the hub process is gone:\n${hub.output().split('\n').slice(-15).join('\n')}`);
  return Number(m[1]) / 1024;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The highest RSS seen over `ms`, sampled every 100 ms; stops early once it passes `stopAbove`. */
async function peakRss(ms: number, stopAbove: number): Promise<number> {
  let peak = rssMb();
  const until = Date.now() + ms;
  while (Date.now() < until && peak <= stopAbove) {
    await sleep(100);
    peak = Math.max(peak, rssMb());
  }
  return peak;
}

/** Waits up to `ms` for the RSS to drop to `bound`; returns the last reading. */
async function rssDropsTo(bound: number, ms: number): Promise<number> {
  const until = Date.now() + ms;
  let now = rssMb();
  while (now > bound && Date.now() < until) {
    await sleep(250);
    now = rssMb();
  }
  return now;
}

/** A device whose twin answer is about 28 KB (7 desired strings of 4,000 characters). */
async function hoarder(id: string): Promise<string> {
  const r = await rest('PUT', `/devices/${id}`, { deviceId: id });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const desired = Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`blob${i}`, String.fromCharCode(97 + i).repeat(4000)]));
  const t = await rest('PATCH', `/twins/${id}`, { properties: { desired } }, { headers: { 'if-match': '*' } });
  assert.equal(t.status, 200, JSON.stringify(t.body));
  return (r.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey;
}

function twinGets(n: number): Buffer {
  return Buffer.concat(
    Array.from({ length: n }, (_, i) => mqttPacket.generate({ cmd: 'publish', topic: `$iothub/twin/GET/?$rid=${i}`, payload: Buffer.alloc(0), qos: 0, retain: false, dup: false })),
  );
}

/** The first line of the hub's log that matches, waiting up to `ms` for it. */
async function closedLine(pattern: RegExp, ms: number): Promise<string | undefined> {
  const until = Date.now() + ms;
  for (;;) {
    const line = hub
      .output()
      .split('\n')
      .find((l) => pattern.test(l));
    if (line !== undefined || Date.now() > until) return line;
    await sleep(100);
  }
}

/**
 * Updates the device's desired properties (the whole ~28 KB patch is pushed to it each time) until
 * the hub's log has `closed`; the kernel's socket buffers take a few MB before the hub's output
 * grows. Returns the log line, or undefined after 1,500 updates.
 */
async function pushUntilClosed(id: string, closed: RegExp): Promise<string | undefined> {
  for (let i = 0; i < 1500; i++) {
    const desired = Object.fromEntries(Array.from({ length: 7 }, (_, k) => [`blob${k}`, String.fromCharCode(97 + ((i + k) % 26)).repeat(4000)]));
    const t = await rest('PATCH', `/twins/${id}`, { properties: { desired } }, { headers: { 'if-match': '*' } });
    assert.equal(t.status, 200);
    if (i % 20 === 0) {
      const line = await closedLine(closed, 0);
      if (line !== undefined) return line;
    }
  }
  return closedLine(closed, 5000);
}

/** The part every protocol shares: hoard, watch the hub's memory, leave, watch it come back. */
async function hoardAndLeave(what: string, start: () => Promise<{ leave(): void }>): Promise<void> {
  const before = rssMb();
  const client = await start();
  const peak = await peakRss(8000, before + GROWTH_BOUND_MB);
  const growth = peak - before;
  process.stdout.write(`# ${what}: hub RSS ${before.toFixed(1)} MB before, peak ${peak.toFixed(1)} MB while the device hoards (+${growth.toFixed(1)} MB)\n`);
  client.leave();
  const settled = await rssDropsTo(before + SETTLED_MB, 20_000);
  process.stdout.write(`# ${what}: hub RSS ${settled.toFixed(1)} MB after the device left\n`);
  assert.ok(growth < GROWTH_BOUND_MB, `${what}: the hub grew by ${growth.toFixed(1)} MB while a device did not read (bound ${GROWTH_BOUND_MB} MB)`);
  assert.ok(settled <= before + SETTLED_MB, `${what}: ${settled.toFixed(1)} MB is still held after the device left (started at ${before.toFixed(1)} MB)`);
}

before(async () => {
  hub = await startHubProcess({ address: HOST, extraArgs: ['--log-level', 'info'] });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  // Warm up the paths the cases use (twin GETs answered over MQTT, then over AMQP), so that the
  // first case of each does not pay for lazy loading.
  const key = await hoarder('warm-up');
  const c = await rawMqtt(HOST, { ca });
  c.send(connectPacket(HOST, 'warm-up', deviceToken(HOST, 'warm-up', key)));
  assert.equal((await c.next())?.cmd, 'connack');
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$iothub/twin/res/#', qos: 0 }] });
  assert.equal((await c.next())?.cmd, 'suback');
  c.sendRaw(twinGets(100));
  for (let i = 0; i < 100; i++) assert.equal((await c.next())?.cmd, 'publish');
  c.end();
  // ... and over AMQP.
  const a = await amqpTwinLinks('warm-up', key);
  a.replies.add_credit(100);
  let answers = 0;
  const all = new Promise<void>((resolve) => a.replies.on('message', () => ++answers === 100 && resolve()));
  for (let i = 0; i < 100; i++) twinGet(a.requests, i);
  await all;
  a.leave();
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('a device that never reads', () => {
  it('MQTT: twin GETs without reading stall; the hub stays bounded and lets go when the device leaves', async () => {
    const id = 'hoard-mqtt';
    const key = await hoarder(id);
    let device: RawMqtt | undefined;
    await hoardAndLeave('MQTT', async () => {
      device = await rawMqtt(HOST, { ca });
      device.send(connectPacket(HOST, id, deviceToken(HOST, id, key)));
      assert.equal((await device.next())?.cmd, 'connack');
      device.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$iothub/twin/res/#', qos: 0 }] });
      assert.equal((await device.next())?.cmd, 'suback');
      // From here on the device reads nothing: its receive window fills and the hub's writes stop draining.
      device.socket.pause();
      device.sendRaw(twinGets(REQUESTS));
      return { leave: () => device?.end() };
    });
    // The hub noticed the device leaving (its pending writes fail) and closed the connection.
    assert.ok(await closedLine(new RegExp(`"event":"mqtt.closed","clientId":"${id}"`), 10_000), 'the hub logged the close');
  });

  it('MQTT over WebSocket: the same through the ws stream', async () => {
    const id = 'hoard-mqtt-ws';
    const key = await hoarder(id);
    await hoardAndLeave('MQTT-WS', async () => {
      const ws = new WebSocket(`wss://${HOST}/$iothub/websocket`, 'mqtt', { ca });
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      ws.on('error', () => undefined);
      const stream = createWebSocketStream(ws);
      stream.on('error', () => undefined);
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      const packets: Packet[] = [];
      parser.on('packet', (p: Packet) => packets.push(p));
      stream.on('data', (c: Buffer) => parser.parse(c));
      const nextPacket = async (): Promise<Packet | undefined> => {
        for (let i = 0; i < 100 && packets.length === 0; i++) await sleep(50);
        return packets.shift();
      };
      stream.write(mqttPacket.generate(connectPacket(HOST, id, deviceToken(HOST, id, key))));
      assert.equal((await nextPacket())?.cmd, 'connack');
      stream.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$iothub/twin/res/#', qos: 0 }] }));
      assert.equal((await nextPacket())?.cmd, 'suback');
      // Stop reading the socket under the WebSocket (ws pauses its TLS socket).
      ws.pause();
      stream.write(twinGets(REQUESTS));
      return { leave: () => ws.terminate() };
    });
    assert.ok(await closedLine(new RegExp(`"event":"mqtt.closed","clientId":"${id}"`), 10_000), 'the hub logged the close');
  });

  it('MQTT: pending output over the cap (desired patches pushed to a device that does not read) closes it with the reason', async () => {
    const id = 'hoard-desired';
    const key = await hoarder(id);
    const device = await rawMqtt(HOST, { ca });
    device.send(connectPacket(HOST, id, deviceToken(HOST, id, key)));
    assert.equal((await device.next())?.cmd, 'connack');
    device.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$iothub/twin/PATCH/properties/desired/#', qos: 0 }] });
    assert.equal((await device.next())?.cmd, 'suback');
    device.socket.pause();
    try {
      const line = await pushUntilClosed(id, new RegExp(`"event":"mqtt.closed","clientId":"${id}".*output buffer over \\d+ bytes: the client is not reading`));
      assert.ok(line, 'the hub closed the connection over its pending output');
      assert.match(line, /"level":40/, 'logged as a warning');
    } finally {
      device.end();
    }
  });

  it('AMQP: pending output over the cap (desired patches to a device that gives credit and does not read) closes it with the reason', async () => {
    const id = 'hoard-desired-amqp';
    const key = await hoarder(id);
    const { requests, replies, stopReading, leave } = await amqpTwinLinks(id, key);
    replies.add_credit(1_000_000);
    const subscribed = new Promise<unknown>((resolve) => replies.once('message', (ctx: EventContext) => resolve((ctx.message as Message).message_annotations?.status)));
    requests.send({ correlation_id: 'sub', message_annotations: { operation: 'PUT', resource: '/notifications/twin/properties/desired' }, body: rhea.message.data_section(Buffer.alloc(0)) });
    assert.equal(await subscribed, 200);
    stopReading();
    try {
      const line = await pushUntilClosed(id, /"event":"amqp.closed","protocol":"amqp".*output buffer over \d+ bytes: the client is not reading/);
      assert.ok(line, 'the hub closed the connection over its pending output');
      assert.match(line, /"level":40/, 'logged as a warning');
    } finally {
      leave();
    }
  });

  it('AMQP: twin GETs on a twin link without reading; the hub stays bounded and lets go when the device leaves', async () => {
    const id = 'hoard-amqp';
    const key = await hoarder(id);
    await hoardAndLeave('AMQP', () => amqpHoarder(id, key));
  });

  it('AMQP over WebSocket: the same through the WebSocket', async () => {
    const id = 'hoard-amqp-ws';
    const key = await hoarder(id);
    await hoardAndLeave('AMQP-WS', () => amqpHoarder(id, key, { credit: 1_000_000, read: false, transport: 'ws' }));
  });

  it('AMQP: twin GETs on a link the device gives no credit: answers do not pile up, the hub stays up', async () => {
    const id = 'hoard-amqp-nocredit';
    const key = await hoarder(id);
    await hoardAndLeave('AMQP without credit', () => amqpHoarder(id, key, { credit: 0, read: true }));
    assert.equal(hub.proc.exitCode, null, 'the hub is still running');
    const line = await closedLine(new RegExp(`"event":"amqp.device-closed","deviceId":"${id}"`), 5000);
    assert.match(line ?? '', /twin answers wait for link credit: the client is not taking them/);
  });
});

interface TwinLinks {
  conn: Connection;
  /** Stops reading the connection (its TLS socket, or the WebSocket's). */
  stopReading(): void;
  leave(): void;
  /** Sends twin GETs presettled. */
  requests: Sender;
  /** Takes the answers presettled, on the credit the caller gives. */
  replies: Receiver;
}

/** A rhea client (AMQPS, or AMQP over WebSocket) that authenticates a device over CBS and attaches both ends of its twin link. */
async function amqpTwinLinks(id: string, key: string, transport: 'tls' | 'ws' = 'tls'): Promise<TwinLinks> {
  const container = rhea.create_container({ id: `client-${id}` });
  let ws: WebSocket | undefined;
  class CapturedWebSocket extends WebSocket {
    constructor(...args: ConstructorParameters<typeof WebSocket>) {
      super(...args);
      ws = this;
    }
  }
  const common = { idle_time_out: 0, reconnect: false, session_buffer_size: REQUESTS * 2 };
  const conn: Connection = container.connect(
    (transport === 'tls'
      ? { host: HOST, port: 5671, transport: 'tls', ca, ...common }
      : { connection_details: container.websocket_connect(CapturedWebSocket)(`wss://${HOST}/$iothub/websocket`, ['AMQPWSB10'], { ca }), ...common }) as never,
  );
  conn.on('error', () => undefined);
  conn.on('disconnected', () => undefined);
  await new Promise<void>((resolve, reject) => {
    conn.once('connection_open', () => resolve());
    conn.once('disconnected', (ctx: EventContext) => reject(ctx.error ?? new Error('disconnected')));
  });
  const cbsOut = conn.open_sender('$cbs');
  const cbsIn = conn.open_receiver({ source: { address: '$cbs' } });
  await new Promise<void>((resolve) => cbsOut.once('sendable', () => resolve()));
  const status = new Promise<number>((resolve) => cbsIn.once('message', (ctx: EventContext) => resolve(Number((ctx.message as Message).application_properties?.['status-code']))));
  cbsOut.send({
    message_id: 1,
    reply_to: 'cbs',
    application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: `${HOST}/devices/${id}` },
    body: deviceToken(HOST, id, key),
  });
  assert.equal(await status, 200);
  const address = `/devices/${id}/twin`;
  const replies: Receiver = conn.open_receiver({ source: { address }, snd_settle_mode: 1, credit_window: 0, autoaccept: false } as never);
  const requests: Sender = conn.open_sender({ target: { address }, snd_settle_mode: 1 } as never);
  await new Promise<void>((resolve) => requests.once('sendable', () => resolve()));
  await new Promise<void>((resolve) => (replies.is_open() ? resolve() : replies.once('receiver_open', () => resolve())));
  const socket = (conn as unknown as { socket: TLSSocket }).socket;
  return {
    conn,
    requests,
    replies,
    stopReading: () => (ws === undefined ? socket.pause() : ws.pause()),
    leave: () => (ws === undefined ? socket.destroy(new Error('the device leaves')) : ws.terminate()),
  };
}

function twinGet(requests: Sender, i: number): void {
  requests.send({ correlation_id: `r${i}`, message_annotations: { operation: 'GET' }, body: rhea.message.data_section(Buffer.alloc(0)) });
}

/**
 * A device over AMQP that gives `credit` for twin answers (presettled), stops reading its socket
 * unless `read`, and sends twin GETs. It ignores the hub's flow control on the way out (it gives
 * itself the credit), as an attacker's client would.
 */
async function amqpHoarder(id: string, key: string, opts: { credit: number; read: boolean; transport?: 'tls' | 'ws' } = { credit: 1_000_000, read: false }): Promise<{ leave(): void }> {
  const { requests, replies, stopReading, leave } = await amqpTwinLinks(id, key, opts.transport);
  if (opts.credit > 0) replies.add_credit(opts.credit);
  await sleep(200);
  if (!opts.read) stopReading();
  (requests as unknown as { credit: number }).credit = 1_000_000;
  for (let i = 0; i < REQUESTS; i++) {
    twinGet(requests, i);
    if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
  }
  return { leave };
}
