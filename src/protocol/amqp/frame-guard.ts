/**
 * A guard in front of rhea's reader: rhea accumulates a frame of whatever size the peer declares
 * before it looks at it, so a peer that declares a 2 GiB frame could make the hub buffer 2 GiB.
 * The guard follows the framing on the raw byte stream (protocol headers, then 4-byte frame sizes)
 * and reports the first violation: a header that is not AMQP 1.0 (plain, TLS or SASL), or a frame
 * smaller than its own 8-byte header or larger than the hub's maximum. The caller closes the
 * connection at once.
 */

const HEADER = Buffer.from('AMQP');

export class FrameGuard {
  /** Bytes still to skip of the frame being read. */
  #skip = 0;
  /** A header or frame-size prefix split across chunks. */
  #partial = Buffer.alloc(0);
  #expectHeader = true;

  constructor(private readonly maxFrameSize: number) {}

  /** Returns why the stream is invalid, or undefined while it is well-formed so far. */
  feed(chunk: Buffer): string | undefined {
    const buf = this.#partial.length > 0 ? Buffer.concat([this.#partial, chunk]) : chunk;
    this.#partial = Buffer.alloc(0);
    let offset = 0;
    for (;;) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, buf.length - offset);
        this.#skip -= n;
        offset += n;
        if (this.#skip > 0) return undefined;
      }
      if (offset >= buf.length) return undefined;
      // A protocol header: at the start, and again after the SASL layer (it starts with "AMQP").
      const rest = buf.subarray(offset);
      const startsLikeHeader = rest.subarray(0, Math.min(4, rest.length)).equals(HEADER.subarray(0, Math.min(4, rest.length)));
      if (this.#expectHeader || startsLikeHeader) {
        if (rest.length < 8) {
          if (!startsLikeHeader) return this.#expectHeader ? 'not an AMQP protocol header' : undefined;
          this.#partial = Buffer.from(rest);
          return undefined;
        }
        if (rest.subarray(0, 4).equals(HEADER)) {
          const id = rest[4];
          if (!(id === 0 || id === 2 || id === 3) || rest[5] !== 1 || rest[6] !== 0 || rest[7] !== 0) return 'not an AMQP 1.0 protocol header';
          this.#expectHeader = false;
          offset += 8;
          continue;
        }
        if (this.#expectHeader) return 'not an AMQP protocol header';
      }
      if (rest.length < 4) {
        this.#partial = Buffer.from(rest);
        return undefined;
      }
      const size = rest.readUInt32BE(0);
      if (size < 8) return `a frame of ${size} bytes is smaller than its header`;
      if (size > this.maxFrameSize) return `a frame of ${size} bytes exceeds the maximum of ${this.maxFrameSize}`;
      this.#skip = size;
    }
  }
}
