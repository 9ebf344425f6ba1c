/**
 * One MQTT connection: a parser on a Duplex stream, a state machine, deadlines, and the dispatch of
 * packets to one handler per packet type (handlers/). Owns no socket: listeners hand it a stream
 * and the TLS peer chain, so tests and every transport share this path (STYLE.md 1, 2).
 *
 * Nothing a client sends can take the process down: a malformed packet, a protocol violation or
 * a handler error closes this connection with a reason in the log, nothing else.
 *
 * Nor can a client that does not read make the hub hold its answers (backpressure.ts): packets
 * are handled one at a time from a bounded backlog, a handler's answer that does not drain stops
 * the handling and the reading until it does, and unsent output over the cap closes the connection.
 */
import type { X509Certificate } from 'node:crypto';
import type { Duplex } from 'node:stream';
import mqttPacket, { type Packet } from 'mqtt-packet';
import type { DeviceIdentity } from '../../auth/device-authenticator.js';
import type { JsonObject, JsonValue } from '../../core/json.js';
import type { LiveSession } from '../../hub/connections.js';
import type { MqttSubscription } from '../../store/session-ports.js';
import type { BrokerDeps } from './broker-deps.js';
import { handleConnect } from './handlers/connect.js';
import { handleSubscribe } from './handlers/subscribe.js';
import { handleUnsubscribe } from './handlers/unsubscribe.js';
import { handlePublish } from './handlers/publish.js';
import { handlePuback } from './handlers/puback.js';
import { C2dPump } from './c2d-pump.js';
import { handleDpsPublish, handleDpsSubscribe } from './handlers/dps.js';
import type { Attested } from '../../dps/registration-service.js';
import { METHODS_FILTER, TWIN_DESIRED_FILTER, jsonPayload, type ParsedBag } from './topics.js';
import { OutputBound, ReadGate, type OutputSide, type ReadHold } from '../transport/backpressure.js';
import { AckQueue, type AckOutput } from './ack-queue.js';
import { PacketReader, type PacketSink } from './packet-reader.js';
import { unwatchDeadlines, watchDeadlines, type Deadlined } from './deadlines.js';

// mqtt-packet builds a table of all 65,536 packet identifiers as 2-byte Buffers at its first
// generate (about 7 MB of heap, for the process's life): the few packets the hub generates with
// it (CONNACK, SUBACK, C2D and twin PUBLISHes) write the identifier directly instead.
mqttPacket.writeToStream.cacheNumbers = false;

/** The stream's connection, for the listeners every connection shares. */
const OWNER = Symbol('mqtt connection');
type Owned = Duplex & { [OWNER]?: MqttConnection };

/** A PUBACK: fixed header 0x40, remaining length 2, the packet identifier. */
function puback(messageId: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b[0] = 0x40;
  b[1] = 2;
  b.writeUInt16BE(messageId, 2);
  return b;
}

const corked = new Set<Duplex>();
let uncorkScheduled = false;

/** Corks `stream` until this turn's check phase, so the writes of one turn leave together. */
function coalesce(stream: Duplex): void {
  if (corked.has(stream)) return;
  stream.cork();
  corked.add(stream);
  if (uncorkScheduled) return;
  uncorkScheduled = true;
  setImmediate(() => {
    uncorkScheduled = false;
    for (const s of corked) s.uncork();
    corked.clear();
  });
}

export type ConnectionState = 'awaiting-connect' | 'authenticating' | 'connected' | 'closed';

/** Largest packet accepted: a 256 KB message plus a generous topic and header. */
export const MAX_PACKET_BYTES = 256 * 1024 + 64 * 1024;
/** Azure caps the keep-alive it honours at 1767 s (wire doc §3.1). */
export const MAX_KEEPALIVE_SECONDS = 1767;
/**
 * Parsed packets waiting for their handler: above this the connection stops reading until half
 * of them are handled. One read chunk (at most 64 KB) can hold more; they are handled first.
 */
export const MAX_BACKLOG_PACKETS = 64;

export interface PeerInfo {
  chain: X509Certificate[] | undefined;
  remoteAddress: string;
  transport: 'mqtt' | 'mqtt-ws';
  tlsVersion: string | undefined;
}

export class MqttConnection implements LiveSession, AckOutput, OutputSide, PacketSink, Deadlined {
  state: ConnectionState = 'awaiting-connect';
  identity: DeviceIdentity | undefined;
  clientId = '';
  /** A hub device session, or a provisioning (DPS) client. */
  kind: 'device' | 'dps' = 'device';
  dpsAttested: Attested | undefined;
  cleanSession = true;
  /** The IoT Plug and Play model id the device announced in its CONNECT username. */
  modelId: string | undefined;
  subscriptions = new Map<string, MqttSubscription>();
  /** Told once, when the connection closes (the broker's table of open connections). */
  onClosed: ((conn: MqttConnection) => void) | undefined;
  /** The last telemetry property bag and its parse: a device sends the same one message after message (handlers/publish.ts). */
  lastBag: { text: string; bag: ParsedBag } | undefined;
  /** C2D delivery, made on first use: most devices never get a C2D message in a connection's life. */
  #c2d: C2dPump | undefined;

  /** No parser of its own between packets (packet-reader.ts). */
  readonly #reader = new PacketReader(this);
  /** Packets parsed and not yet handled, in order; one handler runs at a time. */
  readonly #backlog: Packet[] = [];
  #handling = false;
  readonly #gate: ReadGate;
  readonly #output: OutputBound;
  /** Telemetry waiting for the log, made on the first PUBLISH; PUBACKs go out in the order the PUBLISHes came [MQTT-4.6.0-2]. */
  #acks: AckQueue | undefined;
  #lastActivityWrite = 0;
  /** performance.now() at the last read; the keep-alive deadline is #keepAliveMs after it (deadlines.ts). */
  #readAt = 0;
  #keepAliveMs = 0;
  /** When the credential expires (the hub clock's ms), if it does. */
  #expiresAt: number | undefined;
  #connectTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly stream: Duplex,
    readonly peer: PeerInfo,
    readonly deps: BrokerDeps,
  ) {
    this.#gate = new ReadGate(stream);
    this.#output = new OutputBound(this, this.#gate, deps.limits.output, this);
    (stream as Owned)[OWNER] = this;
    stream.on('data', MqttConnection.#streamEvents.data);
    stream.on('error', MqttConnection.#streamEvents.error);
    stream.on('close', MqttConnection.#streamEvents.close);
    stream.on('end', MqttConnection.#streamEvents.end);
    this.#connectTimer = setTimeout(() => this.close('no CONNECT in time'), deps.limits.connectTimeoutMs);
  }

  /**
   * The stream's listeners, the same functions for every connection (the stream names its
   * connection): four closures and their context per connection were ~0.3 KB of an idle device.
   */
  static readonly #streamEvents = {
    data(this: Duplex, chunk: Buffer): void {
      const conn = (this as Owned)[OWNER];
      if (conn !== undefined) conn.#onData(chunk);
    },
    error(this: Duplex): void {
      (this as Owned)[OWNER]?.close('stream error');
    },
    close(this: Duplex): void {
      (this as Owned)[OWNER]?.close('peer closed');
    },
    end(this: Duplex): void {
      (this as Owned)[OWNER]?.close('peer ended');
    },
  };

  /** The sweep (deadlines.ts): no traffic for 1.5 × the keep-alive, or the credential expired. */
  checkDeadlines(now: number): void {
    if (now - this.#readAt >= this.#keepAliveMs) {
      this.close(this.#output.blocked ? 'keep-alive expired while its output did not drain: the client is not reading' : 'keep-alive expired');
    } else if (this.#expiresAt !== undefined && this.deps.clock.now() >= this.#expiresAt) {
      this.close('credential expired');
    }
  }

  get c2d(): C2dPump {
    return (this.#c2d ??= new C2dPump(this));
  }

  get acks(): AckQueue {
    return (this.#acks ??= new AckQueue(this));
  }

  // ------------------------------------------------------------------ AckOutput (ack-queue.ts)

  puback(messageId: number): void {
    this.#write(puback(messageId));
  }

  failed(): void {
    this.close('telemetry could not be stored');
  }

  hold(): void {
    this.holdReading('appends');
  }

  release(): void {
    this.releaseReading('appends');
  }

  // ------------------------------------------------------------------ OutputSide, overflow (backpressure.ts)

  pendingBytes(): number {
    return this.stream.writableLength;
  }

  onceDrained(fn: () => void): void {
    this.stream.once('drain', fn);
  }

  overflow(reason: string): void {
    this.close(reason, 'warn');
  }

  // ------------------------------------------------------------------ PacketSink (packet-reader.ts)

  onParseError(err: Error): void {
    this.close(`malformed packet: ${err.message}`);
  }

  get deviceId(): string {
    return this.identity?.deviceId ?? '';
  }
  /** The TLS client leaf's serial (lower-case hex), so a revocation can find this session. */
  get certificateSerial(): string | undefined {
    return this.peer.chain?.[0]?.serialNumber.toLowerCase();
  }

  get certificateThumbprints(): string[] | undefined {
    const leaf = this.peer.chain?.[0];
    return leaf === undefined ? undefined : [leaf.fingerprint.replace(/:/g, ''), leaf.fingerprint256.replace(/:/g, '')];
  }

  get remoteAddress(): string {
    return this.peer.remoteAddress;
  }

  get tlsVersion(): string | undefined {
    return this.peer.tlsVersion;
  }

  get authMethod(): string | undefined {
    return this.identity?.method;
  }

  get keyFingerprint(): string | undefined {
    return this.identity?.keyFingerprint;
  }

  get policyName(): string | undefined {
    return this.identity?.policyName;
  }

  get moduleId(): string | null {
    return this.identity?.moduleId ?? null;
  }

  get protocol(): string {
    return this.peer.transport;
  }

  #onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    // Any traffic pushes the keep-alive deadline back (1.5 × the client's keep-alive).
    this.#readAt = performance.now();
    let declared: number;
    try {
      declared = this.#reader.read(chunk);
    } catch (err) {
      this.close(`malformed packet: ${(err as Error).message}`);
      return;
    }
    if (declared > MAX_PACKET_BYTES) return this.close(`packet of ${declared} bytes exceeds ${MAX_PACKET_BYTES}`);
    // Never rejects: a handler's failure closes this connection inside the loop.
    if (!this.#handling && this.#backlog.length > 0) void this.#handleBacklog();
  }

  onPacket(packet: Packet): void {
    if (this.state === 'closed') return;
    if (this.#backlog.push(packet) === MAX_BACKLOG_PACKETS) this.holdReading('backlog');
  }

  /** Packets are handled one at a time, in order; a handler may await the store. */
  async #handleBacklog(): Promise<void> {
    this.#handling = true;
    for (let packet = this.#backlog.shift(); packet !== undefined && this.state !== 'closed'; packet = this.#backlog.shift()) {
      if (this.#backlog.length <= MAX_BACKLOG_PACKETS / 2) this.releaseReading('backlog');
      // An answer that did not drain: nothing more is handled (or read) until it has.
      if (this.#output.blocked) await this.#output.drained();
      try {
        await this.#dispatch(packet);
      } catch (err) {
        this.deps.logger.error({ err, clientId: this.clientId, cmd: packet.cmd }, 'MQTT handler failed');
        this.close(`handler error on ${packet.cmd}`);
      }
    }
    this.#handling = false;
  }

  async #dispatch(packet: Packet): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state === 'awaiting-connect') {
      // [MQTT-3.1.0-1] the first packet must be CONNECT.
      if (packet.cmd !== 'connect') return this.close(`${packet.cmd} before CONNECT`);
      clearTimeout(this.#connectTimer);
      this.#connectTimer = undefined;
      this.state = 'authenticating';
      return handleConnect(this, packet);
    }
    switch (packet.cmd) {
      case 'connect':
        return this.close('second CONNECT [MQTT-3.1.0-2]');
      case 'subscribe':
        // [MQTT-3.8.3-3] at least one topic filter; mqtt-packet parses an empty list.
        if (packet.subscriptions.length === 0) return this.close('SUBSCRIBE without topic filters [MQTT-3.8.3-3]');
        return this.kind === 'dps' ? handleDpsSubscribe(this, packet) : handleSubscribe(this, packet);
      case 'unsubscribe':
        if (packet.unsubscriptions.length === 0) return this.close('UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]');
        return handleUnsubscribe(this, packet);
      case 'publish':
        return this.kind === 'dps' ? handleDpsPublish(this, packet) : handlePublish(this, packet);
      case 'puback':
        return handlePuback(this, packet);
      case 'pingreq':
        this.send({ cmd: 'pingresp' });
        return;
      case 'disconnect':
        return this.close('client DISCONNECT', 'debug');
      default:
        return this.close(`unexpected ${packet.cmd}`);
    }
  }

  send(packet: Packet): void {
    this.#write(mqttPacket.generate(packet));
  }

  /** Writes coalesce until the end of this event-loop turn: one TLS record and one syscall for a batch of PUBACKs. */
  #write(bytes: Buffer): void {
    if (this.state === 'closed' || this.stream.destroyed) return;
    coalesce(this.stream);
    this.stream.write(bytes);
    this.#output.check();
  }

  /** Stops reading from the client for `why` until `releaseReading(why)`. */
  holdReading(why: ReadHold): void {
    this.#gate.hold(why);
  }

  releaseReading(why: ReadHold): void {
    this.#gate.release(why);
  }

  /** Called once CONNACK 0 went out. */
  startDeadlines(keepAliveSeconds: number): void {
    const ka = keepAliveSeconds === 0 ? MAX_KEEPALIVE_SECONDS : Math.min(keepAliveSeconds, MAX_KEEPALIVE_SECONDS);
    this.#keepAliveMs = ka * 1500;
    this.#expiresAt = this.identity?.expiresAt;
    this.#readAt = performance.now();
    if (this.state !== 'closed') watchDeadlines(this);
  }

  /** Device traffic refreshes lastActivityTime, written at most once a minute. */
  activity(): void {
    const now = this.deps.clock.now();
    if (now - this.#lastActivityWrite < 60_000) return;
    this.#lastActivityWrite = now;
    this.deps.onActivity(this);
  }

  subscribed(filter: string): boolean {
    return this.subscriptions.has(filter);
  }

  // ------------------------------------------------------------------ LiveSession

  pushDesired(patch: JsonObject): boolean {
    if (!this.subscribed(TWIN_DESIRED_FILTER)) return false;
    const version = typeof patch.$version === 'number' ? patch.$version : 0;
    this.send({
      cmd: 'publish',
      topic: `$iothub/twin/PATCH/properties/desired/?$version=${version}`,
      payload: jsonPayload(patch),
      qos: 0,
      retain: false,
      dup: false,
    });
    return true;
  }

  sendMethodRequest(name: string, payload: JsonValue, requestId: string): boolean {
    if (this.state !== 'connected' || !this.subscribed(METHODS_FILTER)) return false;
    this.send({
      cmd: 'publish',
      topic: `$iothub/methods/POST/${name}/?$rid=${encodeURIComponent(requestId)}`,
      payload: jsonPayload(payload),
      qos: 0,
      retain: false,
      dup: false,
    });
    return true;
  }

  notifyC2d(): void {
    this.c2d.kick();
  }

  acceptsMethods(): boolean {
    return this.state === 'connected' && this.subscribed(METHODS_FILTER);
  }

  close(reason: string, level: 'debug' | 'info' | 'warn' = 'info'): void {
    if (this.state === 'closed') return;
    const wasConnected = this.state === 'connected';
    this.state = 'closed';
    this.onClosed?.(this);
    clearTimeout(this.#connectTimer);
    unwatchDeadlines(this);
    // What it read and did not handle goes with it.
    this.#backlog.length = 0;
    this.#reader.dispose();
    this.#output.close();
    this.#c2d?.stop();
    if (this.identity !== undefined && wasConnected) {
      const stillOurs = this.deps.connections.unregister(this);
      this.deps.onDisconnected(this, stillOurs);
    }
    this.deps.logger[level]({ event: 'mqtt.closed', clientId: this.clientId, remote: this.peer.remoteAddress, reason }, 'MQTT connection closed');
    this.stream.end();
    this.stream.destroy();
  }
}
