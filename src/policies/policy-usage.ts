/**
 * Which rights each shared access policy has actually used, and when last: the evidence for the
 * posture audit's "policy holds rights it does not use" finding. Only the rights a request
 * needed are recorded (security/access.ts), DeviceConnect only when a device authenticates with a
 * policy-signed token. Counted in memory on the request path (one map write), written to the meta
 * table when a policy uses a right for the first time, then at most once a minute and at stop.
 *
 * Several nodes write the one document: a flush merges this node's uses into what is stored
 * (earliest `since`, latest use of each right) and writes with compare-and-set, reading again when
 * another node wrote in between, so no node's uses are lost.
 */
import type { Clock } from '../core/clock.js';
import type { MetaStore } from '../store/ports.js';

const META_KEY = 'policy-usage';

export interface PolicyUsageDoc {
  /** When tracking began (ms): a right unused since then is unused for that long at most. */
  since: number;
  /** policy name (lower case) -> right -> last use (ms). */
  used: Record<string, Record<string, number>>;
}

export async function readPolicyUsage(store: MetaStore): Promise<PolicyUsageDoc | undefined> {
  const raw = await store.getMeta(META_KEY);
  return raw === undefined ? undefined : (JSON.parse(raw) as PolicyUsageDoc);
}

/** Both documents' uses: the earliest start of tracking, the latest use of each right. */
function merged(mine: PolicyUsageDoc, stored: PolicyUsageDoc): PolicyUsageDoc {
  const used: PolicyUsageDoc['used'] = structuredClone(stored.used ?? {});
  for (const [policy, rights] of Object.entries(mine.used)) {
    const p = (used[policy] ??= {});
    for (const [right, at] of Object.entries(rights)) p[right] = Math.max(p[right] ?? 0, at);
  }
  return { since: Math.min(mine.since, stored.since ?? mine.since), used };
}

export class PolicyUsage {
  #doc: PolicyUsageDoc = { since: 0, used: {} };
  #dirty = false;
  #timer: NodeJS.Timeout | undefined;
  #flushQueued = false;

  constructor(
    private readonly store: MetaStore,
    private readonly clock: Clock,
  ) {}

  async load(): Promise<void> {
    this.#doc = (await readPolicyUsage(this.store)) ?? { since: this.clock.now(), used: {} };
    this.#dirty = true;
  }

  record(policy: string, right: string): void {
    const p = (this.#doc.used[policy.toLowerCase()] ??= {});
    const first = p[right] === undefined;
    p[right] = this.clock.now();
    this.#dirty = true;
    // A right's first use is what the posture audit reports: written out now, so `gatehouse audit`
    // on the data dir sees it while the hub runs. Later uses only move a timestamp.
    if (first && this.#timer !== undefined && !this.#flushQueued) {
      this.#flushQueued = true;
      setImmediate(() => {
        this.#flushQueued = false;
        void this.flush().catch(() => undefined);
      });
    }
  }

  start(intervalMs = 60_000): void {
    this.#timer = setInterval(() => void this.flush().catch(() => undefined), intervalMs);
    this.#timer.unref();
  }

  async flush(): Promise<void> {
    if (!this.#dirty) return;
    this.#dirty = false;
    try {
      for (let attempt = 0; attempt < 10; attempt++) {
        const raw = await this.store.getMeta(META_KEY);
        if (raw !== undefined) this.#doc = merged(this.#doc, JSON.parse(raw) as PolicyUsageDoc);
        if (await this.store.compareAndSetMeta(META_KEY, raw, JSON.stringify(this.#doc))) return;
      }
      throw new Error('policy usage: the stored document kept changing');
    } catch (err) {
      this.#dirty = true;
      throw err;
    }
  }

  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.flush();
  }
}
