/**
 * One write per rhea pass. rhea (3.x, lib/connection.js `_write_frame`) writes each frame it owes as
 * it makes it: a frame object queued, then `output()`, which clears and re-arms the heartbeat timer,
 * serializes the frame into a zero-filled 1 KiB buffer of its own (grown by copying for a larger
 * transfer) and writes it to the socket. For an Event Hubs reader that is all of that per message.
 *
 * Here a connection's frames are serialized as they are encoded, one after another into one buffer,
 * and during a pass (`Connection._process`, which writes what every session and link owes) `output()`
 * runs once, at the pass's end: one socket write and one timer re-armed for the pass. Serializing at
 * encode is what makes deferring the write safe: rhea changes some performatives right after queueing
 * them (`_write_close` clears the close's error), and a frame serialized later would lose that.
 * Outside a pass (a heartbeat, what rhea answers while it reads) a frame is written at once, as rhea does.
 *
 * rhea's own logging of frames (DEBUG=rhea:frames, rhea:raw) is kept; a frame is logged when encoded.
 */
import { createRequire } from 'node:module';
import type { Connection } from 'rhea';

const require = createRequire(import.meta.url);

/** rhea's frame as `frames.amqp_frame` makes it. */
interface RheaFrame {
  channel: number;
  type: number;
  performative?: { constructor?: unknown } | null;
  payload?: Buffer;
}

/** The part of rhea's types.Writer used here: it encodes AMQP values at `position`, growing `buffer`. */
interface RheaWriter {
  buffer: Buffer;
  position: number;
  skip(bytes: number): void;
  write_uint(value: number, width: number): void;
  write(value: unknown): void;
  write_bytes(source: Buffer): void;
}

interface RheaTransport {
  identifier: string;
  pending: unknown[];
  header_sent?: unknown;
  encode(frame: RheaFrame): void;
  write(socket: { write(buffer: Buffer): unknown }): void;
}

interface RheaConnectionInternals {
  amqp_transport: RheaTransport;
  _write_frame(channel?: number, frame?: unknown, payload?: Buffer): void;
  output(): void;
}

interface Debugger {
  (format: string, ...args: unknown[]): void;
  enabled: boolean;
}

const types = require('rhea/lib/types.js') as { Writer: new (buffer: Buffer) => RheaWriter };
const frames = require('rhea/lib/frames.js') as {
  TYPE_AMQP: number;
  write_header(buffer: Buffer, header: { protocol_id: number; major: number; minor: number; revision: number }): number;
  amqp_frame(channel: number | undefined, performative: unknown, payload: Buffer | undefined): RheaFrame;
};
const log = require('rhea/lib/log.js') as { frames: Debugger; raw: Debugger };

/**
 * A pass's buffer starts at the size the last pass took, so it rarely grows by copying, within
 * these bounds: small ones come from Node's shared pool, and as a write holds its whole buffer
 * until the client took it, none starts larger than an Event Hubs reader's flush (256 KiB).
 */
const MIN_BUFFER = 1024;
const MAX_INITIAL_BUFFER = 256 * 1024;

/** Frames of one connection, serialized back to back until the next write. */
class FrameBuffer {
  #writer: RheaWriter | undefined;
  #lastSize = MIN_BUFFER;

  /** As rhea's frames.write_frame, into the shared buffer: size, doff 2, type, channel, performative, payload. */
  add(frame: RheaFrame): void {
    if (frame.type !== frames.TYPE_AMQP) throw new Error(`not an AMQP frame (type ${frame.type})`);
    this.#writer ??= new types.Writer(Buffer.allocUnsafe(Math.min(Math.max(this.#lastSize, MIN_BUFFER), MAX_INITIAL_BUFFER)));
    const w = this.#writer;
    const start = w.position;
    w.skip(4);
    w.write_uint(2, 1);
    w.write_uint(frame.type, 1);
    w.write_uint(frame.channel, 2);
    if (frame.performative) {
      w.write(frame.performative);
      if (frame.payload) w.write_bytes(frame.payload);
    }
    w.buffer.writeUInt32BE(w.position - start, start);
  }

  /** What was added since the last take (undefined: nothing); the next frame starts a new buffer. */
  take(): Buffer | undefined {
    const w = this.#writer;
    if (w === undefined || w.position === 0) return undefined;
    this.#writer = undefined;
    this.#lastSize = w.position;
    return w.buffer.subarray(0, w.position);
  }
}

/** A connection's passes, each ended by one `output()` when it wrote frames. */
export interface PassOutput {
  /** Runs rhea's pass; frames it writes leave together when it returns (or throws). */
  pass(process: () => void): void;
}

/** Installs the one-write-per-pass output on a connection rhea has not written to yet. */
export function passOutput(conn: Connection): PassOutput {
  const raw = conn as unknown as RheaConnectionInternals;
  const transport = raw.amqp_transport;
  const buffered = new FrameBuffer();
  let inPass = false;
  let owed = false;

  transport.encode = (frame: RheaFrame) => {
    buffered.add(frame);
    // rhea reads `pending` for whether a write is owed (has_writes_pending); the frames themselves are in the buffer.
    transport.pending.push(frame);
    if (log.frames.enabled) {
      if (frame.performative) log.frames('[%s]:%s -> %s %j', transport.identifier, frame.channel, frame.performative.constructor, frame.performative, frame.payload ?? '');
      else log.frames('[%s]:%s -> empty', transport.identifier, frame.channel);
    }
  };
  transport.write = (socket) => {
    if (!transport.header_sent) {
      // AMQP's protocol header (AMQP 1.0, 2.2), as rhea writes it.
      const header = { protocol_id: 0, major: 1, minor: 0, revision: 0 };
      const bytes = Buffer.alloc(8);
      frames.write_header(bytes, header);
      log.frames('[%s] -> %o', transport.identifier, header);
      socket.write(bytes);
      transport.header_sent = header;
    }
    const bytes = buffered.take();
    transport.pending = [];
    if (bytes === undefined) return;
    socket.write(bytes);
    if (log.raw.enabled) log.raw('[%s] SENT: %d %h', transport.identifier, bytes.length, bytes);
  };
  raw._write_frame = (channel, frame, payload) => {
    raw.amqp_transport.encode(frames.amqp_frame(channel, frame, payload));
    if (inPass) owed = true;
    else raw.output();
  };
  return {
    pass(process) {
      inPass = true;
      try {
        process();
      } finally {
        inPass = false;
        if (owed) {
          owed = false;
          raw.output();
        }
      }
    },
  };
}
