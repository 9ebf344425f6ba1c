/**
 * DPS registration operations (`PUT .../register` answers with an operationId the device may poll
 * with `GET .../operations/{id}`), resolvable on every node (issue 16): a device's poll may land on
 * another node than its register behind a load balancer. Each operation is kept in this node's
 * memory and, when a CounterStore is given, in the store's shared counters under `dps-op:<id>` for
 * its ten minutes (the counters are small JSON values with an expiry, which is what an operation
 * is; docs/cluster.md). A poll this node cannot answer from memory reads the store.
 */
import type { Clock } from '../core/clock.js';
import type { JsonObject } from '../core/json.js';
import type { CounterStore } from '../store/counter-ports.js';

export interface OperationStatus {
  operationId: string;
  status: 'assigning' | 'assigned' | 'failed';
  registrationState?: JsonObject;
}

interface Kept {
  registrationId: string;
  status: OperationStatus;
  expires: number;
}

const TTL_MS = 10 * 60_000;
const PREFIX = 'dps-op:';

export class RegistrationOperations {
  readonly #local = new Map<string, Kept>();

  constructor(
    private readonly clock: Clock,
    private readonly shared: CounterStore | undefined,
    private readonly onStoreError: (err: unknown) => void = () => undefined,
  ) {}

  /** Keeps the operation; resolves once any node can answer a poll for it (or the store failed: this node still can). */
  async add(registrationId: string, status: OperationStatus): Promise<void> {
    const now = this.clock.now();
    for (const [id, op] of this.#local) if (op.expires < now) this.#local.delete(id);
    const kept: Kept = { registrationId: registrationId.toLowerCase(), status, expires: now + TTL_MS };
    this.#local.set(status.operationId, kept);
    const key = PREFIX + status.operationId;
    await this.shared
      ?.update([key], now, () => ({ writes: new Map([[key, { value: JSON.stringify(kept), expiresAt: kept.expires }]]), result: undefined }))
      .catch(this.onStoreError);
  }

  /** The operation, only for the registration it belongs to. */
  async get(registrationId: string, operationId: string): Promise<OperationStatus | undefined> {
    let op = this.#local.get(operationId);
    if (op === undefined && this.shared !== undefined && operationId.length <= 64) {
      const key = PREFIX + operationId;
      const raw = await this.shared.update([key], this.clock.now(), (current) => ({ writes: new Map(), result: current.get(key) }));
      op = raw === undefined ? undefined : (JSON.parse(raw) as Kept);
    }
    return op === undefined || op.expires < this.clock.now() || op.registrationId !== registrationId.toLowerCase() ? undefined : op.status;
  }
}
