/**
 * The cheap device clients of bench/scale: a worker process holds tens of thousands of idle MQTT
 * 3.1.1 connections over node:tls, each from one of the source addresses it was given (each
 * address has its own ~28k ephemeral ports). Per connection only the socket and a small record:
 * CONNECT is one prebuilt buffer, the answers (CONNACK, SUBACK, PINGRESP) are read from the
 * fixed header without a parser, and one sweep per second sends the PINGREQs that are due (each
 * connection once per keep-alive period), as a device does.
 *
 * Tasks (over IPC, from bench/scale.ts): open (connect all, bounded in-flight handshakes,
 * optionally retrying refused ones with a back-off as the SDKs do), watch (report what closed
 * while idle), drop (reset every socket at once, as a network outage does), close.
 *
 *   node dist/bench/scale-clients.js --role worker   (started by bench/scale, never by hand)
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import mqttPacket from 'mqtt-packet';
import { argString, sleep } from './support.js';
import { deviceId, serveTasks, API } from './mqtt-load.js';
import { deviceToken } from '../test/support/raw-mqtt.js';

export type ScaleAuth = { kind: 'sas'; hubHost: string; key: string } | { kind: 'password'; username: string; password: string };

export interface ScaleTarget {
  host: string;
  port: number;
  caPem: string;
  auth: ScaleAuth;
}

export interface OpenSpec {
  target: ScaleTarget;
  /** Devices offset .. offset + count - 1. */
  offset: number;
  count: number;
  /** Source addresses, used in turn. */
  sources: string[];
  /** Handshakes in flight at once. */
  inFlight: number;
  keepalive: number;
  /** SUBSCRIBE to the device's C2D topic after CONNACK (a device's first connection). */
  subscribe: boolean;
  /** Retry a failed connection after 1-5 s until `deadlineSeconds` (a reconnect storm); else count it failed. */
  retry: boolean;
  deadlineSeconds: number;
}

export interface OpenResult {
  opened: number;
  /** Attempts that failed, by reason (a CONNACK code, a socket error code, a timeout). */
  failures: Record<string, number>;
  /** Connections that never got in before the deadline. */
  gaveUp: number;
  seconds: number;
  cpuSeconds: number;
}

const enum Phase {
  Handshake,
  AwaitConnack,
  AwaitSuback,
  Up,
  Gone,
}

interface Conn {
  socket: TLSSocket | undefined;
  tcp: Socket | undefined;
  phase: Phase;
  pingsOut: number;
  /** When this client last sent something (ms, performance.now()). */
  lastTx: number;
  rest: Buffer | undefined;
}

let conns: Conn[] = [];
let target: ScaleTarget | undefined;
let dropsWhileUp = 0;
const dropReasons: Record<string, number> = {};
let pingsSent = 0;
let pongs = 0;
let pingTimer: NodeJS.Timeout | undefined;
let context: SecureContext | undefined;
let contextCa = '';

function connectPacket(auth: ScaleAuth, id: string, keepalive: number): Buffer {
  const base = { cmd: 'connect' as const, protocolId: 'MQTT' as const, protocolVersion: 4 as const, clean: false, clientId: id, keepalive };
  if (auth.kind === 'sas') {
    // Valid for a day: the run must not meet the hub closing sessions whose token expired.
    const token = deviceToken(auth.hubHost, id, auth.key, Math.floor(Date.now() / 1000) + 86_400);
    return mqttPacket.generate({ ...base, username: `${auth.hubHost}/${id}/?${API}`, password: Buffer.from(token) });
  }
  return mqttPacket.generate({ ...base, username: auth.username, password: Buffer.from(auth.password) });
}

const PINGREQ = Buffer.from([0xc0, 0x00]);

/** Walks the fixed headers in `data`; calls `on(type, body)` per whole packet; returns what is left. */
function packets(data: Buffer, on: (type: number, body: Buffer) => void): Buffer | undefined {
  let at = 0;
  while (at < data.length) {
    let len = 0;
    let mul = 1;
    let i = at + 1;
    for (; i < data.length; i++) {
      const b = data[i] as number;
      len += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) break;
    }
    if (i >= data.length || i + 1 + len > data.length) return data.subarray(at);
    on((data[at] as number) >> 4, data.subarray(i + 1, i + 1 + len));
    at = i + 1 + len;
  }
  return undefined;
}

/** One attempt: TLS, CONNECT, CONNACK 0 (and SUBACK). Resolves '' when up, or the failure reason. */
function attempt(c: Conn, spec: OpenSpec, i: number, source: string): Promise<string> {
  return new Promise((resolve) => {
    const id = deviceId(spec.offset + i);
    let settled = false;
    const done = (reason: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(reason);
    };
    // Our own TCP socket under the TLS one: it alone can be reset (resetAndDestroy) for the storm.
    const tcp = netConnect({ host: spec.target.host, port: spec.target.port, localAddress: source });
    const socket = tlsConnect({ socket: tcp, secureContext: context, servername: spec.target.host.startsWith('127.') ? undefined : spec.target.host });
    c.socket = socket;
    c.tcp = tcp;
    c.phase = Phase.Handshake;
    c.rest = undefined;
    // Long enough that a busy server's slowness shows as time, not as client-side failures.
    const timer = setTimeout(() => {
      done(c.phase === Phase.Handshake ? 'client timeout: TLS handshake (60 s)' : 'client timeout: no CONNACK (60 s)');
      socket.destroy();
    }, 60_000);
    socket.once('secureConnect', () => {
      c.phase = Phase.AwaitConnack;
      c.lastTx = performance.now();
      socket.write(connectPacket(spec.target.auth, id, spec.keepalive));
    });
    socket.on('data', (chunk: Buffer) => {
      const data = c.rest === undefined ? chunk : Buffer.concat([c.rest, chunk]);
      c.rest = packets(data, (type, body) => {
        if (type === 2) {
          const rc = body[1] ?? 255;
          if (rc !== 0) {
            done(`CONNACK ${rc}`);
            socket.destroy();
            return;
          }
          if (spec.subscribe) {
            c.phase = Phase.AwaitSuback;
            socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `devices/${id}/messages/devicebound/#`, qos: 1 }] }));
          } else {
            c.phase = Phase.Up;
            done('');
          }
        } else if (type === 9 && c.phase === Phase.AwaitSuback) {
          c.phase = Phase.Up;
          done('');
        } else if (type === 13) {
          pongs++;
          c.pingsOut = 0;
        }
      });
    });
    socket.on('error', (err: Error & { code?: string }) => done(c.phase === Phase.Handshake ? `TLS/TCP: ${err.code ?? err.message}` : `socket error: ${err.code ?? err.message}`));
    let lastError = '';
    socket.on('error', (err: Error & { code?: string }) => (lastError = err.code ?? err.message));
    socket.once('close', () => {
      // A socket given up on (timed out, refused) closes late: its record belongs to the next attempt.
      if (c.socket !== socket) return done('closed');
      if (c.phase === Phase.Up) {
        dropsWhileUp++;
        const why = `closed while up${lastError === '' ? '' : ` (${lastError})`}, ${((performance.now() - c.lastTx) / 1000).toFixed(0)} s after our last packet`;
        const key = why.replace(/\d+ s after/, (m) => `${Math.floor(Number(m.split(' ')[0]) / 30) * 30}+ s after`);
        dropReasons[key] = (dropReasons[key] ?? 0) + 1;
      } else {
        done(c.phase === Phase.Handshake ? 'closed during the TLS handshake' : c.phase === Phase.AwaitConnack ? 'closed before CONNACK' : 'closed before SUBACK');
      }
      c.phase = Phase.Gone;
      c.socket = undefined;
    });
  });
}

/**
 * Once a second, a PINGREQ to each connection that sent nothing for 90 % of its keep-alive [MQTT-3.1.2-23]:
 * by time, not by a slice per tick, so a client process busy with handshakes (late ticks) still pings in time.
 */
function startPinging(keepalive: number): void {
  clearInterval(pingTimer);
  const due = keepalive * 900;
  pingTimer = setInterval(() => {
    const now = performance.now();
    for (const c of conns) {
      if (c.phase !== Phase.Up || c.socket === undefined || now - c.lastTx < due) continue;
      c.pingsOut++;
      pingsSent++;
      c.lastTx = now;
      c.socket.write(PINGREQ);
    }
  }, 1000);
}

async function open(spec: OpenSpec): Promise<OpenResult> {
  target = spec.target;
  if (context === undefined || contextCa !== spec.target.caPem) {
    context = createSecureContext({ ca: spec.target.caPem });
    contextCa = spec.target.caPem;
  }
  if (conns.length !== spec.count) conns = Array.from({ length: spec.count }, () => ({ socket: undefined, tcp: undefined, phase: Phase.Gone, pingsOut: 0, lastTx: 0, rest: undefined }));
  const failures: Record<string, number> = {};
  let opened = 0;
  let gaveUp = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + spec.deadlineSeconds * 1000;
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < spec.count; i = next++) {
      const c = conns[i] as Conn;
      const source = spec.sources[i % spec.sources.length] as string;
      for (;;) {
        const reason = await attempt(c, spec, i, source);
        if (reason === '') {
          opened++;
          break;
        }
        failures[reason] = (failures[reason] ?? 0) + 1;
        c.socket?.destroy();
        if (!spec.retry || performance.now() > deadline) {
          gaveUp++;
          break;
        }
        await sleep(1000 + Math.random() * 4000);
      }
    }
  };
  startPinging(spec.keepalive);
  await Promise.all(Array.from({ length: Math.min(spec.inFlight, spec.count) }, lane));
  const cpu = process.cpuUsage(c0);
  return { opened, failures, gaveUp, seconds: (performance.now() - t0) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/** How many connections are up now; what closed while up since the last call; pings and answers. */
function watch(): { up: number; dropped: number; dropReasons: Record<string, number>; pingsSent: number; pongs: number; unanswered: number } {
  const r = {
    up: conns.filter((c) => c.phase === Phase.Up).length,
    dropped: dropsWhileUp,
    dropReasons: { ...dropReasons },
    pingsSent,
    pongs,
    // A ping outstanding at the time of the call is in flight, not lost: count two or more.
    unanswered: conns.filter((c) => c.pingsOut >= 2).length,
  };
  dropsWhileUp = 0;
  for (const k of Object.keys(dropReasons)) delete dropReasons[k];
  pingsSent = 0;
  pongs = 0;
  return r;
}

/** A network outage: every socket reset at once (RST, no FIN, no TIME_WAIT), no DISCONNECT. */
function drop(): { dropped: number } {
  return { dropped: resetAll() };
}

/** Resets every open socket (RST, no FIN); returns how many there were. */
function resetAll(): number {
  let n = 0;
  for (const c of conns) {
    if (c.socket === undefined) continue;
    c.phase = Phase.Gone;
    c.tcp?.resetAndDestroy();
    c.socket.destroy();
    c.socket = undefined;
    c.tcp = undefined;
    n++;
  }
  return n;
}

async function close(): Promise<{ closed: number }> {
  clearInterval(pingTimer);
  const n = resetAll();
  conns = [];
  target = undefined;
  await sleep(200);
  return { closed: n };
}

export type ScaleTask =
  | { kind: 'open'; spec: OpenSpec }
  | { kind: 'watch' }
  | { kind: 'drop' }
  | { kind: 'close' };

function run(t: ScaleTask): Promise<unknown> {
  switch (t.kind) {
    case 'open':
      return open(t.spec);
    case 'watch':
      return Promise.resolve(watch());
    case 'drop':
      return Promise.resolve(drop());
    case 'close':
      return close();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url) && argString('role') === 'worker') {
  void target;
  serveTasks(run);
}
