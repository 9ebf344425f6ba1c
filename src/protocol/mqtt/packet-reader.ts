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

/** The sink of the read being parsed: parsing is synchronous and never reentrant. */
let reading: PacketSink | undefined;

function newParser(): ParserState {
  const p = mqttPacket.parser({ protocolVersion: 4 });
  p.on('packet', (packet: Packet) => reading?.onPacket(packet));
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
