/**
 * bench/mqtt: the MQTT device endpoint of a real `gatehouse start` against Mosquitto (and, for
 * connection setup, a bare node:tls server) on the same machine in the same run. A benchmark, not a
 * test: it prints one table per scenario and, with --write, replaces its section in
 * docs/benchmarks.md.
 *
 *   (a) TLS connect + auth per second: handshake + CONNECT + CONNACK + DISCONNECT, N connections
 *       with bounded concurrency; a bare node:tls echo server (same key type, same TLS options as
 *       the hub's listener) is the third column.
 *   (b) QoS 1 telemetry: P connections publishing 100-byte messages to devices/<id>/messages/events/
 *       with a bounded window of unacknowledged PUBLISHes each, for a fixed count or time.
 *   (c) resident memory per idle TLS device connection (CONNECT + one SUBSCRIBE), read from
 *       /proc/<pid>/status of the server process before and after opening them.
 *   (d) direct-method and C2D round trips (Gatehouse only), p50 / p99.
 *
 * Every server and every load generator is its own process (the hub must not share its event loop
 * with its load); the generators speak MQTT with mqtt-packet over node:tls. Every loop is bounded
 * in count and in time. Loopback only: the hub on 127.0.60.1 (443 + 8883), Mosquitto on
 * 127.0.60.2:18883, the node:tls server on 127.0.60.3:18884.
 *
 *   node dist/bench/mqtt.js [--connects 2000] [--rounds 2] [--concurrency 32] [--publishers 100]
 *     [--window 10] [--messages 200000] [--seconds 20] [--idle 10000] [--rtt 500] [--only a,b,c,d]
 *     [--cpu-prof DIR] [--write]
 *
 * --cpu-prof DIR writes V8 CPU profiles of the hub (and the node:tls server) for each measured
 * window of (a) and (b) into DIR (open them in Chrome DevTools); --only skips --write.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { connect as netConnect } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect, createSecureContext, createServer as createTlsServer, type SecureContext, type TLSSocket } from 'node:tls';
import mqttPacket, { type IConnectPacket, type Packet } from 'mqtt-packet';
import { generateSasToken } from '../src/auth/sas.js';
import { createDevRootCa, issueServerCertificate } from '../src/pki/dev-ca.js';
import { arg, argString, percentile, procCpuSeconds, machineBusySeconds, writeBenchmarkSection, PROFILER_PRELOAD } from './support.js';
import { removeDir, ROOT, startHubProcess, type HubProcess } from '../test/support/hub-process.js';
import { deviceToken } from '../test/support/raw-mqtt.js';

const HUB_ADDR = '127.0.60.1';
/** One load generator holds thousands of connections from one address: the per-address cap (256 by default) is for attackers. */
const HUB_ARGS = ['--max-connections-per-address', '0'];
const MOSQ_ADDR = '127.0.60.2';
const MOSQ_PORT = 18883;
const ECHO_ADDR = '127.0.60.3';
const ECHO_PORT = 18884;
const API = 'api-version=2021-04-12';
const DEVICE_PREFIX = 'bench-';
const RTT_DEVICE = 'bench-rtt';
const SECTION_TITLE = '## MQTT device endpoint (bench/mqtt)';

// ------------------------------------------------------------------------------------ helpers

function deviceId(i: number): string {
  return `${DEVICE_PREFIX}${String(i).padStart(5, '0')}`;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

async function runPool(n: number, concurrency: number, deadline: number, op: (i: number) => Promise<void>): Promise<{ done: number; errors: number; firstError: string | undefined }> {
  let next = 0;
  let done = 0;
  let errors = 0;
  let firstError: string | undefined;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      for (let i = next++; i < n && performance.now() < deadline; i = next++) {
        try {
          await op(i);
          done++;
        } catch (err) {
          errors++;
          firstError ??= (err as Error).message;
        }
      }
    }),
  );
  return { done, errors, firstError };
}

/** Run time and run-queue wait of one thread, in seconds (/proc/<pid>/task/<tid>/schedstat). */
function schedSeconds(pid: number, tid: number): { run: number; wait: number } {
  try {
    const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    return { run: (run ?? NaN) / 1e9, wait: (wait ?? NaN) / 1e9 };
  } catch {
    return { run: NaN, wait: NaN };
  }
}

function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] === undefined ? NaN : Number(m[1]);
  } catch {
    return NaN;
  }
}


// ------------------------------------------------------------------------- load generator side

/** How a generator authenticates: device SAS tokens (the hub) or one user/password (Mosquitto). */
type AuthSpec = { kind: 'sas'; hubHost: string; key: string } | { kind: 'password'; username: string; password: string } | { kind: 'echo' };

interface Target {
  host: string;
  port: number;
  caPem: string;
  auth: AuthSpec;
}

const tokenCache = new Map<string, string>();

function connectFor(auth: AuthSpec, id: string, keepalive: number): IConnectPacket {
  const base = { cmd: 'connect' as const, protocolId: 'MQTT' as const, protocolVersion: 4 as const, clean: false, clientId: id, keepalive };
  if (auth.kind === 'sas') {
    let token = tokenCache.get(id);
    if (token === undefined) {
      token = deviceToken(auth.hubHost, id, auth.key, Math.floor(Date.now() / 1000) + 3600);
      tokenCache.set(id, token);
    }
    return { ...base, username: `${auth.hubHost}/${id}/?${API}`, password: Buffer.from(token) };
  }
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

function openTls(t: Target, timeoutMs = 10_000): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: t.host, port: t.port, secureContext: contextFor(t.caPem) });
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
class Wire {
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

const DISCONNECT = mqttPacket.generate({ cmd: 'disconnect' });

async function mqttConnect(t: Target, id: string, keepalive = 60): Promise<Wire> {
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

function waitClose(socket: TLSSocket, ms: number): Promise<void> {
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

interface CpuWindow {
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

interface ConnectResult extends CpuWindow {
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
async function taskConnect(t: Target, n: number, concurrency: number, devices: number, maxSeconds: number): Promise<ConnectResult> {
  const latencies: number[] = [];
  let protocol = '';
  let cipher = '';
  const deadline = performance.now() + maxSeconds * 1000;
  const r = await cpuWindow(() =>
    runPool(n, concurrency, deadline, async (i) => {
      const t0 = performance.now();
      const socket = await openTls(t);
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
          wire.send(connectFor(t.auth, deviceId(i % devices), 60));
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

/** (b) state kept between the open / run / close calls. */
interface Publisher {
  wire: Wire;
  template: Buffer;
  idOffset: number;
  nextId: number;
  inFlight: number;
  sentAt: Float64Array;
  dead: boolean;
}
let publishers: Publisher[] = [];

async function taskPublishOpen(t: Target, conns: number, offset: number, payloadBytes: number): Promise<{ opened: number; errors: number; firstError: string | undefined }> {
  const payload = Buffer.alloc(payloadBytes, 0x61);
  publishers = [];
  const r = await runPool(conns, 20, performance.now() + 60_000, async (i) => {
    const id = deviceId(offset + i);
    const wire = await mqttConnect(t, id, 300);
    const template = mqttPacket.generate({ cmd: 'publish', topic: `devices/${id}/messages/events/`, payload, qos: 1, messageId: 1, retain: false, dup: false });
    publishers.push({ wire, template, idOffset: template.length - payload.length - 2, nextId: 1, inFlight: 0, sentAt: new Float64Array(65536), dead: false });
  });
  return { opened: r.done, errors: r.errors, firstError: r.firstError };
}

interface PublishResult extends CpuWindow {
  acked: number;
  sent: number;
  rate: number;
  p50ms: number;
  p99ms: number;
  closedEarly: number;
  stalled: boolean;
}

async function taskPublishRun(total: number, window: number, maxSeconds: number): Promise<PublishResult> {
  let sent = 0;
  let acked = 0;
  let closedEarly = 0;
  let stalled = false;
  let lastAck = performance.now();
  const latencies = new Float64Array(total);
  let stopSending = false;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((r) => (finish = r));

  const sendOne = (p: Publisher) => {
    const id = p.nextId;
    p.nextId = p.nextId >= 65535 ? 1 : p.nextId + 1;
    const buf = Buffer.from(p.template);
    buf.writeUInt16BE(id, p.idOffset);
    p.sentAt[id] = performance.now();
    p.inFlight++;
    sent++;
    p.wire.socket.write(buf);
  };
  const outstanding = () => publishers.reduce((n, p) => n + (p.dead ? 0 : p.inFlight), 0);
  const maybeFinish = () => {
    if (acked >= total || (stopSending && outstanding() === 0) || publishers.every((p) => p.dead)) finish();
  };

  const r = await cpuWindow(async () => {
    const t0 = performance.now();
    for (const p of publishers) {
      p.wire.onPacket = (pkt) => {
        if (pkt.cmd !== 'puback') return false;
        const now = performance.now();
        const id = pkt.messageId ?? 0;
        if (acked < total) latencies[acked] = now - (p.sentAt[id] ?? now);
        acked++;
        lastAck = now;
        p.inFlight--;
        if (!stopSending && sent < total) sendOne(p);
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
    for (const p of publishers) for (let k = 0; k < window && sent < total; k++) sendOne(p);
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
    const activeSeconds = ((acked > 0 ? lastAck : performance.now()) - t0) / 1000;
    return { activeSeconds, acked };
  });
  const lat = Array.from(latencies.subarray(0, Math.min(acked, total))).sort((a, b) => a - b);
  return {
    ...r,
    acked,
    sent,
    rate: r.activeSeconds > 0 ? acked / r.activeSeconds : 0,
    p50ms: percentile(lat, 50),
    p99ms: percentile(lat, 99),
    closedEarly,
    stalled,
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
interface RttSpec {
  hubHost: string;
  caPem: string;
  deviceKey: string;
  serviceKeyName: string;
  serviceKey: string;
  n: number;
  maxSeconds: number;
}

interface Latency {
  status: 'ok' | 'not available';
  detail: string;
  samples: number;
  p50ms: number;
  p99ms: number;
}

function httpsCall(agent: Agent, host: string, token: string, method: string, path: string, body: Buffer, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
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
  const target: Target = { host: s.hubHost, port: 8883, caPem: s.caPem, auth: { kind: 'sas', hubHost: s.hubHost, key: s.deviceKey } };
  const wire = await mqttConnect(target, RTT_DEVICE, 300);
  wire.send({
    cmd: 'subscribe',
    messageId: 1,
    subscriptions: [
      { topic: '$iothub/methods/POST/#', qos: 0 },
      { topic: `devices/${RTT_DEVICE}/messages/devicebound/#`, qos: 1 },
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
    if (p.topic.startsWith(`devices/${RTT_DEVICE}/messages/devicebound/`)) {
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
      const r = await httpsCall(agent, s.hubHost, token, 'POST', `/twins/${RTT_DEVICE}/methods`, body, { 'content-type': 'application/json' });
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
      const r = await httpsCall(agent, s.hubHost, token, 'POST', `/devices/${RTT_DEVICE}/messages/deviceBound`, Buffer.from(`{"n":${i}}`), {
        'content-type': 'application/json',
        'iothub-messageid': mid,
      });
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

type Task =
  | { kind: 'connect'; target: Target; n: number; concurrency: number; devices: number; maxSeconds: number }
  | { kind: 'publish-open'; target: Target; conns: number; offset: number; payloadBytes: number }
  | { kind: 'publish-run'; total: number; window: number; maxSeconds: number }
  | { kind: 'publish-close' }
  | { kind: 'idle-open'; target: Target; count: number; offset: number; concurrency: number }
  | { kind: 'idle-close' }
  | { kind: 'rtt'; spec: RttSpec };

function runTask(t: Task): Promise<unknown> {
  switch (t.kind) {
    case 'connect':
      return taskConnect(t.target, t.n, t.concurrency, t.devices, t.maxSeconds);
    case 'publish-open':
      return taskPublishOpen(t.target, t.conns, t.offset, t.payloadBytes);
    case 'publish-run':
      return taskPublishRun(t.total, t.window, t.maxSeconds);
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

function generatorMain(): void {
  process.on('message', (m: { id: number; task: Task }) => {
    runTask(m.task).then(
      (result) => process.send?.({ id: m.id, ok: true, result }),
      (err: unknown) => process.send?.({ id: m.id, ok: false, error: (err as Error).message }),
    );
  });
  // The orchestrator gone means stop: nothing here outlives it.
  process.on('disconnect', () => process.exit(0));
}

/** The node:tls comparison server: the hub listener's TLS options, echoes what it reads. */
function echoServerMain(): void {
  const key = readFileSync(argString('key') ?? '', 'utf8');
  const cert = readFileSync(argString('cert') ?? '', 'utf8');
  const server = createTlsServer({ key, cert, minVersion: 'TLSv1.2', requestCert: true, rejectUnauthorized: false, handshakeTimeout: 10_000 }, (s) => {
    s.setNoDelay(true);
    s.on('data', (d: Buffer) => s.write(d));
    s.on('error', () => undefined);
  });
  server.on('tlsClientError', (_err, socket) => socket.destroy());
  server.listen(ECHO_PORT, ECHO_ADDR, () => process.stdout.write('ready\n'));
  process.on('SIGTERM', () => process.exit(0));
  // The orchestrator holds our stdin: when it is gone (even killed), so are we.
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
}

// ----------------------------------------------------------------------------- orchestrator side

/** A load generator child process: its own event loop, its fd soft limit raised to the hard one. */
class Generator {
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
  }

  static start(): Generator {
    const child = spawn(
      '/bin/sh',
      ['-c', 'ulimit -n 20000 2>/dev/null || true; exec "$0" "$@"', process.execPath, join(ROOT, 'dist/bench/mqtt.js'), '--role', 'gen'],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, NODE_OPTIONS: '' } },
    );
    return new Generator(child);
  }

  call<T>(task: Task, timeoutMs = 180_000): Promise<T> {
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

/** Server CPU (all threads), machine busy time and wall time around a measured call. */
async function measured<T>(
  serverPid: number,
  fn: () => Promise<T>,
): Promise<{ r: T; serverCpuS: number; mainThreadCpuS: number; mainRunQueueS: number; machineBusyS: number; wallS: number; load1: number }> {
  const load1 = loadavg()[0] ?? 0;
  const s0 = procCpuSeconds(serverPid);
  const t0main = procCpuSeconds(serverPid, serverPid);
  const q0 = schedSeconds(serverPid, serverPid).wait;
  const m0 = machineBusySeconds();
  const t0 = performance.now();
  const r = await fn();
  const wallS = (performance.now() - t0) / 1000;
  return {
    r,
    serverCpuS: procCpuSeconds(serverPid) - s0,
    mainThreadCpuS: procCpuSeconds(serverPid, serverPid) - t0main,
    mainRunQueueS: schedSeconds(serverPid, serverPid).wait - q0,
    machineBusyS: machineBusySeconds() - m0,
    wallS,
    load1,
  };
}

/** Cores the rest of the machine (not the server, not the load generator) kept busy during a measurement. */
function otherCores(m: Measure, genCpuPct: number): number {
  return Math.max(m.machineBusyS / m.wallS - m.serverCpuS / m.wallS - genCpuPct / 100, 0);
}

/** Other processes above this share of a core during a measurement: measure again (at most twice). */
const CONTENDED_CORES = 0.3;

/**
 * Runs a measurement up to three times while other processes (other people's tests on this shared
 * machine) took more than CONTENDED_CORES, and keeps the least contended attempt.
 */
async function leastContended<R extends { m: Measure; genCpuPct: number }>(what: string, attempt: () => Promise<R>): Promise<R & { attempts: number }> {
  let best: R | undefined;
  let attempts = 0;
  for (; attempts < 3; ) {
    const r = await attempt();
    attempts++;
    const other = otherCores(r.m, r.genCpuPct);
    if (best === undefined || other < otherCores(best.m, best.genCpuPct)) best = r;
    if (other <= CONTENDED_CORES) break;
    process.stderr.write(`${what}: other processes used ${other.toFixed(2)} cores, measuring again\n`);
    await sleep(3000);
  }
  return { ...(best as R), attempts };
}

/** Waits (at most 15 s) until a server process is quiet: under 5 % of a core over half a second. */
async function settle(pid: number): Promise<void> {
  const deadline = performance.now() + 15_000;
  while (performance.now() < deadline) {
    const c0 = procCpuSeconds(pid);
    await sleep(500);
    if (!((procCpuSeconds(pid) - c0) / 0.5 >= 0.05)) return;
  }
}

function waitPort(host: string, port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = netConnect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`${host}:${port} did not open in ${ms} ms`));
        else setTimeout(attempt, 100);
      });
    };
    attempt();
  });
}

function waitReady(child: ChildProcess, what: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`${what} not ready in ${ms} ms: ${out}`)), ms);
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('ready')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${what} exited with ${String(code)}: ${out}`));
    });
  });
}

/** A child this process started dies with it, even when the run ends on an exception. */
function reapOnExit(child: ChildProcess): void {
  const reap = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  process.once('exit', reap);
  child.once('exit', () => process.off('exit', reap));
}

function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, 5000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * `--cpu-prof` is refused in NODE_OPTIONS on Node 20, so the hub gets a preload (`--import`) that
 * runs the inspector's sampling profiler between two SIGUSR2s and writes each window to a file:
 * a profile of the measured window only, without the hub's startup or the device creation.
 */

class WindowProfiler {
  #n = 0;
  constructor(
    readonly dir: string,
    readonly pid: number,
    readonly label: string,
  ) {}

  start(): void {
    process.kill(this.pid, 'SIGUSR2');
  }

  /** Stops the window and names its file; waits up to 10 s for the hub to write it. */
  async stop(name: string): Promise<string | undefined> {
    process.kill(this.pid, 'SIGUSR2');
    const tmp = join(this.dir, `window-${this.pid}-${++this.#n}.cpuprofile.tmp`);
    for (let i = 0; i < 100; i++) {
      await sleep(100);
      try {
        const text = readFileSync(tmp, 'utf8');
        JSON.parse(text);
        const file = join(this.dir, `${this.label}-${name}.cpuprofile`);
        renameSync(tmp, file);
        return file;
      } catch {
        // not written (completely) yet
      }
    }
    return undefined;
  }
}

function parseConnectionString(cs: string): { host: string; keyName: string; key: string } {
  const get = (k: string) => new RegExp(`(?:^|;)${k}=([^;]+)`).exec(cs)?.[1] ?? '';
  return { host: get('HostName'), keyName: get('SharedAccessKeyName'), key: get('SharedAccessKey') };
}

/** Creates `count` SAS devices (plus the round-trip device) with a known key, 100 per bulk call. */
async function createDevices(hub: HubProcess, caPem: string, count: number, key: string): Promise<number> {
  const { host, keyName, key: policyKey } = parseConnectionString(hub.connectionString);
  const token = generateSasToken({ resource: host, key: policyKey, keyName, expiry: Math.floor(Date.now() / 1000) + 3600 });
  const agent = new Agent({ keepAlive: true, maxSockets: 4, ca: caPem });
  const auth = { type: 'sas', symmetricKey: { primaryKey: key, secondaryKey: key } };
  const t0 = performance.now();
  const batches = Math.ceil(count / 100);
  const r = await runPool(batches + 1, 4, performance.now() + 120_000, async (b) => {
    const ids = b === batches ? [RTT_DEVICE] : Array.from({ length: Math.min(100, count - b * 100) }, (_, k) => deviceId(b * 100 + k));
    const body = Buffer.from(JSON.stringify(ids.map((id) => ({ id, importMode: 'create', status: 'enabled', authentication: auth }))));
    const res = await httpsCall(agent, host, token, 'POST', '/devices', body, { 'content-type': 'application/json' });
    if (res.status !== 200) throw new Error(`bulk create: HTTP ${res.status} ${res.body.slice(0, 200)}`);
  });
  agent.destroy();
  if (r.errors > 0) throw new Error(`device creation failed: ${r.firstError ?? ''}`);
  return (performance.now() - t0) / 1000;
}

interface Mosquitto {
  proc: ChildProcess;
  version: string;
  stderr(): string;
}

async function startMosquitto(dir: string, ca: { certPem: string; keyPem: string }, window: number, password: string): Promise<Mosquitto> {
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

// ------------------------------------------------------------------------------------- report

interface ServerRef {
  name: string;
  /** Changes when the servers are restarted. */
  pid: number;
  target: Target;
}

const fmtInt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const fmt1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
const fmt2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
const mark = (ok: boolean) => (ok ? 'met' : '**not met**');

interface Measure {
  serverCpuS: number;
  mainThreadCpuS: number;
  /** Time the main thread was runnable but had no CPU (the other processes held both cores). */
  mainRunQueueS: number;
  machineBusyS: number;
  wallS: number;
}

/** Who was saturated, and the CPU columns: server (main thread) / load generator / everything else. */
function load(m: Measure, genCpuPct: number): { cpu: string; bound: string } {
  const serverPct = (m.serverCpuS / m.wallS) * 100;
  const mainPct = (m.mainThreadCpuS / m.wallS) * 100;
  const machineCores = m.machineBusyS / m.wallS;
  const other = otherCores(m, genCpuPct);
  const queuedPct = (m.mainRunQueueS / m.wallS) * 100;
  const bound =
    mainPct >= 90
      ? 'server (main thread full)'
      : genCpuPct >= 90
        ? 'load generator (a core full)'
        : machineCores >= 1.7
          ? 'both cores busy'
          : mainPct + queuedPct >= 85
            ? 'server (main thread running or waiting for a core)'
            : 'no core full (the server waits on I/O or on its clients)';
  return {
    cpu: `${fmtInt(serverPct)} % (${fmtInt(mainPct)} %, +${fmtInt(queuedPct)} % waiting for a core) / ${fmtInt(genCpuPct)} % / ${fmt2(other)} cores`,
    bound,
  };
}

function sumMeasures(ms: Measure[]): Measure {
  return ms.reduce((a, m) => ({
    serverCpuS: a.serverCpuS + m.serverCpuS,
    mainThreadCpuS: a.mainThreadCpuS + m.mainThreadCpuS,
    mainRunQueueS: a.mainRunQueueS + m.mainRunQueueS,
    machineBusyS: a.machineBusyS + m.machineBusyS,
    wallS: a.wallS + m.wallS,
  }));
}

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

// --------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  const role = argString('role');
  if (role === 'gen') return generatorMain();
  if (role === 'echo') return echoServerMain();

  const nConnects = arg('connects', 2000);
  const concurrency = arg('concurrency', 32);
  const nPublishers = arg('publishers', 100);
  const window = arg('window', 10);
  const nMessages = arg('messages', 200_000);
  const maxSeconds = arg('seconds', 20);
  const nIdle = arg('idle', 10_000);
  const nRtt = arg('rtt', 500);
  const rounds = arg('rounds', 2);
  const only = new Set((argString('only') ?? 'a,b,c,d').split(','));
  const cpuProf = argString('cpu-prof');
  const nDevices = Math.max(nIdle, nPublishers, 1000);

  const loadAtStart = loadavg()[0] ?? 0;
  const dir = mkdtempSync(join(tmpdir(), 'gh-bench-mqtt-'));
  const deviceKey = randomBytes(32).toString('base64');
  const mosqPassword = randomBytes(12).toString('hex');
  const ca = await createDevRootCa({ commonName: 'bench-mqtt CA' });
  const echoCert = await issueServerCertificate(ca, { hostname: ECHO_ADDR });
  writeFileSync(join(dir, 'echo-key.pem'), echoCert.keyPem);
  writeFileSync(join(dir, 'echo-chain.pem'), echoCert.chainPem);

  let hub: HubProcess | undefined;
  let mosq: Mosquitto | undefined;
  let echo: ChildProcess | undefined;
  const gens: Generator[] = [];
  const notes: string[] = [];
  const sections: string[] = [];
  try {
    let preload = '';
    if (cpuProf !== undefined) {
      mkdirSync(cpuProf, { recursive: true });
      preload = join(dir, 'profiler-preload.mjs');
      writeFileSync(preload, PROFILER_PRELOAD);
    }
    const hubEnv = cpuProf === undefined ? undefined : { NODE_OPTIONS: `--import=${pathToFileURL(preload).href}`, GH_BENCH_PROF_DIR: cpuProf };
    const profilers = new Map<number, WindowProfiler>();
    /** Profiles the hub (and the node:tls server) around `fn` when --cpu-prof is given. */
    const profiled = async <T>(ref: ServerRef, name: string, fn: () => Promise<T>): Promise<T> => {
      const profiler = profilers.get(ref.pid);
      if (profiler === undefined) return fn();
      profiler.start();
      try {
        return await fn();
      } finally {
        const file = await profiler.stop(name);
        process.stderr.write(`${profiler.label} CPU profile of ${name}: ${file ?? 'not written'}\n`);
      }
    };
    const startEcho = async (): Promise<ChildProcess> => {
      const child = spawn(process.execPath, [join(ROOT, 'dist/bench/mqtt.js'), '--role', 'echo', '--key', join(dir, 'echo-key.pem'), '--cert', join(dir, 'echo-chain.pem')], {
        stdio: ['pipe', 'pipe', 'inherit'],
        env: { ...process.env, NODE_OPTIONS: hubEnv?.NODE_OPTIONS ?? '', GH_BENCH_PROF_DIR: cpuProf ?? '' },
      });
      reapOnExit(child);
      await waitReady(child, 'node:tls echo server', 10_000);
      if (cpuProf !== undefined) profilers.set(child.pid ?? 0, new WindowProfiler(cpuProf, child.pid ?? 0, 'node-tls'));
      return child;
    };

    // The data dir lives in our temp dir, so it goes with it whatever happens.
    hub = await startHubProcess({ address: HUB_ADDR, dataDir: join(dir, 'hub'), useTestCa: false, extraArgs: HUB_ARGS, ...(hubEnv === undefined ? {} : { env: hubEnv }) });
    if (cpuProf !== undefined) profilers.set(hub.proc.pid ?? 0, new WindowProfiler(cpuProf, hub.proc.pid ?? 0, 'hub'));
    const hubCa = readFileSync(hub.caFile, 'utf8');
    mosq = await startMosquitto(dir, ca, window, mosqPassword);
    echo = await startEcho();
    const createS = await createDevices(hub, hubCa, nDevices, deviceKey);
    process.stderr.write(`bench/mqtt: ${nDevices + 1} devices created in ${createS.toFixed(1)} s; hub pid ${String(hub.proc.pid)}, mosquitto pid ${String(mosq.proc.pid)}, node:tls pid ${String(echo.pid)}\n`);

    const hubRef: ServerRef = { name: 'Gatehouse', pid: hub.proc.pid ?? 0, target: { host: HUB_ADDR, port: 8883, caPem: hubCa, auth: { kind: 'sas', hubHost: HUB_ADDR, key: deviceKey } } };
    const mosqRef: ServerRef = {
      name: `Mosquitto ${mosq.version}`,
      pid: mosq.proc.pid ?? 0,
      target: { host: MOSQ_ADDR, port: MOSQ_PORT, caPem: ca.certPem, auth: { kind: 'password', username: 'bench', password: mosqPassword } },
    };
    const echoRef: ServerRef = { name: 'bare node:tls', pid: echo.pid ?? 0, target: { host: ECHO_ADDR, port: ECHO_PORT, caPem: ca.certPem, auth: { kind: 'echo' } } };
    /** Fresh server processes (the hub on the same data dir, so the same devices and certificate). */
    const restartServers = async (): Promise<void> => {
      if (hub !== undefined) {
        await hub.stop();
        hub = await startHubProcess({ address: HUB_ADDR, dataDir: hub.dataDir, useTestCa: false, extraArgs: HUB_ARGS, ...(hubEnv === undefined ? {} : { env: hubEnv }) });
        hubRef.pid = hub.proc.pid ?? 0;
        if (cpuProf !== undefined) profilers.set(hubRef.pid, new WindowProfiler(cpuProf, hubRef.pid, 'hub'));
      }
      await stopChild(mosq?.proc);
      mosq = await startMosquitto(dir, ca, window, mosqPassword);
      mosqRef.pid = mosq.proc.pid ?? 0;
      await stopChild(echo);
      echo = await startEcho();
      echoRef.pid = echo.pid ?? 0;
      process.stderr.write(`bench/mqtt: servers restarted; hub pid ${String(hubRef.pid)}, mosquitto pid ${String(mosqRef.pid)}, node:tls pid ${String(echoRef.pid)}\n`);
    };
    gens.push(Generator.start(), Generator.start());
    const [gen, gen2] = gens as [Generator, Generator];

    // ---------------------------------------------------------------- (c) idle memory, fresh servers
    if (only.has('c')) {
      const rows: string[][] = [];
      const results: Array<{ ref: ServerRef; kb: number; before: number; after: number; opened: number; seconds: number; note: string }> = [];
      for (const ref of [hubRef, mosqRef, echoRef]) {
        await sleep(1500);
        const before = rssKb(ref.pid);
        const half = Math.ceil(nIdle / 2);
        const [r1, r2] = await Promise.all([
          gen.call<{ opened: number; errors: number; firstError?: string; seconds: number }>({ kind: 'idle-open', target: ref.target, count: half, offset: 0, concurrency: 24 }),
          gen2.call<{ opened: number; errors: number; firstError?: string; seconds: number }>({ kind: 'idle-open', target: ref.target, count: nIdle - half, offset: half, concurrency: 24 }),
        ]);
        // Let it settle: sample once a second for 4 s and keep the last.
        let after = 0;
        for (let k = 0; k < 4; k++) {
          await sleep(1000);
          after = rssKb(ref.pid);
        }
        const opened = r1.opened + r2.opened;
        const [c1, c2] = await Promise.all([gen.call<{ stillOpen: number }>({ kind: 'idle-close' }), gen2.call<{ stillOpen: number }>({ kind: 'idle-close' })]);
        // The server tears 10,000 sessions down now; the next measurement must not pay for it.
        await settle(ref.pid);
        const errs = r1.errors + r2.errors;
        const note = `${fmtInt(opened)} opened in ${fmt1(Math.max(r1.seconds, r2.seconds))} s, ${fmtInt(c1.stillOpen + c2.stillOpen)} still open at the end${errs > 0 ? `, ${errs} failed (${r1.firstError ?? r2.firstError ?? ''})` : ''}`;
        results.push({ ref, kb: (after - before) / Math.max(opened, 1), before, after, opened, seconds: Math.max(r1.seconds, r2.seconds), note });
        process.stderr.write(`(c) ${ref.name}: ${note}; RSS ${before} → ${after} kB\n`);
        if (ref === hubRef && hub !== undefined && c1.stillOpen + c2.stillOpen < opened) {
          process.stderr.write(`(c) hub log tail:\n${hub.output().split('\n').slice(-6).join('\n').slice(0, 3000)}\n`);
        }
      }
      const mosqKb = results.find((x) => x.ref === mosqRef)?.kb ?? NaN;
      for (const x of results) {
        const isHub = x.ref === hubRef;
        rows.push([
          x.ref.name,
          `RSS per idle TLS connection${x.ref === echoRef ? ' (TLS socket, no MQTT)' : ''}`,
          `${fmt1(x.kb)} KB`,
          x.ref === mosqRef ? '1.00×' : ratio(x.kb, mosqKb),
          isHub ? `≤ 2× Mosquitto: ${mark(x.kb <= 2 * mosqKb)}` : '—',
          `${fmt1(x.before / 1024)} → ${fmt1(x.after / 1024)} MB`,
          x.note,
        ]);
      }
      sections.push(
        `### (c) Resident memory per idle TLS device connection (${fmtInt(nIdle)} connections)\n\n` +
          table(['server', 'metric', 'value', 'ratio vs Mosquitto', 'goal', 'server RSS before → after', 'connections'], rows) +
          `\n\nEach connection: TLS handshake, CONNECT (clean session 0, keep-alive 900 s), one SUBSCRIBE to \`devices/<id>/messages/devicebound/#\` (QoS 1), then idle. ` +
          `Opened by two generator processes (${fmtInt(Math.ceil(nIdle / 2))} sockets each, 24 handshakes in flight each); RSS is VmRSS of the server process from /proc/<pid>/status, ` +
          `before and 4 s after the last SUBACK, divided by the connections opened. Measured first, on freshly started servers (the hub had served the bulk device creation); (a) and (b) then run on restarted ones. ` +
          `The node:tls row holds the same sockets with only TLS (no MQTT): the floor a Node server pays per TLS connection.`,
      );
      // (a) and (b) get fresh processes: tearing down 10,000 sessions leaves garbage to collect.
      if (only.has('a') || only.has('b')) await restartServers();
    }

    // ---------------------------------------------------------------- (a) connect + auth rate
    if (only.has('a')) {
      const refs = [hubRef, mosqRef, echoRef];
      const per = new Map<ServerRef, { results: ConnectResult[]; measures: Measure[] }>(refs.map((r) => [r, { results: [], measures: [] }]));
      for (const ref of refs) {
        // Warm-up (JIT, caches), not counted.
        await gen.call<ConnectResult>({ kind: 'connect', target: ref.target, n: 500, concurrency, devices: nDevices, maxSeconds: 20 });
      }
      const tries = new Map<ServerRef, number>();
      // Rounds interleave the servers, so a change in the machine's other load hits all of them.
      for (let round = 0; round < rounds; round++) {
        for (const ref of refs) {
          const { m, attempts } = await leastContended(`(a) round ${round + 1} ${ref.name}`, async () => {
            await settle(ref.pid);
            const m = await profiled(ref, `a-connect-${round + 1}`, () =>
              measured(ref.pid, () => gen.call<ConnectResult>({ kind: 'connect', target: ref.target, n: nConnects, concurrency, devices: nDevices, maxSeconds: 40 })),
            );
            return { m, genCpuPct: m.r.genCpuPct };
          });
          const r = m.r;
          tries.set(ref, (tries.get(ref) ?? 0) + attempts);
          per.get(ref)?.results.push(r);
          per.get(ref)?.measures.push(m);
          process.stderr.write(
            `(a) round ${round + 1} ${ref.name}: ${r.done} ok, ${r.errors} failed in ${r.seconds.toFixed(2)} s (${r.protocol} ${r.cipher}); ` +
              `server CPU ${fmtInt((m.serverCpuS / Math.max(r.done, 1)) * 1e6)} µs/conn, main thread ${fmtInt((m.mainThreadCpuS / Math.max(r.done, 1)) * 1e6)} µs/conn, ` +
              `load gen ${fmtInt(r.genCpuPct)} %${r.firstError === undefined ? '' : `: ${r.firstError}`}\n`,
          );
        }
      }
      const agg = refs.map((ref) => {
        const { results, measures } = per.get(ref) ?? { results: [], measures: [] };
        const done = results.reduce((n, r) => n + r.done, 0);
        const errors = results.reduce((n, r) => n + r.errors, 0);
        const seconds = results.reduce((n, r) => n + r.seconds, 0);
        const genPct = results.reduce((n, r) => n + r.genCpuPct * r.seconds, 0) / Math.max(seconds, 1e-9);
        const lat = results.flatMap((r) => r.latencies).sort((a, b) => a - b);
        const m = sumMeasures(measures);
        const usPerConn = (m.serverCpuS / Math.max(done, 1)) * 1e6;
        return { ref, done, errors, rate: done / seconds, genPct, m, usPerConn, attempts: tries.get(ref) ?? rounds, perCore: 1e6 / usPerConn, p50: percentile(lat, 50), p99: percentile(lat, 99), first: results[0] };
      });
      const base = agg.find((x) => x.ref === echoRef);
      const rows = agg.map((x) => {
        const isHub = x.ref === hubRef;
        const isBase = x.ref === echoRef;
        const l = load(x.m, x.genPct);
        return [
          x.ref.name,
          isBase ? 'TLS handshake + 4-byte echo / s' : 'TLS + CONNECT/CONNACK + DISCONNECT / s',
          fmtInt(x.rate),
          isBase ? '1.00×' : ratio(x.rate, base?.rate ?? NaN),
          isHub
            ? `≥ 0.80× node:tls: ${mark(x.rate >= 0.8 * (base?.rate ?? Infinity))} (observed); ${mark(x.perCore >= 0.8 * (base?.perCore ?? Infinity))} (per core)`
            : '—',
          `${fmtInt(x.usPerConn)} µs → ${fmtInt(x.perCore)}/s`,
          isBase ? '1.00×' : ratio(x.perCore, base?.perCore ?? NaN),
          `${fmt1(x.p50)} / ${fmt1(x.p99)}`,
          l.cpu,
          l.bound,
          `${fmtInt(x.done)}${x.errors > 0 ? ` (+${x.errors} failed)` : ''}${x.attempts > rounds ? `; ${x.attempts - rounds} contended run(s) measured again` : ''}`,
        ];
      });
      const tlsInfo = agg.map((x) => `${x.ref.name} ${x.first?.protocol ?? '?'} ${x.first?.cipher ?? ''}`).join(', ');
      sections.push(
        `### (a) TLS connect + authenticate\n\n` +
          table(
            [
              'server',
              'metric',
              'value',
              'ratio vs node:tls',
              'goal',
              'server CPU per connection → connections/s per server core',
              'per-core ratio vs node:tls',
              'p50 / p99 ms to CONNACK (echo)',
              'CPU: server (main thread) / load gen / other',
              'bound by',
              'connections',
            ],
            rows,
          ) +
          `\n\n${rounds} rounds × ${fmtInt(nConnects)} connections per server (rounds interleave the servers), after 500 warm-up ones; ${concurrency} in flight from one generator process; ` +
          `each a full handshake (no resumption) with an ECDSA P-256 server certificate (leaf + CA sent), closed by the client after CONNACK (DISCONNECT) or after the echo, ` +
          `counted once the socket is closed. Gatehouse: a SAS token per device (token check, device lookup, connection state written on connect and on disconnect); ` +
          `Mosquitto: \`password_file\` user (one user for all clients); node:tls: \`tls.createServer\` with the hub listener's options ` +
          `(\`requestCert: true, rejectUnauthorized: false\`, TLS ≥ 1.2). Negotiated: ${tlsInfo}. ` +
          `The observed rate is capped by the load generator (a Node TLS client costs about as much CPU per handshake as the server), so the server CPU per connection, ` +
          `and the per-core capacity it implies, is the comparison that holds off this machine; the goal is shown against both.`,
      );
    }

    // ---------------------------------------------------------------- (b) QoS 1 telemetry
    if (only.has('b')) {
      const results: Array<{ ref: ServerRef; r: PublishResult; m: Measure; note: string; attempts: number }> = [];
      for (const ref of [hubRef, mosqRef]) {
        const { m, attempts } = await leastContended(`(b) ${ref.name}`, async () => {
          const opened = await gen.call<{ opened: number; errors: number; firstError?: string }>({ kind: 'publish-open', target: ref.target, conns: nPublishers, offset: 0, payloadBytes: 100 });
          if (opened.errors > 0) process.stderr.write(`(b) ${ref.name}: ${opened.errors} publishers failed to connect: ${opened.firstError ?? ''}\n`);
          await settle(ref.pid);
          const m = await profiled(ref, 'b-telemetry', () =>
            measured(ref.pid, () => gen.call<PublishResult>({ kind: 'publish-run', total: nMessages, window, maxSeconds }, (maxSeconds + 30) * 1000)),
          );
          await gen.call({ kind: 'publish-close' });
          await settle(ref.pid);
          return { m, genCpuPct: m.r.genCpuPct };
        });
        const r = m.r;
        let note = '';
        if (r.stalled) note = 'no PUBACK for 10 s: stopped';
        if (r.closedEarly > 0) note += `${note === '' ? '' : '; '}${r.closedEarly} connections closed by the server`;
        if (ref === hubRef && hub !== undefined) {
          const m2 = /telemetry (append failed|could not be stored)[^\n]*/.exec(hub.output());
          if (m2 !== null) note += `${note === '' ? '' : '; '}hub log: ${m2[0].slice(0, 200)}`;
          if (r.closedEarly > 0 || r.stalled) process.stderr.write(`(b) hub log tail:\n${hub.output().split('\n').slice(-8).join('\n').slice(0, 4000)}\n`);
        }
        results.push({ ref, r, m, note, attempts });
        process.stderr.write(
          `(b) ${ref.name}: ${r.acked} acked of ${r.sent} sent in ${r.seconds.toFixed(2)} s; server CPU ${fmt1((m.serverCpuS / Math.max(r.acked, 1)) * 1e6)} µs/msg, main thread ${fmt1((m.mainThreadCpuS / Math.max(r.acked, 1)) * 1e6)} µs/msg${note === '' ? '' : ` (${note})`}\n`,
        );
        await sleep(1000);
      }
      const mosqRate = results.find((x) => x.ref === mosqRef)?.r.rate ?? NaN;
      const rows = results.map((x) => {
        const isHub = x.ref === hubRef;
        const available = x.r.acked > 0 && !(x.r.stalled && x.r.acked < 1000);
        const l = load(x.m, x.r.genCpuPct);
        return [
          x.ref.name,
          isHub ? 'QoS 1 msgs/s, PUBACK after the SQLite commit' : 'QoS 1 msgs/s, PUBACK on receipt (persistence false)',
          available ? fmtInt(x.r.rate) : `not available (${x.note || 'no PUBACK'})`,
          x.ref === mosqRef ? '1.00×' : available ? ratio(x.r.rate, mosqRate) : 'n/a',
          isHub ? `≥ Mosquitto: ${available ? mark(x.r.rate >= mosqRate) : '**not met**'}` : '—',
          `${fmt1((x.m.serverCpuS / Math.max(x.r.acked, 1)) * 1e6)} µs`,
          `${fmt1(x.r.p50ms)} / ${fmt1(x.r.p99ms)}`,
          l.cpu,
          l.bound,
          `${fmtInt(x.r.acked)} in ${fmt1(x.r.seconds)} s${x.note === '' ? '' : ` (${x.note})`}${x.attempts > 1 ? `; least contended of ${x.attempts} runs` : ''}`,
        ];
      });
      sections.push(
        `### (b) QoS 1 telemetry, ${nPublishers} devices, 100-byte payloads\n\n` +
          table(
            ['server', 'metric', 'value', 'ratio vs Mosquitto', 'goal', 'server CPU per message', 'p50 / p99 ms PUBLISH → PUBACK', 'CPU: server (main thread) / load gen / other', 'bound by', 'messages'],
            rows,
          ) +
          `\n\n${nPublishers} TLS connections in one generator process, each publishing QoS 1 to \`devices/<id>/messages/events/\` with at most ${window} unacknowledged PUBLISHes ` +
          `(one PUBLISH per write, the next one sent on each PUBACK), ${fmtInt(nMessages)} messages or ${maxSeconds} s, whichever comes first. ` +
          `**Gatehouse acknowledges a message only once it is committed to its SQLite event store** (durable; that is the product). ` +
          `Mosquitto runs with \`persistence false\` and \`max_inflight_messages ${window}\`; nobody subscribes, so it acknowledges on receipt and drops the message ` +
          `(\`persistence true\` would not change that: Mosquitto only snapshots its in-memory state to disk every \`autosave_interval\`, 1800 s by default; it never syncs per message). ` +
          `The two numbers compare a durable write path with an in-memory relay; where Mosquitto's row says the load generator was the bound, its figure (and so the ratio's denominator) is a lower bound.`,
      );
    }

    // ---------------------------------------------------------------- (d) methods and C2D round trips
    if (only.has('d')) {
      const { keyName, key } = parseConnectionString(hub.connectionString);
      const r = await gen.call<{ methods: Latency; c2d: Latency }>(
        { kind: 'rtt', spec: { hubHost: HUB_ADDR, caPem: hubCa, deviceKey, serviceKeyName: keyName, serviceKey: key, n: nRtt, maxSeconds: 20 } },
        120_000,
      );
      const row = (name: string, l: Latency) => [
        'Gatehouse',
        name,
        l.status === 'ok' ? `${fmt2(l.p50ms)} / ${fmt2(l.p99ms)} ms` : `not available (${l.detail})`,
        '—',
        '— (no goal set)',
        l.status === 'ok' ? String(l.samples) : '0',
      ];
      sections.push(
        `### (d) Direct-method and C2D round trips (Gatehouse only)\n\n` +
          table(['server', 'metric', 'value (p50 / p99)', 'ratio', 'goal', 'samples'], [
            row('direct method: POST /twins/{id}/methods → device answers → HTTP 200', r.methods),
            row('C2D: POST /devices/{id}/messages/deviceBound → device has the PUBLISH', r.c2d),
          ]) +
          `\n\nOne at a time (latency, not throughput), ${nRtt} of each after 20 warm-up calls, over one keep-alive HTTPS connection with an \`iothubowner\` SAS token; ` +
          `the device is a raw MQTT client (mqtt-packet) in the same generator process that answers each method on \`$iothub/methods/res/200/?$rid=…\` ` +
          `and PUBACKs each C2D message.`,
      );
      process.stderr.write(`(d) methods ${JSON.stringify(r.methods)}\n(d) c2d ${JSON.stringify(r.c2d)}\n`);
    }

    const mosqErr = mosq.stderr().trim();
    if (mosqErr !== '') notes.push(`Mosquitto said: ${mosqErr.split('\n').slice(-3).join(' / ').slice(0, 300)}`);
  } finally {
    for (const g of gens) g.stop();
    await stopChild(echo);
    await stopChild(mosq?.proc);
    if (hub !== undefined) {
      await hub.stop();
      removeDir(hub.dataDir);
    }
    removeDir(dir);
  }

  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const osslSys = /OpenSSL \S+/.exec(spawnSync('openssl', ['version'], { encoding: 'utf8' }).stdout)?.[0] ?? '';
  const section = `${SECTION_TITLE}

Measured ${new Date().toISOString().slice(0, 10)} on ${cpus().length} × ${cpu}, Node ${process.version} (OpenSSL ${process.versions.openssl}),
**Mosquitto ${mosq?.version ?? '?'}** (Debian package, system ${osslSys || 'OpenSSL'}, \`set_tcp_nodelay true\`), against Gatehouse on SQLite. Every server and every load
generator is its own process on the same ${cpus().length} cores over loopback TLS; load generators are Node processes speaking MQTT 3.1.1 with
mqtt-packet over node:tls, the same code for every server. Server CPU is utime+stime of the server process from /proc (in
brackets its main thread, and how long that thread sat runnable without a core), the load generator's from
\`process.cpuUsage()\`, "other" the rest of the machine's busy time (other processes) in cores; 1-minute load average at the
start: ${loadAtStart.toFixed(2)}; a measurement during which other processes kept more than ${CONTENDED_CORES} of a core busy is run again (at most
twice) and the least contended attempt kept. Where the load generator was the bound, the rate is a lower bound for that server and the
server CPU per operation is the number that carries over to other machines.

${sections.join('\n\n')}
${notes.length === 0 ? '' : `\n${notes.map((n) => `- ${n}`).join('\n')}\n`}`;
  process.stdout.write(`${section}\n`);
  if (process.argv.includes('--write')) {
    if (argString('only') !== undefined) {
      process.stderr.write('bench/mqtt: --only given, docs/benchmarks.md left unchanged\n');
      return;
    }
    writeBenchmarkSection(SECTION_TITLE, section);
  }
}

await main();
