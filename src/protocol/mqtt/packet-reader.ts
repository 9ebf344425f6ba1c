/**
 * MQTT packets out of a connection's reads without an mqtt-packet parser per connection (issue 19,
 * memory). A parser is a BufferList stream with its own readable and writable state, a Packet, and
 * it keeps the CONNECT packet (the SAS token with it) as its `settings` for the connection's life:
 * about 1.5 KB of heap per idle device. Between packets a parser holds nothing, so every connection
 * shares one; only a connection whose read ended inside a packet keeps a parser of its own, until
 * that packet is complete.
 *
 * After every read the parser's settings go back to MQTT 3.1.1: mqtt-packet replaces them with the
 * last CONNECT (so a v5 CONNECT would switch the parser to v5), which must not leak to the next
 * connection; the hub refuses any CONNECT that is not 3.1.1 [MQTT-3.1.2-2].
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

let shared: ParserState | undefined;

export class PacketReader {
  /** A parser of its own while a packet is split across reads. */
  #own: ParserState | undefined;

  constructor(private readonly sink: PacketSink) {}

  /**
   * Parses one read; packets and errors go to the sink. Returns the declared length of a packet
   * still incomplete (its fixed header read), or -1.
   */
  read(chunk: Buffer): number {
    const parser = this.#own ?? (shared ??= newParser());
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
      if (this.#own === undefined) {
        this.#own = parser;
        shared = undefined;
      }
      return parser.packet.length;
    }
    this.#release(parser);
    return -1;
  }

  /** The parser holds nothing: it is shared again (or dropped, when another is shared meanwhile). */
  #release(parser: ParserState): void {
    if (this.#own !== parser) return;
    this.#own = undefined;
    shared ??= parser;
  }
}
