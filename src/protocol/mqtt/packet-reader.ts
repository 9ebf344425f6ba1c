/**
 * MQTT packets out of a connection's reads, with an mqtt-packet parser of its own made at the
 * first read. Sharing one parser between idle connections (to save ~1.5 KB of heap each) let fuzz
 * input leave state that refused a later connection's valid CONNECT, so each connection has its own,
 * and gives it back once idle: a sweep every PARSER_IDLE_MS drops the parser of every reader that
 * read nothing since the previous sweep and holds no part of a packet. Most devices are idle
 * between keep-alives, so most connections hold no parser; a busy one keeps its own between reads.
 *
 * After every read the parser's settings go back to MQTT 3.1.1: mqtt-packet replaces them with the
 * last CONNECT, which would otherwise keep the device's SAS token in memory for the connection's
 * life; the hub refuses any CONNECT that is not 3.1.1 [MQTT-3.1.2-2].
 *
 * Whole PUBLISH packets at the start of a read, with no packet part-read before it, are read here
 * without the parser (readPublishes): nearly every packet a hub reads is one, and mqtt-packet spends
 * ~7 µs and ~2.5 KB of garbage on each (its buffer list copies the payload, a dozen debug() calls
 * build their argument arrays; docs/benchmarks.md). Anything else, from the first byte that is not
 * a plain, complete, well-formed PUBLISH, goes to the parser as before, so a malformed or partial
 * packet gets exactly the parser's answer. The packets are the parser's, field for field (the
 * payload a view of the read, as the parser's is when a packet sits in one read).
 */
import mqttPacket, { type Packet } from 'mqtt-packet';
import { Sweep } from '../transport/sweep.js';

/** Who gets the packets and the parse errors of a read. */
export interface PacketSink {
  onPacket(packet: Packet): void;
  onParseError(err: Error): void;
}

/** The parser internals this relies on (mqtt-packet 9 parser.js). */
interface ParserState {
  parse(buf: Buffer): number;
  settings: object;
  error: Error | null;
  packet: { length: number };
  _list: { length: number };
  _stateCounter: number;
  _resetState(): void;
}

const SETTINGS = Object.freeze({ protocolVersion: 4 });

/**
 * A QoS 1 or 2 PUBLISH whose remaining length leaves no room for its packet identifier is malformed.
 * mqtt-packet reads the identifier from whatever bytes follow (the next packet's) and hands the
 * PUBLISH on; the hub refuses it instead (readPublishes leaves such a packet to the parser).
 */
const SHORT_PUBLISH = 'PUBLISH too short for its packet identifier';

/**
 * From a parsed PUBLISH: its topic's bytes and a packet identifier do not fit in its remaining
 * length. A topic with U+FFFD may have been ill-formed UTF-8 (fewer bytes on the wire than now):
 * not judged here.
 */
function tooShort(topic: string, length: number): boolean {
  return 2 + Buffer.byteLength(topic) + 2 > length && !topic.includes('\ufffd');
}

/** The sink of the read being parsed: parsing is synchronous and never reentrant. */
let reading: PacketSink | undefined;

function newParser(): ParserState {
  const p = mqttPacket.parser({ protocolVersion: 4 });
  p.on('packet', (packet: Packet) => {
    if (reading === undefined) return;
    if (packet.cmd === 'publish' && packet.qos > 0 && tooShort(packet.topic, packet.length ?? 0)) reading.onParseError(new Error(SHORT_PUBLISH));
    else reading.onPacket(packet);
  });
  p.on('error', (err: Error) => reading?.onParseError(err));
  return p as unknown as ParserState;
}

/** How often idle readers give their parser back; a reader idle one to two of these loses it. */
export const PARSER_IDLE_MS = 5000;

/** Counts the sweeps; a reader notes the count at each read. */
let sweeps = 0;
/** Readers that hold a parser, swept while any does. */
const holding = new Sweep<PacketReader>(
  PARSER_IDLE_MS,
  (readers) => {
    sweeps++;
    for (const r of readers) r.dropIfIdle(sweeps);
  },
  false,
);

/**
 * Drops the parser of each reader that read nothing since the previous sweep and holds no part of
 * a packet (exported for tests; the hub runs it on a timer while any reader holds a parser).
 */
export function sweepIdleParsers(): void {
  holding.run();
}

export class PacketReader {
  /** A parser of its own while the connection reads (see above). */
  #own: ParserState | undefined;
  /** The sweep count at this reader's last read. */
  #readAt = 0;

  constructor(private readonly sink: PacketSink) {}

  /** Whether this reader holds a parser now (tests, memory). */
  get holdsParser(): boolean {
    return this.#own !== undefined;
  }

  /**
   * Parses one read; packets and errors go to the sink. Returns the declared length of a packet
   * still incomplete (its fixed header read), or -1.
   */
  read(chunk: Buffer): number {
    this.#readAt = sweeps;
    let parser = this.#own;
    if (parser === undefined || (parser._stateCounter === 0 && parser._list.length === 0)) {
      const at = readPublishes(chunk, this.sink);
      if (at === chunk.length) return -1;
      if (at > 0) chunk = chunk.subarray(at);
    }
    if (parser === undefined) {
      parser = this.#own = newParser();
      holding.add(this);
    }
    const outer = reading;
    reading = this.sink;
    try {
      parser.parse(chunk);
    } catch (err) {
      parser._resetState();
      throw err;
    } finally {
      reading = outer;
      parser.settings = SETTINGS;
    }
    if (parser.error !== null) {
      parser._resetState();
      return -1;
    }
    if (parser._stateCounter !== 0 || parser._list.length > 0) {
      return parser.packet.length;
    }
    return -1;
  }

  /** Called by the sweep: gives the parser back if nothing was read since sweep `now - 1` and no packet is part read. */
  dropIfIdle(now: number): void {
    const p = this.#own;
    if (p === undefined) {
      holding.delete(this);
      return;
    }
    if (this.#readAt >= now - 1 || p._stateCounter !== 0 || p._list.length > 0) return;
    this.#own = undefined;
    holding.delete(this);
  }

  /** The connection closed: its parser goes now, not at the next sweeps. */
  dispose(): void {
    this.#own = undefined;
    holding.delete(this);
  }
}

/**
 * Reads the whole, well-formed MQTT 3.1.1 PUBLISH packets at the start of `chunk` and hands them to
 * the sink; returns where it stopped: at the end, or at the first byte of something else (another
 * packet type, a PUBLISH that is partial or that the parser would refuse), left to the parser.
 */
function readPublishes(chunk: Buffer, sink: PacketSink): number {
  let at = 0;
  const end = chunk.length;
  while (at < end) {
    const first = chunk[at] as number;
    const qos = (first >> 1) & 3;
    // Type 3 (PUBLISH); QoS 3 is malformed [MQTT-3.3.1-4]: the parser says so.
    if (first >> 4 !== 3 || qos === 3) break;
    // Remaining length: 1 to 3 bytes here (under 2 MiB); a fourth byte, or one cut short, the parser.
    let i = at + 1;
    let length = 0;
    let shift = 0;
    let byte = 0x80;
    while ((byte & 0x80) !== 0 && i < end && shift < 21) {
      byte = chunk[i++] as number;
      length += (byte & 0x7f) << shift;
      shift += 7;
    }
    if ((byte & 0x80) !== 0) break;
    const body = i;
    const stop = body + length;
    if (stop > end) break;
    // Topic: a two-byte length and that many bytes, inside the packet.
    if (length < 2) break;
    const topicEnd = body + 2 + ((chunk[body] as number) << 8) + (chunk[body + 1] as number);
    if (topicEnd > stop) break;
    let payloadAt = topicEnd;
    let messageId = 0;
    if (qos > 0) {
      // No room for the packet identifier: the parser's path refuses it (tooShort), one rule in one place.
      if (topicEnd + 2 > stop) break;
      messageId = ((chunk[topicEnd] as number) << 8) + (chunk[topicEnd + 1] as number);
      payloadAt += 2;
    }
    const packet = {
      cmd: 'publish',
      retain: (first & 1) !== 0,
      qos,
      dup: (first & 8) !== 0,
      length,
      topic: chunk.toString('utf8', body + 2, topicEnd),
      payload: chunk.subarray(payloadAt, stop),
    } as Packet & { messageId?: number };
    if (qos > 0) packet.messageId = messageId;
    at = stop;
    sink.onPacket(packet);
  }
  return at;
}
