/**
 * Provisioning limits [DOCS: DPS limits] (wire doc §9.3): at most 5 operation-status polls per
 * 10 s per registration, and a per-service registration rate (1,000 per minute by default).
 * Over the limit: 429 with `retry-after` in seconds, which the SDK honours over MQTT.
 *
 * The limits hold for the service, not per node: both are counters every node shares through the
 * store (CounterStore; docs/decisions/0004-shared-counters.md), the registration rate one token
 * bucket, each registration's polls one list of times, each updated in one transaction. Both
 * requests write to the store anyway, so the counter adds a round trip, not a new dependency.
 */
import type { Clock } from '../core/clock.js';
import { HubError } from '../core/errors.js';
import type { CounterStore } from '../store/ports.js';

export class RetryLater extends HubError {
  constructor(
    readonly retryAfterSeconds: number,
    message: string,
  ) {
    super('ThrottlingException', message);
  }
}

export const POLLS_PER_WINDOW = 5;
export const POLL_WINDOW_MS = 10_000;
const BUCKET_KEY = 'dps:registrations';
const pollKey = (registrationId: string) => `dps:poll|${registrationId.toLowerCase().replace(/[\u0000-\u001f\u007f]/g, '?')}`;

export class ProvisioningThrottle {
  constructor(
    private readonly clock: Clock,
    private readonly registrationsPerMinute: number,
    private readonly counters: CounterStore,
  ) {}

  /** A registration request: one token of the service-wide bucket. */
  async register(): Promise<void> {
    const now = this.clock.now();
    const full = this.registrationsPerMinute;
    const rate = full / 60_000;
    const wait = await this.counters.update([BUCKET_KEY], now, (current) => {
      const stored = current.get(BUCKET_KEY);
      const b = stored === undefined ? { tokens: full, refilled: now } : (JSON.parse(stored) as { tokens: number; refilled: number });
      const tokens = Math.min(full, b.tokens + Math.max(0, now - b.refilled) * rate);
      // A full bucket is no state at all: it expires when it would have refilled.
      const keep = (t: number) => ({ value: JSON.stringify({ tokens: t, refilled: now }), expiresAt: now + Math.ceil((full - t) / rate) + 1000 });
      if (tokens < 1) return { writes: new Map([[BUCKET_KEY, keep(tokens)]]), result: Math.max(1, Math.ceil((1 - tokens) / rate / 1000)) };
      return { writes: new Map([[BUCKET_KEY, keep(tokens - 1)]]), result: 0 };
    });
    if (wait > 0) throw new RetryLater(wait, 'Too many registrations; retry later.');
  }

  /** An operation-status poll by one registration id. */
  async poll(registrationId: string): Promise<void> {
    const now = this.clock.now();
    const key = pollKey(registrationId);
    const wait = await this.counters.update([key], now, (current) => {
      const stored = current.get(key);
      const recent = (stored === undefined ? [] : (JSON.parse(stored) as number[])).filter((t) => t > now - POLL_WINDOW_MS);
      const keep = (times: number[]) => ({ value: JSON.stringify(times), expiresAt: (times[0] ?? now) + POLL_WINDOW_MS });
      if (recent.length >= POLLS_PER_WINDOW) {
        const oldest = recent[0] ?? now;
        return { writes: new Map([[key, keep(recent)]]), result: Math.max(1, Math.ceil((oldest + POLL_WINDOW_MS - now) / 1000)) };
      }
      return { writes: new Map([[key, keep([...recent, now])]]), result: 0 };
    });
    if (wait > 0) throw new RetryLater(wait, 'Too many status requests for this registration; retry later.');
  }
}
