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
