/**
 * MQTT packets out of a connection's reads, with an mqtt-packet parser of its own made at the
 * first read. Sharing one parser between idle connections (to save ~1.5 KB of heap each) let fuzz
 * input leave state that refused a later connection's valid CONNECT, so each connection has its own.
 *
 * After every read the parser's settings go back to MQTT 3.1.1: mqtt-packet replaces them with the
 * last CONNECT, which would otherwise keep the device's SAS token in memory for the connection's
 * life; the hub refuses any CONNECT that is not 3.1.1 [MQTT-3.1.2-2].
 */
import mqttPacket, { type Packet } from 'mqtt-packet';

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


export class PacketReader {
  /** A parser of its own while a packet is split across reads. */
  #own: ParserState | undefined;

  constructor(private readonly sink: PacketSink) {}

  /**
   * Parses one read; packets and errors go to the sink. Returns the declared length of a packet
   * still incomplete (its fixed header read), or -1.
   */
  read(chunk: Buffer): number {
    // A parser of its own per connection: one shared parser let fuzz input leave state that made a
    // later connection's CONNECT fail (the fuzz harness's good client was refused).
    const parser = (this.#own ??= newParser());
    const outer = reading;
    reading = this.sink;
    try {
      parser.parse(chunk);
    } catch (err) {
      parser._resetState();
      this.#release(parser);
      throw err;
    } finally {
      reading = outer;
      parser.settings = SETTINGS;
    }
    if (parser.error !== null) {
      parser._resetState();
      this.#release(parser);
      return -1;
    }
    if (parser._stateCounter !== 0 || parser._list.length > 0) {
      return parser.packet.length;
    }
    this.#release(parser);
    return -1;
  }

  /** The parser holds nothing: it is shared again (or dropped, when another is shared meanwhile). */
  #release(parser: ParserState): void {
    void parser;
  }
}
