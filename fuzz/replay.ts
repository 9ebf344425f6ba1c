/**
 * Replays saved inputs against a hub, one at a time, and says after each whether the hub is still
 * there and answers /health within 2 s: what the corpus regression test and triage use.
 */
import { HEALTH_LIMIT_MS, type Sender } from './harness.js';
import { healthCheck } from './hub.js';
import type { FuzzInput } from './input.js';
import { httpStatus } from './transport.js';

export interface ReplayResult {
  alive: boolean;
  health: number | 'timeout' | 'error';
  healthMs: number;
  /** The HTTP status the hub answered, for http and query inputs. */
  httpStatus?: number;
}

export async function replay(sender: Sender, input: FuzzInput): Promise<ReplayResult> {
  const out = await sender.send(input).catch(() => undefined);
  // A crash may take a moment to show: give the process a beat, then ask.
  await new Promise((r) => setTimeout(r, 100));
  const h = await healthCheck(sender.hub, HEALTH_LIMIT_MS, sender.addresses.health);
  const status = out === undefined ? undefined : httpStatus(out.head);
  return { alive: sender.hub.exit() === undefined, health: h.status, healthMs: h.ms, ...(status === undefined ? {} : { httpStatus: status }) };
}
