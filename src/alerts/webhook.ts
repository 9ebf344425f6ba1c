/**
 * Webhook delivery of alert notifications: an HTTP(S) POST of a JSON body with Node's fetch,
 * `X-Gatehouse-Signature: sha256=<hex HMAC-SHA256 of the body>` when the rule has a secret, a
 * timeout per attempt, and retries with exponential backoff on network errors, timeouts, 408, 429
 * and 5xx. Redirects are not followed (a 3xx is a failed delivery). Nothing here throws: the
 * result says what happened, for the log and the alert history.
 */
import { createHmac, randomUUID } from 'node:crypto';

export interface WebhookTarget {
  url: string;
  secret: string | null;
}

export interface DeliveryPolicy {
  attempts: number;
  timeoutMs: number;
  /** Wait before the 2nd attempt; doubles for each further one. */
  backoffMs: number;
}

export const DEFAULT_DELIVERY: DeliveryPolicy = { attempts: 3, timeoutMs: 5000, backoffMs: 1000 };

export interface DeliveryResult {
  ok: boolean;
  attempts: number;
  status: number | null;
  error: string | null;
}

export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

function retryable(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

function describe(err: unknown, timedOut: boolean, timeoutMs: number): string {
  if (timedOut) return `timed out after ${timeoutMs} ms`;
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'AbortError') return 'aborted (hub stopping)';
  return (e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err)).slice(0, 200);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** POSTs `body` (JSON text) to the target, retrying as the policy says; `signal` stops retries (hub stopping). */
export async function deliverWebhook(
  target: WebhookTarget,
  body: string,
  opts: { policy?: DeliveryPolicy; event: string; fetch?: FetchLike; signal?: AbortSignal },
): Promise<DeliveryResult> {
  const policy = opts.policy ?? DEFAULT_DELIVERY;
  const doFetch: FetchLike = opts.fetch ?? ((url, init) => fetch(url, init));
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'gatehouse-alerts',
    // The same id on every attempt, so a receiver can drop a duplicate after a lost answer.
    'x-gatehouse-delivery': randomUUID(),
    'x-gatehouse-event': opts.event,
  };
  if (target.secret !== null) headers['x-gatehouse-signature'] = signature(target.secret, body);
  let status: number | null = null;
  let error: string | null = null;
  for (let attempt = 1; attempt <= policy.attempts; attempt++) {
    if (attempt > 1) {
      await sleep(policy.backoffMs * 2 ** (attempt - 2), opts.signal);
      if (opts.signal?.aborted === true) return { ok: false, attempts: attempt - 1, status, error: error ?? 'aborted (hub stopping)' };
    }
    const timeout = AbortSignal.timeout(policy.timeoutMs);
    const signal = opts.signal === undefined ? timeout : AbortSignal.any([timeout, opts.signal]);
    try {
      const res = await doFetch(target.url, { method: 'POST', headers, body, redirect: 'manual', signal });
      status = res.status;
      await res.body?.cancel().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) return { ok: true, attempts: attempt, status, error: null };
      error = `HTTP ${res.status}`;
      if (!retryable(res.status)) return { ok: false, attempts: attempt, status, error };
    } catch (err) {
      status = null;
      error = describe(err, timeout.aborted, policy.timeoutMs);
      if (opts.signal?.aborted === true) return { ok: false, attempts: attempt, status, error };
    }
  }
  return { ok: false, attempts: policy.attempts, status, error };
}

/** A URL's origin only: its path may itself be a credential (many chat webhooks). */
export function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid url)';
  }
}
