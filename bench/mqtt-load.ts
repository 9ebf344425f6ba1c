/**
 * The MQTT load generator that bench/mqtt and bench/cluster share: child processes speaking MQTT
 * 3.1.1 with mqtt-packet over node:tls (the same code for every server, Gatehouse or Mosquitto),
 * driven over IPC by the orchestrator (`Generator`), plus the orchestrator's helpers that start
 * Mosquitto and create the SAS devices the generators connect as.
 *
 * Tasks: connect (TLS + CONNECT/CONNACK + DISCONNECT, bounded concurrency), publish-open/run/close
 * (QoS 1 telemetry with a window of unacknowledged PUBLISHes per connection), idle-open/close
 * (connections held open), rtt (one device answering direct methods and taking C2D while a
 * service client calls over HTTPS, one call at a time).
 *
 *   node dist/bench/mqtt-load.js --role gen   (started by Generator.start, never by hand)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import mqttPacket, { type IConnectPacket, type Packet } from 'mqtt-packet';
import { generateSasToken } from '../src/auth/sas.js';
import { issueServerCertificate } from '../src/pki/dev-ca.js';
import { argString, percentile, reapOnExit, runPool, sleep, waitPort, withTimeout } from './support.js';
import { ROOT } from '../test/support/hub-process.js';
import { deviceToken } from '../test/support/raw-mqtt.js';

export const API = 'api-version=2021-04-12';
export const DEVICE_PREFIX = 'bench-';
export const RTT_DEVICE = 'bench-rtt';

export function deviceId(i: number): string {
  return `${DEVICE_PREFIX}${String(i).padStart(5, '0')}`;
}

// ------------------------------------------------------------------------- load generator side

/**
 * How a generator authenticates: device SAS tokens (the hub) or one user/password (Mosquitto).
 * `x509`: each device presents its own self-signed certificate (registered by thumbprint), read
 * from `certsFile` (JSON: device id -> { cert, key } PEMs); `echo` with a `certsFile` presents the
 * same certificates to the node:tls server (the TLS floor with client certificates).
 */
export type AuthSpec =
  | { kind: 'sas'; hubHost: string; key: string }
  | { kind: 'x509'; hubHost: string; certsFile: string }
  | { kind: 'password'; username: string; password: string }
  | { kind: 'echo'; certsFile?: string };

export interface Target {
  /** Where to connect (an address). */
  host: string;
  port: number;
  caPem: string;
  auth: AuthSpec;
  /** The name the server certificate is for, when it is not `host` (cluster nodes share one hostname). */
  servername?: string;
}

const tokenCache = new Map<string, string>();

function connectFor(auth: AuthSpec, id: string, keepalive: number): IConnectPacket {
  const base = { cmd: 'connect' as const, protocolId: 'MQTT' as const, protocolVersion: 4 as const, clean: false, clientId: id, keepalive };
  if (auth.kind === 'sas') {
    // Keyed by hub too: one generator may serve several hubs with the same device ids.
    const cacheKey = `${auth.hubHost}/${id}`;
    let token = tokenCache.get(cacheKey);
    if (token === undefined) {
      token = deviceToken(auth.hubHost, id, auth.key, Math.floor(Date.now() / 1000) + 3600);
      tokenCache.set(cacheKey, token);
    }
    return { ...base, username: `${auth.hubHost}/${id}/?${API}`, password: Buffer.from(token) };
  }
  if (auth.kind === 'x509') return { ...base, username: `${auth.hubHost}/${id}/?${API}` };
  if (auth.kind === 'password') return { ...base, username: auth.username, password: Buffer.from(auth.password) };
  throw new Error('no MQTT CONNECT for the echo server');
}

const contexts = new Map<string, SecureContext>();
/** One secure context per CA: parsing the CA on every connect would be client cost, not server cost. */
function contextFor(caPem: string): SecureContext {
  let c = contexts.get(caPem);
  if (c === undefined) {
    c = createSecureContext({ ca: caPem });
    contexts.set(caPem, c);
  }
  return c;
}

const certFiles = new Map<string, Record<string, { cert: string; key: string }>>();
/** The device's own context (CA + its certificate and key), made once: client cost, not server cost. */
function deviceContextFor(caPem: string, certsFile: string, id: string): SecureContext {
  const cacheKey = `${certsFile}\n${id}\n${caPem}`;
  let c = contexts.get(cacheKey);
  if (c === undefined) {
    let certs = certFiles.get(certsFile);
    if (certs === undefined) {
      certs = JSON.parse(readFileSync(certsFile, 'utf8')) as Record<string, { cert: string; key: string }>;
      certFiles.set(certsFile, certs);
    }
    const mine = certs[id];
    if (mine === undefined) throw new Error(`no certificate for ${id} in ${certsFile}`);
    c = createSecureContext({ ca: caPem, cert: mine.cert, key: mine.key });
    contexts.set(cacheKey, c);
  }
  return c;
}

function openTls(t: Target, timeoutMs = 10_000, id?: string): Promise<TLSSocket> {
  const certsFile = t.auth.kind === 'x509' || t.auth.kind === 'echo' ? t.auth.certsFile : undefined;
  const secureContext = certsFile === undefined || id === undefined ? contextFor(t.caPem) : deviceContextFor(t.caPem, certsFile, id);
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: t.host, port: t.port, secureContext, ...(t.servername === undefined ? {} : { servername: t.servername }) });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('TLS handshake timed out'));
    }, timeoutMs);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.setNoDelay(true);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Packets of one socket as a queue; `next` resolves with undefined once the socket closed. */
export class Wire {
  readonly #queue: Packet[] = [];
  readonly #waiters: Array<(p: Packet | undefined) => void> = [];
  closed = false;
  onPacket: ((p: Packet) => boolean) | undefined;
  readonly closedP: Promise<void>;

  constructor(readonly socket: TLSSocket) {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (p: Packet) => {
      if (this.onPacket?.(p) === true) return;
      const w = this.#waiters.shift();
      if (w !== undefined) w(p);
      else this.#queue.push(p);
    });
    parser.on('error', () => socket.destroy());
    socket.on('data', (c: Buffer) => parser.parse(c));
    socket.on('error', () => undefined);
    this.closedP = new Promise((resolve) =>
      socket.once('close', () => {
        this.closed = true;
        for (const w of this.#waiters.splice(0)) w(undefined);
        resolve();
      }),
    );
  }

  send(p: Packet): void {
    this.socket.write(mqttPacket.generate(p));
  }

  next(timeoutMs = 10_000): Promise<Packet | undefined> {
    const q = this.#queue.shift();
    if (q !== undefined) return Promise.resolve(q);
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(new Error('no packet in time'));
      }, timeoutMs);
      const w = (p: Packet | undefined) => {
        clearTimeout(t);
        resolve(p);
      };
      this.#waiters.push(w);
    });
  }
}

export const DISCONNECT = mqttPacket.generate({ cmd: 'disconnect' });

export async function mqttConnect(t: Target, id: string, keepalive = 60): Promise<Wire> {
  const socket = await openTls(t);
  const wire = new Wire(socket);
  wire.send(connectFor(t.auth, id, keepalive));
  const p = await wire.next();
  if (p?.cmd !== 'connack') {
    socket.destroy();
    throw new Error(p === undefined ? 'closed before CONNACK' : `${p.cmd} instead of CONNACK`);
  }
  if (p.returnCode !== 0) {
    socket.destroy();
    throw new Error(`CONNACK ${String(p.returnCode)}`);
  }
  return wire;
}

export function waitClose(socket: TLSSocket, ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed && socket.readyState === 'closed') return resolve();
    const t = setTimeout(() => {
      socket.destroy();
      resolve();
    }, ms);
    socket.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

export interface CpuWindow {
  seconds: number;
  genCpuPct: number;
}

function cpuWindow<T>(fn: () => Promise<T>): Promise<T & CpuWindow> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  return fn().then((r) => {
    const c = process.cpuUsage(c0);
    const seconds = (performance.now() - t0) / 1000;
    return { ...r, seconds, genCpuPct: ((c.user + c.system) / 1e6 / seconds) * 100 };
  });
}

export interface ConnectResult extends CpuWindow {
  done: number;
  latencies: number[];
  errors: number;
  firstError: string | undefined;
  p50ms: number;
  p99ms: number;
  protocol: string;
  cipher: string;
}

const ECHO_BYTES = Buffer.from('ping');

/** (a) N × (TLS handshake + CONNECT + CONNACK + DISCONNECT), or handshake + echo for node:tls. */
async function taskConnect(t: Target, n: number, concurrency: number, devices: number, maxSeconds: number, offset = 0): Promise<ConnectResult> {
  const latencies: number[] = [];
  let protocol = '';
  let cipher = '';
  const deadline = performance.now() + maxSeconds * 1000;
  const r = await cpuWindow(() =>
    runPool(n, concurrency, deadline, async (i) => {
      const t0 = performance.now();
      const id = deviceId(offset + (i % devices));
      const socket = await openTls(t, 10_000, id);
      if (protocol === '') {
        protocol = socket.getProtocol() ?? '';
        cipher = socket.getCipher().name;
      }
      try {
        if (t.auth.kind === 'echo') {
          const echoed = new Promise<void>((resolve, reject) => {
            let got = 0;
            socket.on('data', (c: Buffer) => {
              got += c.length;
              if (got >= ECHO_BYTES.length) resolve();
            });
            socket.once('close', () => reject(new Error('closed before echo')));
          });
          socket.write(ECHO_BYTES);
          await withTimeout(echoed, 10_000, 'echo');
          latencies.push(performance.now() - t0);
          socket.end();
        } else {
          const wire = new Wire(socket);
          wire.send(connectFor(t.auth, id, 60));
          const p = await wire.next();
          if (p?.cmd !== 'connack' || p.returnCode !== 0) throw new Error(p?.cmd === 'connack' ? `CONNACK ${String(p.returnCode)}` : 'no CONNACK');
          latencies.push(performance.now() - t0);
          socket.write(DISCONNECT);
          socket.end();
        }
        await waitClose(socket, 5000);
      } finally {
        socket.destroy();
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return { ...r, latencies: latencies.map((x) => Math.round(x * 100) / 100), p50ms: percentile(latencies, 50), p99ms: percentile(latencies, 99), protocol, cipher };
}

/**
 * In a payload, where the send time goes: overwritten in each PUBLISH with the wall clock in ms
 * (`performance.timeOrigin + performance.now()`, 13 digits, a dot, 3 decimals), so another process
 * can tell how long the message took to reach it.
 */
export const SENT_AT_PLACEHOLDER = '1000000000000.000';

/** One PUBLISH packet ready to copy: where its packet id and (if any) its send time go. */
interface PublishTemplate {
  packet: Buffer;
  idOffset: number;
  /** -1: the payload holds no SENT_AT_PLACEHOLDER. */
  sentAtOffset: number;
}

/** (b) state kept between the open / run / close calls. */
interface Publisher {
  wire: Wire;
  templates: PublishTemplate[];
  /** The next template to send (cycles). */
  nextTemplate: number;
  nextId: number;
  inFlight: number;
  sentAt: Float64Array;
  dead: boolean;
}
let publishers: Publisher[] = [];

function publishTemplate(topic: string, payload: Buffer): PublishTemplate {
  const packet = mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 1, messageId: 1, retain: false, dup: false });
  const payloadAt = packet.length - payload.length;
  const stamp = payload.indexOf(SENT_AT_PLACEHOLDER);
  return { packet, idOffset: payloadAt - 2, sentAtOffset: stamp < 0 ? -1 : payloadAt + stamp };
}

/**
 * Opens `conns` publishing devices. Each publishes `payloadBytes` of 'a', or cycles through
 * `payloads` (each device starting at a different one), to `devices/<id>/messages/events/<topicProps>`
 * (a property bag such as `$.ct=application%2Fjson&$.ce=utf-8`).
 */
async function taskPublishOpen(
  t: Target,
  conns: number,
  offset: number,
  payloadBytes: number,
  payloads?: readonly string[],
  topicProps = '',
): Promise<{ opened: number; errors: number; firstError: string | undefined }> {
  const bodies = payloads === undefined || payloads.length === 0 ? [Buffer.alloc(payloadBytes, 0x61)] : payloads.map((p) => Buffer.from(p));
  publishers = [];
  const r = await runPool(conns, 20, performance.now() + 60_000, async (i) => {
    const id = deviceId(offset + i);
    const wire = await mqttConnect(t, id, 300);
    const topic = `devices/${id}/messages/events/${topicProps}`;
    const templates = bodies.map((b) => publishTemplate(topic, b));
    publishers.push({ wire, templates, nextTemplate: i % templates.length, nextId: 1, inFlight: 0, sentAt: new Float64Array(65536), dead: false });
  });
  return { opened: r.done, errors: r.errors, firstError: r.firstError };
}

export interface PublishResult extends CpuWindow {
  acked: number;
  sent: number;
  rate: number;
  p50ms: number;
  p99ms: number;
  closedEarly: number;
  stalled: boolean;
  /** Paced runs: the most messages that were due but waited for a device with room in its window. */
  backlogMax: number;
}

/**
 * Publishes until `total` are acknowledged or `maxSeconds` passed. Without `rate`, as fast as the
 * windows allow (each PUBACK sends the next); with `rate`, at that many messages/s over all
 * devices (a 1 ms pacer, round robin over the devices with room in their window).
 */
async function taskPublishRun(total: number, window: number, maxSeconds: number, rate?: number, skipMs = 0): Promise<PublishResult> {
  let sent = 0;
  let acked = 0;
  /** Acknowledgements counted in the percentiles: those of messages sent after the first skipMs. */
  let counted = 0;
  let t0 = 0;
  let closedEarly = 0;
  let stalled = false;
  let lastAck = performance.now();
  const latencies = new Float64Array(total);
  let stopSending = false;
  let backlogMax = 0;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((r) => (finish = r));

  const sendOne = (p: Publisher) => {
    const id = p.nextId;
    p.nextId = p.nextId >= 65535 ? 1 : p.nextId + 1;
    const t = p.templates[p.nextTemplate] as PublishTemplate;
    p.nextTemplate = (p.nextTemplate + 1) % p.templates.length;
    const buf = Buffer.from(t.packet);
    buf.writeUInt16BE(id, t.idOffset);
    const now = performance.now();
    if (t.sentAtOffset >= 0) buf.write((performance.timeOrigin + now).toFixed(3), t.sentAtOffset, SENT_AT_PLACEHOLDER.length, 'latin1');
    p.sentAt[id] = now;
    p.inFlight++;
    sent++;
    p.wire.socket.write(buf);
  };
  const outstanding = () => publishers.reduce((n, p) => n + (p.dead ? 0 : p.inFlight), 0);
  const maybeFinish = () => {
    if (acked >= total || (stopSending && outstanding() === 0) || publishers.every((p) => p.dead)) finish();
  };

  const r = await cpuWindow(async () => {
    t0 = performance.now();
    for (const p of publishers) {
      p.wire.onPacket = (pkt) => {
        if (pkt.cmd !== 'puback') return false;
        const now = performance.now();
        const id = pkt.messageId ?? 0;
        const sentAt = p.sentAt[id] ?? now;
        if (counted < total && sentAt - t0 >= skipMs) latencies[counted++] = now - sentAt;
        acked++;
        lastAck = now;
        p.inFlight--;
        if (rate === undefined && !stopSending && sent < total) sendOne(p);
        maybeFinish();
        return true;
      };
      void p.wire.closedP.then(() => {
        if (!p.dead) {
          p.dead = true;
          closedEarly++;
          maybeFinish();
        }
      });
    }
    let pacer: NodeJS.Timeout | undefined;
    if (rate === undefined) {
      for (const p of publishers) for (let k = 0; k < window && sent < total; k++) sendOne(p);
    } else {
      let cursor = 0;
      pacer = setInterval(() => {
        if (stopSending) return;
        let due = Math.min(total, Math.floor((rate * (performance.now() - t0)) / 1000)) - sent;
        for (let tried = 0; due > 0 && tried < publishers.length; ) {
          const p = publishers[cursor] as Publisher;
          cursor = (cursor + 1) % publishers.length;
          if (p.dead || p.inFlight >= window) {
            tried++;
            continue;
          }
          sendOne(p);
          due--;
          tried = 0;
        }
        backlogMax = Math.max(backlogMax, due);
      }, 1);
    }
    const timer = setInterval(() => {
      const now = performance.now();
      if (now - t0 > maxSeconds * 1000) stopSending = true;
      if (now - lastAck > 10_000) {
        stalled = true;
        finish();
      }
      // Drain: at most 5 s after sending stopped.
      if (now - t0 > (maxSeconds + 5) * 1000) finish();
      maybeFinish();
    }, 100);
    await finished;
    clearInterval(timer);
    clearInterval(pacer);
    const activeSeconds = ((acked > 0 ? lastAck : performance.now()) - t0) / 1000;
    return { activeSeconds, acked };
  });
  const lat = Array.from(latencies.subarray(0, counted)).sort((a, b) => a - b);
  return {
    ...r,
    acked,
    sent,
    rate: r.activeSeconds > 0 ? acked / r.activeSeconds : 0,
    p50ms: percentile(lat, 50),
    p99ms: percentile(lat, 99),
    closedEarly,
    stalled,
    backlogMax,
  };
}

async function taskPublishClose(): Promise<{ closed: number }> {
  const n = publishers.length;
  await Promise.all(
    publishers.map(async (p) => {
      if (!p.wire.closed) {
        p.wire.socket.write(DISCONNECT);
        p.wire.socket.end();
        await waitClose(p.wire.socket, 3000);
      }
    }),
  );
  publishers = [];
  return { closed: n };
}

/** (c) idle connections kept between the open and close calls. */
let idle: Wire[] = [];
let idleSockets: TLSSocket[] = [];

async function taskIdleOpen(t: Target, count: number, offset: number, concurrency: number): Promise<{ opened: number; errors: number; firstError: string | undefined; seconds: number }> {
  idle = [];
  idleSockets = [];
  const t0 = performance.now();
  const r = await runPool(count, concurrency, performance.now() + 120_000, async (i) => {
    const id = deviceId(offset + i);
    if (t.auth.kind === 'echo') {
      const socket = await openTls(t);
      idleSockets.push(socket);
      socket.on('error', () => undefined);
      const echoed = new Promise<void>((resolve) => socket.once('data', () => resolve()));
      socket.write(ECHO_BYTES);
      await withTimeout(echoed, 10_000, 'echo');
      return;
    }
    const wire = await mqttConnect(t, id, 900);
    idle.push(wire);
    wire.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `devices/${id}/messages/devicebound/#`, qos: 1 }] });
    const p = await wire.next();
    if (p?.cmd !== 'suback') throw new Error(p === undefined ? 'closed before SUBACK' : `${p.cmd} instead of SUBACK`);
  });
  return { opened: r.done, errors: r.errors, firstError: r.firstError, seconds: (performance.now() - t0) / 1000 };
}

async function taskIdleClose(): Promise<{ stillOpen: number }> {
  const stillOpen = idle.filter((w) => !w.closed).length + idleSockets.filter((s) => !s.destroyed).length;
  for (const w of idle) {
    if (!w.closed) w.socket.write(DISCONNECT);
    w.socket.destroy();
  }
  for (const s of idleSockets) s.destroy();
  idle = [];
  idleSockets = [];
  await sleep(200);
  return { stillOpen };
}

/** (d) one device on a raw MQTT client; the service side over keep-alive HTTPS. */
export interface RttSpec {
  /** The hub's hostname: the SAS tokens' resource, and the address unless the two below say otherwise. */
  hubHost: string;
  /** Where the device connects (a cluster node's address), if not hubHost. */
  deviceAddr?: string;
  /** Where the service calls go (another node's address), if not hubHost. */
  serviceAddr?: string;
  /** The device id (default bench-rtt). */
  deviceId?: string;
  caPem: string;
  deviceKey: string;
  serviceKeyName: string;
  serviceKey: string;
  n: number;
  maxSeconds: number;
}

export interface Latency {
  status: 'ok' | 'not available';
  detail: string;
  samples: number;
  p50ms: number;
  p99ms: number;
}

export function httpsCall(
  agent: Agent,
  host: string,
  token: string,
  method: string,
  path: string,
  body: Buffer,
  headers: Record<string, string>,
  servername?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        ...(servername === undefined ? {} : { servername }),
        port: 443,
        method,
        path: `${path}?${API}`,
        agent,
        headers: { authorization: token, 'content-length': String(body.length), ...headers },
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('HTTP request timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

async function taskRtt(s: RttSpec): Promise<{ methods: Latency; c2d: Latency }> {
  const RTT_ID = s.deviceId ?? RTT_DEVICE;
  const deviceAddr = s.deviceAddr ?? s.hubHost;
  const serviceAddr = s.serviceAddr ?? s.hubHost;
  // An address other than the hostname connects by address and checks the certificate against the hostname.
  const deviceName = deviceAddr === s.hubHost ? undefined : s.hubHost;
  const serviceName = serviceAddr === s.hubHost ? undefined : s.hubHost;
  const target: Target = { host: deviceAddr, port: 8883, caPem: s.caPem, auth: { kind: 'sas', hubHost: s.hubHost, key: s.deviceKey }, ...(deviceName === undefined ? {} : { servername: deviceName }) };
  const wire = await mqttConnect(target, RTT_ID, 300);
  wire.send({
    cmd: 'subscribe',
    messageId: 1,
    subscriptions: [
      { topic: '$iothub/methods/POST/#', qos: 0 },
      { topic: `devices/${RTT_ID}/messages/devicebound/#`, qos: 1 },
    ],
  });
  const suback = await wire.next();
  if (suback?.cmd !== 'suback') throw new Error('device: no SUBACK');

  const c2dWaiters = new Map<string, () => void>();
  const reply = Buffer.from('{"ok":true}');
  wire.onPacket = (p) => {
    if (p.cmd !== 'publish') return false;
    if (p.topic.startsWith('$iothub/methods/POST/')) {
      const rid = /\?\$rid=([^&]+)/.exec(p.topic)?.[1] ?? '';
      wire.send({ cmd: 'publish', topic: `$iothub/methods/res/200/?$rid=${rid}`, payload: reply, qos: 0, retain: false, dup: false });
      return true;
    }
    if (p.topic.startsWith(`devices/${RTT_ID}/messages/devicebound/`)) {
      if (p.qos === 1) wire.send({ cmd: 'puback', messageId: p.messageId ?? 0 });
      const mid = /(?:^|[/&])%24\.mid=([^&]+)/.exec(p.topic)?.[1] ?? /(?:^|[/&])\$\.mid=([^&]+)/.exec(p.topic)?.[1];
      const w = mid === undefined ? undefined : c2dWaiters.get(decodeURIComponent(mid));
      if (w !== undefined) w();
      return true;
    }
    return false;
  };

  const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: s.caPem });
  const token = generateSasToken({ resource: s.hubHost, key: s.serviceKey, keyName: s.serviceKeyName, expiry: Math.floor(Date.now() / 1000) + 3600 });
  const warmup = 20;

  // Direct methods: POST /twins/{id}/methods until the HTTP response (the device's answer) is in.
  const methodLat: number[] = [];
  let methods: Latency = { status: 'ok', detail: '', samples: 0, p50ms: 0, p99ms: 0 };
  {
    const deadline = performance.now() + s.maxSeconds * 1000;
    for (let i = 0; i < s.n + warmup && performance.now() < deadline; i++) {
      const body = Buffer.from(JSON.stringify({ methodName: 'ping', payload: { i }, responseTimeoutInSeconds: 10 }));
      const t0 = performance.now();
      const r = await httpsCall(agent, serviceAddr, token, 'POST', `/twins/${RTT_ID}/methods`, body, { 'content-type': 'application/json' }, serviceName);
      const ms = performance.now() - t0;
      if (r.status !== 200) {
        methods = { status: 'not available', detail: `HTTP ${r.status}: ${r.body.slice(0, 160)}`, samples: 0, p50ms: 0, p99ms: 0 };
        break;
      }
      if (i >= warmup) methodLat.push(ms);
    }
    if (methods.status === 'ok') {
      methodLat.sort((a, b) => a - b);
      methods = { status: 'ok', detail: '', samples: methodLat.length, p50ms: percentile(methodLat, 50), p99ms: percentile(methodLat, 99) };
    }
  }

  // C2D: POST /devices/{id}/messages/deviceBound until the device has the PUBLISH.
  const c2dLat: number[] = [];
  let c2d: Latency = { status: 'ok', detail: '', samples: 0, p50ms: 0, p99ms: 0 };
  {
    const deadline = performance.now() + s.maxSeconds * 1000;
    const tag = randomBytes(3).toString('hex');
    for (let i = 0; i < s.n + warmup && performance.now() < deadline; i++) {
      const mid = `rtt-${tag}-${i}`;
      const delivered = new Promise<void>((resolve) => c2dWaiters.set(mid, resolve));
      const t0 = performance.now();
      const r = await httpsCall(agent, serviceAddr, token, 'POST', `/devices/${RTT_ID}/messages/deviceBound`, Buffer.from(`{"n":${i}}`), {
        'content-type': 'application/json',
        'iothub-messageid': mid,
      }, serviceName);
      if (r.status === 404) {
        c2d = { status: 'not available', detail: `HTTP 404 on POST /devices/{id}/messages/deviceBound: ${r.body.slice(0, 120)}`, samples: 0, p50ms: 0, p99ms: 0 };
        break;
      }
      if (r.status >= 300) {
        c2d = { status: 'not available', detail: `HTTP ${r.status}: ${r.body.slice(0, 160)}`, samples: 0, p50ms: 0, p99ms: 0 };
        break;
      }
      try {
        await withTimeout(delivered, 5000, 'C2D delivery');
      } catch {
        c2d = {
          status: 'not available',
          detail: `accepted (HTTP ${r.status}) but not delivered over MQTT within 5 s`,
          samples: 0,
          p50ms: 0,
          p99ms: 0,
        };
        break;
      } finally {
        c2dWaiters.delete(mid);
      }
      if (i >= warmup) c2dLat.push(performance.now() - t0);
    }
    if (c2d.status === 'ok') {
      c2dLat.sort((a, b) => a - b);
      c2d = { status: 'ok', detail: '', samples: c2dLat.length, p50ms: percentile(c2dLat, 50), p99ms: percentile(c2dLat, 99) };
    }
  }
  agent.destroy();
  wire.socket.write(DISCONNECT);
  wire.socket.end();
  await waitClose(wire.socket, 3000);
  return { methods, c2d };
}

export type Task =
  /** Devices offset .. offset + devices - 1: two generators at once take disjoint ranges (a second session of a device ends the first). */
  | { kind: 'connect'; target: Target; n: number; concurrency: number; devices: number; maxSeconds: number; offset?: number }
  | { kind: 'publish-open'; target: Target; conns: number; offset: number; payloadBytes: number; payloads?: string[]; topicProps?: string }
  /** skipMs: PUBACK latencies of messages sent in the first skipMs are not counted (a warm-up). */
  | { kind: 'publish-run'; total: number; window: number; maxSeconds: number; rate?: number; skipMs?: number }
  | { kind: 'publish-close' }
  | { kind: 'idle-open'; target: Target; count: number; offset: number; concurrency: number }
  | { kind: 'idle-close' }
  | { kind: 'rtt'; spec: RttSpec };

function runTask(t: Task): Promise<unknown> {
  switch (t.kind) {
    case 'connect':
      return taskConnect(t.target, t.n, t.concurrency, t.devices, t.maxSeconds, t.offset);
    case 'publish-open':
      return taskPublishOpen(t.target, t.conns, t.offset, t.payloadBytes, t.payloads, t.topicProps);
    case 'publish-run':
      return taskPublishRun(t.total, t.window, t.maxSeconds, t.rate, t.skipMs);
    case 'publish-close':
      return taskPublishClose();
    case 'idle-open':
      return taskIdleOpen(t.target, t.count, t.offset, t.concurrency);
    case 'idle-close':
      return taskIdleClose();
    case 'rtt':
      return taskRtt(t.spec);
  }
}

/** Answers the orchestrator's tasks over IPC (a load generator, or another helper process of a bench). */
export function serveTasks<K extends { kind: string }>(run: (task: K) => Promise<unknown>): void {
  process.on('message', (m: { id: number; task: K }) => {
    run(m.task).then(
      (result) => process.send?.({ id: m.id, ok: true, result }),
      (err: unknown) => process.send?.({ id: m.id, ok: false, error: (err as Error).message }),
    );
  });
  // The orchestrator gone means stop: nothing here outlives it.
  process.on('disconnect', () => process.exit(0));
}

export function generatorMain(): void {
  serveTasks(runTask);
}

// ----------------------------------------------------------------------------- orchestrator side

/** A load generator child process: its own event loop, its fd limit raised to 20,000 (never lowered: bench/scale runs under a higher one). */
const GENERATOR_SCRIPT = join(ROOT, 'dist/bench/mqtt-load.js');

/** A child process that runs tasks of kind K (by default a load generator's) sent over IPC (serveTasks). */
export class Generator<K extends { kind: string } = Task> {
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  private constructor(readonly child: ChildProcess) {
    child.on('message', (m: { id: number; ok: boolean; result?: unknown; error?: string }) => {
      const p = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      if (m.ok) p?.resolve(m.result);
      else p?.reject(new Error(m.error ?? 'generator task failed'));
    });
    child.on('exit', (code) => {
      for (const p of this.#pending.values()) p.reject(new Error(`generator exited with ${String(code)}`));
      this.#pending.clear();
    });
    // A send into a channel that just closed (the run is being stopped) is an 'error' event: not a crash.
    child.on('error', () => undefined);
  }

  /** A load generator; or, given a script, that script with `args` and extra environment. */
  static start<K extends { kind: string } = Task>(script = GENERATOR_SCRIPT, args: readonly string[] = ['--role', 'gen'], env: NodeJS.ProcessEnv = {}): Generator<K> {
    const child = spawn(
      '/bin/sh',
      ['-c', 'n=$(ulimit -n); [ "$n" = unlimited ] || [ "$n" -ge 20000 ] || ulimit -n 20000 2>/dev/null || true; exec "$0" "$@"', process.execPath, script, ...args],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, NODE_OPTIONS: '', ...env } },
    );
    return new Generator<K>(child);
  }

  call<T>(task: K, timeoutMs = 180_000): Promise<T> {
    if (!this.child.connected) return Promise.reject(new Error(`generator ${task.kind}: the generator is gone`));
    const id = this.#nextId++;
    const p = new Promise<unknown>((resolve, reject) => this.#pending.set(id, { resolve, reject }));
    this.child.send({ id, task });
    return withTimeout(p, timeoutMs, `generator ${task.kind}`) as Promise<T>;
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  stop(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
  }
}

export function parseConnectionString(cs: string): { host: string; keyName: string; key: string } {
  const get = (k: string) => new RegExp(`(?:^|;)${k}=([^;]+)`).exec(cs)?.[1] ?? '';
  return { host: get('HostName'), keyName: get('SharedAccessKeyName'), key: get('SharedAccessKey') };
}

/** Creates `count` SAS devices (plus the round-trip device) with a known key, 100 per bulk call. */
export async function createDevices(
  hub: { connectionString: string; address?: string },
  caPem: string,
  count: number,
  key: string,
  extraIds: readonly string[] = [RTT_DEVICE],
  /** Another authentication than the SAS key, per device (X.509 thumbprints). */
  authFor?: (id: string) => object,
): Promise<number> {
  const { host, keyName, key: policyKey } = parseConnectionString(hub.connectionString);
  const token = generateSasToken({ resource: host, key: policyKey, keyName, expiry: Math.floor(Date.now() / 1000) + 3600 });
  const agent = new Agent({ keepAlive: true, maxSockets: 4, ca: caPem });
  // A cluster node is reached by its address; its certificate is for the shared hostname.
  const address = hub.address ?? host;
  const servername = address === host ? undefined : host;
  const sas = { type: 'sas', symmetricKey: { primaryKey: key, secondaryKey: key } };
  const t0 = performance.now();
  const batches = Math.ceil(count / 100);
  const r = await runPool(batches + (extraIds.length > 0 ? 1 : 0), 4, performance.now() + 120_000, async (b) => {
    const ids = b === batches ? [...extraIds] : Array.from({ length: Math.min(100, count - b * 100) }, (_, k) => deviceId(b * 100 + k));
    const body = Buffer.from(JSON.stringify(ids.map((id) => ({ id, importMode: 'create', status: 'enabled', authentication: authFor?.(id) ?? sas }))));
    const res = await httpsCall(agent, address, token, 'POST', '/devices', body, { 'content-type': 'application/json' }, servername);
    if (res.status !== 200) throw new Error(`bulk create: HTTP ${res.status} ${res.body.slice(0, 200)}`);
  });
  agent.destroy();
  if (r.errors > 0) throw new Error(`device creation failed: ${r.firstError ?? ''}`);
  return (performance.now() - t0) / 1000;
}

export interface Mosquitto {
  proc: ChildProcess;
  version: string;
  stderr(): string;
}

/** Our own Mosquitto (never the machine's on 1883) on `address:port`, TLS with a server certificate from `ca`, one password user `bench`. */
export async function startMosquitto(
  dir: string,
  ca: { certPem: string; keyPem: string },
  window: number,
  password: string,
  at: { address: string; port: number },
): Promise<Mosquitto> {
  const MOSQ_ADDR = at.address;
  const MOSQ_PORT = at.port;
  const server = await issueServerCertificate(ca, { hostname: MOSQ_ADDR });
  const mdir = join(dir, 'mosquitto');
  mkdirSync(mdir, { recursive: true });
  // Started as root, mosquitto drops to the `mosquitto` user before it reads these files.
  chmodSync(dir, 0o755);
  chmodSync(mdir, 0o755);
  writeFileSync(join(mdir, 'ca.pem'), ca.certPem);
  writeFileSync(join(mdir, 'cert.pem'), server.chainPem);
  writeFileSync(join(mdir, 'key.pem'), server.keyPem);
  const passwd = join(mdir, 'passwd');
  const pw = spawnSync('mosquitto_passwd', ['-b', '-c', passwd, 'bench', password], { encoding: 'utf8' });
  if (pw.status !== 0) throw new Error(`mosquitto_passwd failed: ${pw.stderr}`);
  for (const f of ['ca.pem', 'cert.pem', 'key.pem', 'passwd']) chmodSync(join(mdir, f), 0o644);
  const conf = join(mdir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${MOSQ_PORT} ${MOSQ_ADDR}`,
      `cafile ${join(mdir, 'ca.pem')}`,
      `certfile ${join(mdir, 'cert.pem')}`,
      `keyfile ${join(mdir, 'key.pem')}`,
      'require_certificate false',
      'allow_anonymous false',
      `password_file ${passwd}`,
      `max_inflight_messages ${window}`,
      'max_queued_messages 1000',
      'persistence false',
      // The hub and the node:tls server set TCP_NODELAY on their sockets; Mosquitto's default is off.
      'set_tcp_nodelay true',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      '',
    ].join('\n'),
  );
  const version = /mosquitto version (\S+)/.exec(spawnSync('/usr/sbin/mosquitto', ['-h'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown';
  const proc = spawn('/usr/sbin/mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  reapOnExit(proc);
  let err = '';
  proc.stdout?.on('data', (c: Buffer) => (err += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  try {
    await waitPort(MOSQ_ADDR, MOSQ_PORT, 5000);
  } catch (e) {
    proc.kill('SIGTERM');
    throw new Error(`${(e as Error).message}: ${err}`);
  }
  return { proc, version, stderr: () => err };
}

// Started as a generator process by Generator.start.
if (process.argv[1] === fileURLToPath(import.meta.url) && argString('role') === 'gen') generatorMain();
