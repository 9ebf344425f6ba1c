/**
 * Connection state written in batches (issue 19, item 4): every connect and disconnect of a turn
 * of the event loop goes to the store in one transaction, not one autocommit each. Only the node
 * holding a session reports its state (session-state.ts), so only the owner writes it.
 *
 * Order: one batch in flight at a time, and within a batch the last change of an identity wins,
 * so a disconnect followed by a reconnect ends Connected. Visibility: the batch runs on the turn
 * that queued it (setImmediate), before the loop reads the next request, so a reader on this node
 * that asks after the CONNACK went out sees Connected as it did when each write was its own.
 */
import type { ConnectionStateChange, DeviceRegistryStore } from '../store/ports.js';

export type ConnectionStateStore = Pick<DeviceRegistryStore, 'setConnectionStates'>;

export class ConnectionStateWriter {
  #pending = new Map<string, ConnectionStateChange>();
  #scheduled: NodeJS.Immediate | undefined;
  #flushing: Promise<void> | undefined;

  constructor(
    private readonly store: ConnectionStateStore,
    private readonly onError: (err: unknown, changes: number) => void = () => undefined,
  ) {}

  /** Queues a change; it reaches the store with the other changes of this turn. */
  set(change: ConnectionStateChange): void {
    this.#pending.set(change.moduleId === null ? change.deviceId : `${change.deviceId}/${change.moduleId}`, change);
    if (this.#scheduled === undefined && this.#flushing === undefined) this.#scheduled = setImmediate(() => void this.flush());
  }

  /** Resolves once every change queued before the call is in the store (or failed and was logged). */
  async flush(): Promise<void> {
    if (this.#scheduled !== undefined) {
      clearImmediate(this.#scheduled);
      this.#scheduled = undefined;
    }
    // A batch in flight: the changes queued meanwhile go in the next one, after it.
    while (this.#flushing !== undefined) await this.#flushing;
    if (this.#pending.size === 0) return;
    const batch = [...this.#pending.values()];
    this.#pending = new Map();
    const run = this.store.setConnectionStates(batch).catch((err: unknown) => this.onError(err, batch.length));
    this.#flushing = run;
    try {
      await run;
    } finally {
      this.#flushing = undefined;
    }
    if (this.#pending.size > 0 && this.#scheduled === undefined) this.#scheduled = setImmediate(() => void this.flush());
  }

  /** Changes queued and not yet written. */
  get pending(): number {
    return this.#pending.size;
  }
}
