/** Reads what the posture audit needs from a store (the CLI's offline path and GET /posture). */
import type { DeviceRecord } from '../core/types.js';
import { allIssued } from '../pki/issued.js';
import type { Store } from '../store/ports.js';
import { readOperators } from '../access/operators.js';
import { readPolicyUsage } from '../policies/policy-usage.js';
import { assessPosture, type Finding } from './posture.js';
import { LOG_DURABILITY_META, LOG_REPLICAS_META, LOG_STORE_META } from '../log/log-ports.js';
import { readSettings } from '../settings/settings-store.js';

async function readEventLogStore(store: Store): Promise<{ store: string; replicas: number; durability: string } | undefined> {
  const kind = await store.getMeta(LOG_STORE_META);
  if (kind === undefined) return undefined;
  return { store: kind, replicas: Number((await store.getMeta(LOG_REPLICAS_META)) ?? '0'), durability: (await store.getMeta(LOG_DURABILITY_META)) ?? 'fsync' };
}

export async function runPostureAudit(store: Store, opts: { now: number; expiringDays: number }): Promise<Finding[]> {
  const devices: DeviceRecord[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await store.listDevices({ limit: 1000, ...(after === undefined ? {} : { after }) });
    devices.push(...page);
    if (page.length < 1000) break;
    after = page[page.length - 1]!.deviceId;
  }
  const cas = await Promise.all((await store.certificates.list()).map(async (c) => ({ ...c, holdsKey: await store.authority.hasCaKey(c.name) })));
  const { operators, assignments } = await readOperators(store);
  return assessPosture({
    now: opts.now,
    expiringDays: opts.expiringDays,
    settings: await readSettings(store),
    policies: await store.listPolicies(),
    devices,
    groups: await store.enrollments.listGroups(),
    cas,
    issued: await allIssued(store.authority, {}),
    operators,
    assignments,
    usage: await readPolicyUsage(store),
    eventLog: await readEventLogStore(store),
  });
}
