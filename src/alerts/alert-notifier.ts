/**
 * Where a firing or a resolution goes: the log (warn / info) and the rule's webhook. Deliveries
 * run in the background, one alert's notifications in order (its resolution never overtakes its
 * firing), and are aborted when the engine stops; each outcome is handed back for the history.
 */
import type { Logger } from 'pino';
import type { AlertRuleRecord } from '../store/alert-ports.js';
import type { AlertPayload } from './alert-rules.js';
import { deliverWebhook, originOf, DEFAULT_DELIVERY, type DeliveryPolicy, type DeliveryResult, type FetchLike } from './webhook.js';

export interface AlertNotifierOptions {
  logger: Logger;
  now: () => number;
  delivery?: DeliveryPolicy;
  fetch?: FetchLike;
  /** Called once per delivery with its outcome (the engine records it). */
  delivered: (alertId: string, state: 'fired' | 'resolved', at: string, outcome: DeliveryResult) => void;
}

export class AlertNotifier {
  readonly #o: AlertNotifierOptions;
  readonly #deliveries = new Map<string, Promise<void>>();
  readonly #abort = new AbortController();

  constructor(opts: AlertNotifierOptions) {
    this.#o = opts;
  }

  /** Deliveries still running (the engine waits for them when idle). */
  get running(): Promise<void>[] {
    return [...this.#deliveries.values()];
  }

  /** Aborts webhook retries in flight; later notifications only log. */
  stop(): void {
    this.#abort.abort();
  }

  notify(rule: AlertRuleRecord, payload: AlertPayload): void {
    const a = payload.alert;
    if (rule.log) {
      const fields = { event: `alert.${a.state}`, alert: { id: a.id, rule: a.rule, kind: a.kind, key: a.key, value: a.value, threshold: a.threshold, details: a.details } };
      if (a.state === 'fired') this.#o.logger.warn(fields, a.summary);
      else this.#o.logger.info(fields, a.summary);
    }
    if (rule.webhookUrl === null || this.#abort.signal.aborted) return;
    const target = { url: rule.webhookUrl, secret: rule.webhookSecret };
    const body = JSON.stringify(payload);
    const previous = this.#deliveries.get(a.id) ?? Promise.resolve();
    const run = previous.then(async () => {
      const result = await deliverWebhook(target, body, {
        event: `alert.${a.state}`,
        policy: this.#o.delivery ?? DEFAULT_DELIVERY,
        signal: this.#abort.signal,
        ...(this.#o.fetch === undefined ? {} : { fetch: this.#o.fetch }),
      });
      const at = new Date(this.#o.now()).toISOString();
      if (result.ok) {
        this.#o.logger.info({ event: 'alert.delivered', alertId: a.id, rule: a.rule, state: a.state, attempts: result.attempts, status: result.status }, 'alert webhook delivered');
      } else {
        // The URL's path may itself be a credential (many chat webhooks): only its origin is logged.
        this.#o.logger.warn(
          { event: 'alert.delivery-failed', alertId: a.id, rule: a.rule, state: a.state, attempts: result.attempts, status: result.status, error: result.error, target: originOf(target.url) },
          'alert webhook delivery failed',
        );
      }
      this.#o.delivered(a.id, a.state, at, result);
    });
    const tracked = run.finally(() => {
      if (this.#deliveries.get(a.id) === tracked) this.#deliveries.delete(a.id);
    });
    this.#deliveries.set(a.id, tracked);
  }
}
