/**
 * A connection's QoS 0 and 1 telemetry waiting for the event log. Appends overlap, so the log
 * commits a connection's messages in batches; acknowledgements leave in the order the PUBLISHes
 * came [MQTT-4.6.0-2]: a settled message waits for every earlier one. One callback per message
 * and a plain array, where a promise chain cost three promises per message.
 *
 * A message that could not be stored gets no PUBACK, and the connection closes: the device
 * resends it after it reconnects. Too many messages waiting holds reading from the socket.
 */

/** A message waiting; `messageId` is undefined at QoS 0 (nothing to acknowledge, order kept). */
export interface AckSlot {
  readonly messageId: number | undefined;
  state: 'waiting' | 'stored' | 'failed';
}

export interface AckOutput {
  puback(messageId: number): void;
  /** A message was not stored: close the connection. */
  failed(): void;
  hold(): void;
  release(): void;
}

export const MAX_PENDING_APPENDS = 256;

export class AckQueue {
  readonly #slots: AckSlot[] = [];
  #held = false;

  constructor(private readonly out: AckOutput) {}

  get pending(): number {
    return this.#slots.length;
  }

  expect(messageId: number | undefined): AckSlot {
    const slot: AckSlot = { messageId, state: 'waiting' };
    this.#slots.push(slot);
    if (this.#slots.length > MAX_PENDING_APPENDS && !this.#held) {
      this.#held = true;
      this.out.hold();
    }
    return slot;
  }

  settle(slot: AckSlot, stored: boolean): void {
    slot.state = stored ? 'stored' : 'failed';
    let n = 0;
    for (const s of this.#slots) {
      if (s.state === 'waiting') break;
      n++;
      if (s.state === 'failed') {
        this.#slots.length = 0;
        this.out.failed();
        return;
      }
      if (s.messageId !== undefined) this.out.puback(s.messageId);
    }
    if (n > 0) this.#slots.splice(0, n);
    if (this.#held && this.#slots.length <= MAX_PENDING_APPENDS / 2) {
      this.#held = false;
      this.out.release();
    }
  }
}
