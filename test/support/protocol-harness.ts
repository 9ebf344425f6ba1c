/**
 * The MQTT broker and the AMQP server in memory, for packet-level tests: the hub's own services
 * (prepareHub: SQLite in a temp dir, the local bus) wired as `startHub` wires them
 * (src/endpoints.ts), and each test connection one end of an in-memory stream pair whose other
 * end the broker (or the AMQP admission) takes as a listener's TLS socket, with the peer the TLS
 * socket would have given. No hub process, no port, no TLS; the log is kept as parsed lines.
 *
 * The shape is aedes's test/helper.js (a duplex pair, packets written and read with
 * mqtt-packet); Node 20 has no stream.duplexPair, hence memoryPair below.
 */
import type { X509Certificate } from 'node:crypto';
import { Duplex } from 'node:stream';
import pino from 'pino';
import rhea, { type Connection } from 'rhea';
import { systemClock } from '../../src/core/clock.js';
import { loadConfig } from '../../src/config/schema.js';
import { createProtocolEndpoints } from '../../src/endpoints.js';
import { closePrepared, prepareHub, type PreparedHub } from '../../src/hub.js';
import type { HubServices } from '../../src/protocol/http/services.js';
import type { MqttBroker } from '../../src/protocol/mqtt/broker.js';
import type { MqttConnection, PeerInfo } from '../../src/protocol/mqtt/connection.js';
import type { AmqpServer } from '../../src/protocol/amqp/amqp-server.js';
import type { AmqpPeer } from '../../src/protocol/amqp/amqp-admission.js';
import { removeDir, tempDir } from './hub-process.js';
import { mqttClientOn, type MqttClientEnd } from './mqtt-packets.js';

/**
 * One side of an in-memory byte stream: what it writes, the other side reads, in order, on a later
 * tick (as from a socket: a push in the writer's call would run the reader's 'data' handlers inside
 * the writer's write, and rhea then wrote its protocol header twice). What was written before a
 * destroy still arrives, as a socket's kernel buffer does; a reader that stops reading holds the
 * writer's callbacks, so writableLength and 'drain' behave as on a socket.
 */
class PairEnd extends Duplex {
  other: PairEnd | undefined;
  /** Written, not yet handed to the other side. */
  #queue: Buffer[] = [];
  #flushing = false;
  /** The other side's buffer is over its mark: the next write callback waits for its _read. */
  #blocked = false;
  #pendingWrite: (() => void) | undefined;

  override _read(): void {
    const other = this.other;
    if (other === undefined) return;
    other.#blocked = false;
    const done = other.#pendingWrite;
    other.#pendingWrite = undefined;
    done?.();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.#queue.push(chunk);
    if (!this.#flushing) {
      this.#flushing = true;
      process.nextTick(() => this.#flush());
    }
    if (this.#blocked) this.#pendingWrite = () => done();
    else done();
  }

  #flush(): void {
    this.#flushing = false;
    const other = this.other;
    const chunks = this.#queue;
    this.#queue = [];
    if (other === undefined || other.destroyed) return;
    for (const c of chunks) if (!other.push(c)) this.#blocked = true;
  }

  override _final(done: (err?: Error | null) => void): void {
    process.nextTick(() => {
      this.#flush();
      this.other?.push(null);
      done();
    });
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    // As a socket: what was written arrives, then the other side sees its end and close.
    process.nextTick(() => {
      this.#flush();
      const other = this.other;
      this.other = undefined;
      if (other !== undefined && !other.destroyed) {
        other.push(null);
        other.destroy();
      }
    });
    done(err);
  }
}

/** Two connected in-memory streams: [the client's end, the server's end]. */
export function memoryPair(): [Duplex, Duplex] {
  const client = new PairEnd();
  const server = new PairEnd();
  client.other = server;
  server.other = client;
  return [client, server];
}

/** The hub's log as parsed JSON lines. */
export class LogLines {
  readonly lines: Array<Record<string, unknown>> = [];

  /** Where a test starts looking: `since(mark())`. */
  mark(): number {
    return this.lines.length;
  }

  since(mark: number): Array<Record<string, unknown>> {
    return this.lines.slice(mark);
  }

  /** Error-level lines (pino level >= 50): something failed inside the hub. */
  errorsSince(mark: number): Array<Record<string, unknown>> {
    return this.since(mark).filter((l) => Number(l.level) >= 50);
  }

  write(line: string): void {
    try {
      this.lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // pino writes one JSON object a line
    }
  }
}

export interface PeerOptions {
  remoteAddress?: string;
  tlsVersion?: string;
  /** The client certificate chain the TLS handshake would have given, leaf first. */
  chain?: X509Certificate[];
}

export interface HarnessMqtt extends MqttClientEnd {
  /** The server's end of the connection (its state, identity). */
  connection: MqttConnection;
  /** Sends a CONNECT and returns the CONNACK's return code (undefined when none came). */
  connect(packet: Parameters<MqttClientEnd['send']>[0]): Promise<number | undefined>;
}

export interface HarnessAmqp {
  /** The client's end: write frames, read the hub's. */
  stream: Duplex;
  /** Everything the hub has written so far. */
  received(): Buffer;
  closed: Promise<void>;
  isClosed(): boolean;
}

export interface ProtocolHarness {
  hostname: string;
  prepared: PreparedHub;
  services: HubServices;
  broker: MqttBroker;
  amqp: AmqpServer;
  log: LogLines;
  /** A new MQTT connection, as the MQTT TLS listener would hand it to the broker. */
  mqtt(peer?: PeerOptions & { transport?: PeerInfo['transport'] }): HarnessMqtt;
  /** A new AMQP connection, as the AMQPS listener would hand it to the admission. */
  amqpConnection(peer?: PeerOptions): HarnessAmqp;
  /**
   * A rhea client connection over a new in-memory AMQP connection (resolves at the hub's open;
   * rejects when the hub closes it first).
   */
  amqpClient(peer?: PeerOptions): Promise<{ conn: Connection; peer: HarnessAmqp }>;
  /** Creates an enabled (or disabled) device with a symmetric key; returns its primary key. */
  device(id: string, status?: 'enabled' | 'disabled'): Promise<string>;
  close(): Promise<void>;
}

let peers = 0;
/** A remote address per connection unless a test names one: refusals are logged once per address a minute. */
const nextAddress = (): string => {
  peers += 1;
  return `198.51.100.${peers % 250}`;
};

/**
 * A prepared hub (its own temp data dir) with the broker and the AMQP server wired to it.
 * `flags`: hub options as `loadConfig` takes them (e.g. mqttConnectTimeout: 1).
 */
export async function startProtocolHarness(flags: Record<string, unknown> = {}): Promise<ProtocolHarness> {
  const dataDir = tempDir('harness');
  const hostname = 'harness.gatehouse.test';
  const testCa = process.env.GATEHOUSE_TEST_CA_CERT === undefined ? {} : { tlsCaCert: process.env.GATEHOUSE_TEST_CA_CERT, tlsCaKey: process.env.GATEHOUSE_TEST_CA_KEY };
  const config = loadConfig({ dataDir, hostname, bind: '127.0.0.1', logLevel: 'info', ...testCa, ...flags }, {});
  const log = new LogLines();
  const logger = pino({ level: 'info' }, { write: (s: string) => log.write(s) });
  const prepared = await prepareHub(config, logger);
  const { services } = prepared;
  const { broker, amqp } = createProtocolEndpoints(prepared, logger, systemClock);
  // What startHub starts once its listeners are up: C2D expiry, telemetry group commit, the audit log.
  services.c2d.start();
  prepared.eventLog.start();
  await services.auditLog.start();
  services.policyUsage.start();

  const harness: ProtocolHarness = {
    hostname,
    prepared,
    services,
    broker,
    amqp,
    log,
    mqtt(peer = {}) {
      const [client, server] = memoryPair();
      const connection = broker.handle(server, {
        chain: peer.chain,
        remoteAddress: peer.remoteAddress ?? nextAddress(),
        transport: peer.transport ?? 'mqtt',
        tlsVersion: peer.tlsVersion ?? 'TLSv1.3',
      });
      const end = mqttClientOn(client);
      return {
        ...end,
        connection,
        async connect(packet) {
          end.send(packet);
          const p = await end.next();
          return p?.cmd === 'connack' ? p.returnCode : undefined;
        },
      };
    },
    amqpConnection(peer = {}) {
      const [client, server] = memoryPair();
      const chain = peer.chain;
      const amqpPeer: AmqpPeer = { transport: 'amqp', remoteAddress: peer.remoteAddress ?? nextAddress(), tlsVersion: peer.tlsVersion ?? 'TLSv1.3', chain: () => chain };
      const chunks: Buffer[] = [];
      client.on('data', (c: Buffer) => chunks.push(c));
      client.on('error', () => undefined);
      let closed = false;
      const closedP = new Promise<void>((resolve) =>
        client.once('close', () => {
          closed = true;
          resolve();
        }),
      );
      amqp.handle(server, amqpPeer);
      return { stream: client, received: () => Buffer.concat(chunks), closed: closedP, isClosed: () => closed };
    },
    amqpClient(peer = {}) {
      const end = harness.amqpConnection(peer);
      return new Promise((resolve, reject) => {
        const conn = rhea.create_container().connect({
          reconnect: false,
          // rhea's hook for a transport of the caller's: here the client's end of the pair.
          connection_details: () => ({
            connect: (_port: number, _host: string, _options: unknown, connected: () => void) => {
              process.nextTick(connected);
              return end.stream;
            },
          }),
        } as never);
        conn.once('connection_open', () => resolve({ conn, peer: end }));
        conn.once('disconnected', (ctx: { error?: Error }) => reject(ctx.error ?? new Error('disconnected before the open')));
        conn.on('error', () => undefined);
      });
    },
    async device(id, status = 'enabled') {
      const record = await services.registry.createDevice(id, { deviceId: id, status });
      const key = record.auth.primaryKey;
      if (key === null) throw new Error(`device ${id} has no symmetric key`);
      return key;
    },
    async close() {
      broker.closeAll('harness closing');
      amqp.closeAll('harness closing');
      await services.c2d.stop();
      await services.auditLog.stop();
      await services.policyUsage.stop().catch(() => undefined);
      services.metrics.stop();
      await closePrepared(prepared);
      removeDir(dataDir);
    },
  };
  return harness;
}
