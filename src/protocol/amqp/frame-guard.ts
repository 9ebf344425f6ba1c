/**
 * A guard in front of rhea's reader. rhea accumulates a frame of whatever size the peer declares
 * before it looks at it, and a message of any number of `more` transfer frames, so the guard
 * follows the protocol state of the bytes the client sends and refuses, before rhea buffers
 * anything, what is not AMQP 1.0 or goes past a bound:
 *
 *   protocol header  ── "AMQP" 3 1 0 0 ──▶  SASL frames ── (the hub sent its outcome) ──▶ protocol header "AMQP" 0 1 0 0
 *        │                                                                                     │
 *        └──────────── "AMQP" 0 1 0 0 ──────────────────────────────▶ AMQP frames ◀─────────────┘
 *
 * One header per layer (AMQP 1.0 §2.2, §5.3.2): a header anywhere else is a frame whose size
 * reads as 0x414D5150, and that is what rhea buffered. The SASL layer ends when the hub has
 * sent its sasl-outcome, which only rhea knows: the caller passes `saslOutcomeSent`. A client
 * that pipelines the AMQP header before the outcome is refused, since rhea's SASL layer would
 * read the header as a frame size.
 *
 * Bounds: SASL frames and the first AMQP frame (the open) at most MIN-MAX-FRAME-SIZE (§5.3.1,
 * §2.4.1); before the connection is authenticated a smaller frame limit, and a budget of bytes and
 * frames that bounds everything rhea builds from them (sessions, links, a message in pieces);
 * after it, frames up to the hub's max-frame-size.
 */

/** MIN-MAX-FRAME-SIZE (AMQP 1.0 part 2 constants, §2.7.1 open): the largest frame before the open is negotiated (§2.4.1), and any SASL frame (§5.3.1). */
export const MIN_MAX_FRAME_SIZE = 512;

export interface FrameGuardLimits {
  /** Largest frame once the connection is authenticated (the max-frame-size the hub's open offers). */
  maxFrameSize: number;
  /** Largest frame after the open, before the connection is authenticated. */
  preAuthMaxFrameSize: number;
  /** Bytes (headers included) a connection may send before it is authenticated. */
  preAuthMaxBytes: number;
  /** Frames (SASL and AMQP) a connection may send before it is authenticated. */
  preAuthMaxFrames: number;
}

/** Why the guard refused the stream: a protocol violation, or a pre-authentication bound. */
export interface GuardRefusal {
  kind: 'protocol' | 'pre-auth-limit';
  reason: string;
}

type Layer = 'sasl' | 'amqp';

type GuardState =
  /** Expecting a protocol header: the first one (SASL or AMQP), or AMQP's after the SASL outcome. */
  | { kind: 'header'; allowSasl: boolean }
  /** At a frame boundary. */
  | { kind: 'frames'; layer: Layer }
  /** Inside a frame's body. */
  | { kind: 'body'; layer: Layer; remaining: number }
  | { kind: 'refused'; refusal: GuardRefusal };

const AMQP = Buffer.from('AMQP');
const HEADER_AS_SIZE = AMQP.readUInt32BE(0);
const FRAME_TYPE: Record<Layer, number> = { amqp: 0x00, sasl: 0x01 };

export class FrameGuard {
  #state: GuardState = { kind: 'header', allowSasl: true };
  /** A header or frame header split across chunks (at most 7 bytes). */
  #partial: Buffer = Buffer.alloc(0);
  /** What the connection has spent of its pre-authentication budget; nothing is counted after. */
  #budget: { kind: 'pre-auth'; bytes: number; frames: number } | { kind: 'authenticated' } = { kind: 'pre-auth', bytes: 0, frames: 0 };
  #amqpFrames = 0;

  constructor(
    private readonly limits: FrameGuardLimits,
    /** Whether the hub has sent an OK sasl-outcome: the AMQP header may follow. */
    private readonly saslOutcomeSent: () => boolean = () => false,
  ) {}

  /** The connection proved a credential: lift the pre-authentication bounds. */
  authenticated(): void {
    this.#budget = { kind: 'authenticated' };
  }

  /** Returns why the stream must be closed, or undefined while it is well-formed and within bounds. */
  feed(chunk: Buffer): GuardRefusal | undefined {
    if (this.#state.kind === 'refused') return this.#state.refusal;
    let buf = chunk;
    if (this.#partial.length > 0) {
      buf = Buffer.concat([this.#partial, chunk]);
      this.#partial = Buffer.alloc(0);
    }
    return this.#walk(buf);
  }

  /**
   * Follows the protocol state over `buf`, keeping an incomplete header for the next chunk. Bytes
   * count against the budget where they are consumed, so the verdict does not depend on how the
   * stream was cut into chunks.
   */
  #walk(buf: Buffer): GuardRefusal | undefined {
    let offset = 0;
    while (offset < buf.length) {
      const state = this.#state;
      switch (state.kind) {
        case 'refused':
          return state.refusal;
        case 'body': {
          const n = Math.min(state.remaining, buf.length - offset);
          const over = this.#consume(n);
          if (over !== undefined) return over;
          offset += n;
          this.#state = state.remaining === n ? { kind: 'frames', layer: state.layer } : { ...state, remaining: state.remaining - n };
          break;
        }
        case 'header': {
          const rest = buf.subarray(offset);
          const why = headerRefusal(rest, state.allowSasl);
          if (why !== undefined) return this.#refuse('protocol', why);
          if (rest.length < 8) {
            this.#partial = Buffer.from(rest);
            return undefined;
          }
          const over = this.#consume(8);
          if (over !== undefined) return over;
          // §2.2: "AMQP", protocol id, major 1, minor 0, revision 0; id 3 opens the SASL layer (§5.3.2).
          this.#state = { kind: 'frames', layer: rest[4] === 3 ? 'sasl' : 'amqp' };
          offset += 8;
          break;
        }
        case 'frames': {
          // The SASL layer is over once the hub has sent its outcome: next comes the AMQP header (§5.3.2).
          if (state.layer === 'sasl' && this.saslOutcomeSent()) {
            this.#state = { kind: 'header', allowSasl: false };
            break;
          }
          const rest = buf.subarray(offset);
          if (rest.length < 8) {
            // A frame's size is its first 4 bytes: judge it as soon as they are here.
            const early = rest.length >= 4 ? this.#sizeRefusal(state.layer, rest.readUInt32BE(0)) : undefined;
            if (early !== undefined) return this.#refuse(early.kind, early.reason);
            this.#partial = Buffer.from(rest);
            return undefined;
          }
          const refusal = this.#frameRefusal(state.layer, rest);
          if (refusal !== undefined) return this.#refuse(refusal.kind, refusal.reason);
          const over = this.#consume(8);
          if (over !== undefined) return over;
          this.#state = { kind: 'body', layer: state.layer, remaining: rest.readUInt32BE(0) - 8 };
          offset += 8;
          if (this.#state.remaining === 0) this.#state = { kind: 'frames', layer: state.layer };
          break;
        }
      }
    }
    return undefined;
  }

  /** Counts `n` bytes consumed before authentication against the budget. */
  #consume(n: number): GuardRefusal | undefined {
    if (this.#budget.kind === 'authenticated') return undefined;
    this.#budget.bytes += n;
    return this.#budget.bytes > this.limits.preAuthMaxBytes ? this.#refuse('pre-auth-limit', `more than ${this.limits.preAuthMaxBytes} bytes before authentication`) : undefined;
  }

  #refuse(kind: GuardRefusal['kind'], reason: string): GuardRefusal {
    const refusal = { kind, reason };
    this.#state = { kind: 'refused', refusal };
    return refusal;
  }

  /** The frame header (8 bytes, §2.3.1): size, DOFF, type, channel. */
  #frameRefusal(layer: Layer, head: Buffer): GuardRefusal | undefined {
    const size = head.readUInt32BE(0);
    const sized = this.#sizeRefusal(layer, size);
    if (sized !== undefined) return sized;
    const doff = head[4] ?? 0;
    // §2.3.1: DOFF is at least 2 (the 8-byte header), and the body starts inside the frame.
    if (doff < 2 || doff * 4 > size) return { kind: 'protocol', reason: `a frame with data offset ${doff} in ${size} bytes` };
    const type = head[5];
    if (type !== FRAME_TYPE[layer]) return { kind: 'protocol', reason: `a frame of type ${type} in the ${layer === 'sasl' ? 'SASL' : 'AMQP'} layer` };
    if (layer === 'amqp') this.#amqpFrames += 1;
    if (this.#budget.kind === 'pre-auth') {
      this.#budget.frames += 1;
      if (this.#budget.frames > this.limits.preAuthMaxFrames) return { kind: 'pre-auth-limit', reason: `more than ${this.limits.preAuthMaxFrames} frames before authentication` };
    }
    return undefined;
  }

  #sizeRefusal(layer: Layer, size: number): GuardRefusal | undefined {
    if (size < 8) return { kind: 'protocol', reason: `a frame of ${size} bytes is smaller than its header` };
    // "AMQP" read as a frame size: a protocol header where a frame belongs.
    if (size === HEADER_AS_SIZE) return { kind: 'protocol', reason: layer === 'sasl' ? 'the AMQP header before the SASL outcome' : 'a protocol header after the AMQP header' };
    const max = this.#maxFrame(layer);
    if (size <= max.bytes) return undefined;
    return { kind: max.kind, reason: `a ${layer === 'sasl' ? 'SASL ' : ''}frame of ${size} bytes exceeds the maximum of ${max.bytes}${max.why}` };
  }

  #maxFrame(layer: Layer): { bytes: number; kind: GuardRefusal['kind']; why: string } {
    // §5.3.1: SASL frames; §2.4.1: until the open is negotiated (the first AMQP frame is the open).
    if (layer === 'sasl') return { bytes: MIN_MAX_FRAME_SIZE, kind: 'protocol', why: ' for SASL frames' };
    if (this.#amqpFrames === 0) return { bytes: MIN_MAX_FRAME_SIZE, kind: 'protocol', why: ' before the open' };
    if (this.#budget.kind === 'pre-auth') return { bytes: this.limits.preAuthMaxFrameSize, kind: 'pre-auth-limit', why: ' before authentication' };
    return { bytes: this.limits.maxFrameSize, kind: 'protocol', why: '' };
  }
}

/** Why the start of `bytes` cannot be the protocol header expected, judged on as many bytes as have arrived. */
function headerRefusal(bytes: Buffer, allowSasl: boolean): string | undefined {
  const n = Math.min(bytes.length, 8);
  for (let i = 0; i < Math.min(n, 4); i++) if (bytes[i] !== AMQP[i]) return 'not an AMQP protocol header';
  if (n < 5) return undefined;
  const id = bytes[4];
  if (id === 2) return 'a TLS protocol header on a connection that is already TLS';
  if (id === 3 && !allowSasl) return 'a second SASL header';
  if (id !== 0 && id !== 3) return `protocol id ${String(id)} is not AMQP or SASL`;
  const version = [bytes[5], bytes[6], bytes[7]].slice(0, n - 5);
  if (version.some((v, i) => v !== [1, 0, 0][i])) return 'not AMQP version 1.0.0';
  return undefined;
}
