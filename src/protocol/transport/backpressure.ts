/**
 * Backpressure for one connection (MQTT, AMQP, either over TLS or WebSocket): the connection
 * stops reading while its output is not draining or while too much of what it read still waits
 * for its handlers, and it is closed when its unsent output passes a hard cap. Without it a device
 * that sends twin GETs and never reads made the hub buffer every answer: 0.8 MB of requests held
 * 620 MB.
 *
 * The shape is aedes's (`lib/write.js` waits for 'drain' before a packet's handler completes;
 * `lib/client.js` reads the next batch only after that). The cap is for output the client did not
 * ask for (desired-property pushes, method requests, C2D), which pausing its input cannot bound.
 */

/** Why a connection is not reading; any one of them holds it. */
export type ReadHold = 'output' | 'backlog' | 'appends';

const HOLD_BIT: Readonly<Record<ReadHold, number>> = { output: 1, backlog: 2, appends: 4 };

export interface Pausable {
  pause(): void;
  resume(): void;
}

/** Stops and restarts reading from a connection for any number of reasons at once. */
export class ReadGate {
  #holds = 0;

  constructor(private readonly input: Pausable) {}

  holds(why: ReadHold): boolean {
    return (this.#holds & HOLD_BIT[why]) !== 0;
  }

  hold(why: ReadHold): void {
    if (this.#holds === 0) this.input.pause();
    this.#holds |= HOLD_BIT[why];
  }

  release(why: ReadHold): void {
    const bit = HOLD_BIT[why];
    if ((this.#holds & bit) === 0) return;
    this.#holds &= ~bit;
    if (this.#holds === 0) this.input.resume();
  }
}

export interface OutputLimits {
  /** Above this many unsent bytes the connection reads (and handles) nothing until its output drained. */
  pauseAboveBytes: number;
  /** Above this many it is closed: the client is not reading. */
  maxBytes: number;
}

/**
 * A twin answer is up to ~64 KB (32 KB desired + 32 KB reported), a C2D message 64 KB, a method
 * request 128 KB: 64 KB stops reading after the first large answer that does not drain; 4 MiB
 * leaves room for every push a service can queue for a device at once (10 C2D messages in flight,
 * a method call, desired patches) several times over.
 */
export const DEFAULT_OUTPUT_LIMITS: Readonly<OutputLimits> = { pauseAboveBytes: 64 * 1024, maxBytes: 4 * 1024 * 1024 };

export function outputOverflowReason(limits: OutputLimits): string {
  return `output buffer over ${limits.maxBytes} bytes: the client is not reading`;
}

/** What the bound watches: a Writable stream's unsent bytes and its 'drain'. */
export interface OutputSide {
  /** Bytes written and not yet taken by the kernel. */
  pendingBytes(): number;
  /** Calls `fn` once, when everything written so far has been flushed. */
  onceDrained(fn: () => void): void;
}

/** Watches a connection's unsent output after each write: holds reading above the mark, reports the cap. */
export class OutputBound {
  #drained: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #closed = false;

  constructor(
    private readonly output: OutputSide,
    private readonly gate: ReadGate,
    private readonly limits: OutputLimits,
    /** Told once when the unsent output passes the cap (close the connection); an object saves a closure per connection. */
    private readonly overflow: ((reason: string) => void) | { overflow(reason: string): void },
  ) {}

  /** Call after every write; cheap when the output drains. */
  check(): void {
    const pending = this.output.pendingBytes();
    if (pending <= this.limits.pauseAboveBytes || this.#closed) return;
    if (pending > this.limits.maxBytes) {
      this.#closed = true;
      const reason = outputOverflowReason(this.limits);
      if (typeof this.overflow === 'function') this.overflow(reason);
      else this.overflow.overflow(reason);
      return;
    }
    if (this.gate.holds('output')) return;
    this.gate.hold('output');
    this.output.onceDrained(() => {
      this.gate.release('output');
      this.#wakeWaiters();
    });
  }

  /** Whether the output is over the mark (the handlers should wait for `drained()`). */
  get blocked(): boolean {
    return this.gate.holds('output');
  }

  /** Resolves once the output has drained, or the connection is gone. */
  drained(): Promise<void> {
    if (!this.blocked || this.#closed) return Promise.resolve();
    this.#drained ??= new Promise<void>((resolve) => (this.#wake = resolve));
    return this.#drained;
  }

  /** The connection is gone: nothing waits for its output any longer. */
  close(): void {
    this.#closed = true;
    this.#wakeWaiters();
  }

  #wakeWaiters(): void {
    const wake = this.#wake;
    this.#drained = undefined;
    this.#wake = undefined;
    wake?.();
  }
}
