/**
 * The hub settings document in the store's meta table: read with defaults for fields added later,
 * written only over the version it was read at (compare-and-set), so two nodes never overwrite each other.
 */
import { randomBytes } from 'node:crypto';
import { HubError } from '../core/errors.js';
import { bodyOf, DEFAULT_SETTINGS, mergePatch, parseSettingsBody, type HubSettings, type HubSettingsBody } from '../core/settings.js';
import type { MetaStore } from '../store/ports.js';

const META_KEY = 'hub.settings';

/** Reads the stored settings; defaults (version 0) when none were ever written. */
export async function readSettings(store: MetaStore): Promise<HubSettings> {
  const raw = await store.getMeta(META_KEY);
  if (raw === undefined) return { ...structuredClone(DEFAULT_SETTINGS), version: 0, etag: 'defaults', updatedAt: new Date(0).toISOString(), updatedBy: 'hub' };
  const stored = JSON.parse(raw) as HubSettings;
  // Fields added in later versions take their defaults.
  const body = parseSettingsBody(mergePatch(structuredClone(DEFAULT_SETTINGS), bodyOf(stored)));
  return { ...body, version: stored.version, etag: stored.etag, updatedAt: stored.updatedAt, updatedBy: stored.updatedBy };
}

/**
 * Writes the next version over `previous`, only if the store still holds that version: another
 * node's change in between is PreconditionFailed, never overwritten (compare-and-set on the stored
 * document).
 */
export async function writeSettings(store: MetaStore, body: HubSettingsBody, previous: HubSettings, by: string, now: number): Promise<HubSettings> {
  const next: HubSettings = { ...body, version: previous.version + 1, etag: randomBytes(8).toString('hex'), updatedAt: new Date(now).toISOString(), updatedBy: by };
  const raw = await store.getMeta(META_KEY);
  const storedEtag = raw === undefined ? 'defaults' : (JSON.parse(raw) as HubSettings).etag;
  if (storedEtag !== previous.etag || !(await store.compareAndSetMeta(META_KEY, raw, JSON.stringify(next)))) {
    throw new HubError('PreconditionFailed', 'The settings were changed elsewhere (another node); read them again.');
  }
  return next;
}
