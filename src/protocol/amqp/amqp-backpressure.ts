/**
 * Backpressure for an AMQP connection under rhea (see ../backpressure.ts). rhea writes each frame
 * straight to its socket (`transport.js`: `socket.write(buffer)`, over WebSocket `ws.send`) and
 * reads every 'data' event; nothing in it notices either side being slow. Link credit does not
 * help against a hostile client: rhea logs a transfer that came without credit and processes it.
 * So the bound sits on the socket itself:
 *
 * - after every write rhea makes, the unsent output is checked: over the mark the socket is not
 *   read until it drains, over the cap the connection is closed; a pass of rhea's that writes
 *   corked (amqp-admission.ts) is flushed first once past the mark;
 * - operations taken in and not finished (twin requests, telemetry appends, CBS put-tokens) stop
 *   the reading above a bound;
 * - a device session answers its twin requests one at a time, each after the output drained
 *   (device-session.ts), so what a client that does not read gets answered is one answer past
 *   the mark, not every request it sent.
 */
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { DEFAULT_OUTPUT_LIMITS, OutputBound, ReadGate, type OutputLimits } from '../transport/backpressure.js';
import type { AmqpPeer } from './amqp-admission.js';

/** Operations in flight on one connection above which it stops reading until half of them are done. */
export const MAX_AMQP_WORK_IN_FLIGHT = 64;

/** What sessions see of their connection's backpressure. */
export interface ConnectionPressure {
  /** An operation taken in (call `end` once it is finished). */
  begin(): void;
  end(): void;
  /** Resolves once the connection's output is under the mark (at once when it is). */
  drained(): Promise<void>;
  /** Whether the output is over the mark now (then `drained()` waits). */
  readonly blocked: boolean;
}

/** For a connection without a socket of its own to watch (none today; a safe default). */
export const UNWATCHED: ConnectionPressure = { begin: () => undefined, end: () => undefined, drained: () => Promise.resolve(), blocked: false };

export class AmqpBackpressure implements ConnectionPressure {
  readonly #gate: ReadGate;
  readonly output: OutputBound;
  #inFlight = 0;

  constructor(gate: ReadGate, output: OutputBound) {
    this.#gate = gate;
    this.output = output;
  }

  begin(): void {
    if (++this.#inFlight === MAX_AMQP_WORK_IN_FLIGHT) this.#gate.hold('backlog');
  }

  end(): void {
    if (--this.#inFlight <= MAX_AMQP_WORK_IN_FLIGHT / 2) this.#gate.release('backlog');
  }

  drained(): Promise<void> {
    return this.output.drained();
  }

  get blocked(): boolean {
    return this.output.blocked;
  }
}

type Write = (...args: unknown[]) => boolean;

/** Runs `after` after every call of `target[method]` (rhea's writes), on that object only. */
function afterEach(target: object, method: 'write' | 'send', after: () => void): void {
  const holder = target as Record<'write' | 'send', Write>;
  const original = holder[method];
  holder[method] = (...args: unknown[]): boolean => {
    const r = original.apply(target, args);
    after();
    return r;
  };
}

/** AMQPS (or any stream rhea reads and writes): over the cap it is destroyed (rhea learns through 'error'). */
export function streamBackpressure(socket: Duplex, peer: Pick<AmqpPeer, 'transport' | 'remoteAddress'>, logger: Logger, limits: OutputLimits = DEFAULT_OUTPUT_LIMITS): AmqpBackpressure {
  const gate = new ReadGate(socket);
  const output = new OutputBound({ pendingBytes: () => socket.writableLength, onceDrained: (fn) => socket.once('drain', fn) }, gate, limits, (reason) => {
    logger.warn({ event: 'amqp.closed', protocol: peer.transport, remote: peer.remoteAddress, reason }, 'AMQP connection closed');
    socket.destroy(new Error(reason));
  });
  afterEach(socket, 'write', () => {
    // rhea's passes run corked (amqp-admission.ts): past the mark, what the pass wrote so far goes
    // now, so that what counts against the cap is what the client did not take, not the cork.
    if (socket.writableCorked > 0 && socket.writableLength > limits.pauseAboveBytes) {
      const depth = socket.writableCorked;
      for (let i = 0; i < depth; i++) socket.uncork();
      for (let i = 0; i < depth; i++) socket.cork();
    }
    output.check();
  });
  socket.once('close', () => output.close());
  return new AmqpBackpressure(gate, output);
}

/** AMQP over WebSocket: rhea sends with `ws.send`; `bufferedAmount` is what the TLS socket under it holds. */
export function webSocketBackpressure(ws: WebSocket, socket: TLSSocket, logger: Logger, limits: OutputLimits = DEFAULT_OUTPUT_LIMITS): AmqpBackpressure {
  const gate = new ReadGate(ws);
  const output = new OutputBound({ pendingBytes: () => ws.bufferedAmount, onceDrained: (fn) => socket.once('drain', fn) }, gate, limits, (reason) => {
    logger.warn({ event: 'amqp.closed', protocol: 'amqp-ws', remote: socket.remoteAddress, reason }, 'AMQP connection closed');
    ws.terminate();
  });
  afterEach(ws, 'send', () => output.check());
  ws.once('close', () => output.close());
  return new AmqpBackpressure(gate, output);
}
