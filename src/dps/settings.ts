/**
 * Provisioning service settings, kept in the store so a change applies to the next registration
 * on every node, at once. `disableSymmetricKeyAttestation` is the switch Azure users ask for and
 * Azure lacks: with it on, only X.509 (and later TPM) devices can register.
 */
import type { MetaStore } from '../store/ports.js';

export interface DpsSettings {
  disableSymmetricKeyAttestation: boolean;
}

const KEY = 'dps.settings';
const DEFAULTS: DpsSettings = { disableSymmetricKeyAttestation: false };

export async function readDpsSettings(store: MetaStore): Promise<DpsSettings> {
  const raw = await store.getMeta(KEY);
  if (raw === undefined) return { ...DEFAULTS };
  const parsed = JSON.parse(raw) as Partial<DpsSettings>;
  return { ...DEFAULTS, ...parsed };
}

export async function writeDpsSettings(store: MetaStore, patch: Partial<DpsSettings>): Promise<DpsSettings> {
  const next = { ...(await readDpsSettings(store)), ...patch };
  await store.setMeta(KEY, JSON.stringify(next));
  return next;
}

/**
 * The settings a registration obeys: the stored provisioning settings, with the hub's
 * `disableDeviceSAS` covering provisioning too (no symmetric-key attestation while it is on).
 */
export function effectiveDpsSettings(store: MetaStore, hub: () => { disableDeviceSAS: boolean }): () => Promise<DpsSettings> {
  return async () => {
    const dps = await readDpsSettings(store);
    return { ...dps, disableSymmetricKeyAttestation: dps.disableSymmetricKeyAttestation || hub().disableDeviceSAS };
  };
}
