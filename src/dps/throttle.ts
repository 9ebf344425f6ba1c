/**
 * Provisioning limits [DOCS: DPS limits] (wire doc §9.3): at most 5 operation-status polls per
 * 10 s per registration, and a per-service registration rate (1,000 per minute by default).
 * Over the limit: 429 with `retry-after` in seconds, which the SDK honours over MQTT.
 */
import type { Clock } from '../core/clock.js';
import { HubError } from '../core/errors.js';

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

export class ProvisioningThrottle {
  readonly #polls = new Map<string, number[]>();
  #tokens: number;
  #refilled: number;

  constructor(
    private readonly clock: Clock,
    private readonly registrationsPerMinute: number,
  ) {
    this.#tokens = registrationsPerMinute;
    this.#refilled = clock.now();
  }

  /** A registration request: one token of the service-wide bucket. */
  register(): void {
    const now = this.clock.now();
    const rate = this.registrationsPerMinute / 60_000;
    this.#tokens = Math.min(this.registrationsPerMinute, this.#tokens + (now - this.#refilled) * rate);
    this.#refilled = now;
    if (this.#tokens < 1) {
      throw new RetryLater(Math.max(1, Math.ceil((1 - this.#tokens) / rate / 1000)), 'Too many registrations; retry later.');
    }
    this.#tokens -= 1;
  }

  /** An operation-status poll by one registration id. */
  poll(registrationId: string): void {
    const now = this.clock.now();
    const key = registrationId.toLowerCase();
    const recent = (this.#polls.get(key) ?? []).filter((t) => t > now - POLL_WINDOW_MS);
    if (recent.length >= POLLS_PER_WINDOW) {
      this.#polls.set(key, recent);
      const oldest = recent[0] ?? now;
      throw new RetryLater(Math.max(1, Math.ceil((oldest + POLL_WINDOW_MS - now) / 1000)), 'Too many status requests for this registration; retry later.');
    }
    recent.push(now);
    this.#polls.set(key, recent);
    if (this.#polls.size > 100_000) this.#polls.clear();
  }
}
