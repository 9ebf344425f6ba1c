/**
 * The DPS ID scope: `0ne` + 8 upper-case hex characters, like Azure's (`0ne00000A0A`), made once
 * on first start and kept in meta `dps.idScope`. Devices put it in their registration paths.
 */
import { randomBytes } from 'node:crypto';
import type { MetaStore } from '../store/ports.js';

export const ID_SCOPE_META = 'dps.idScope';
const ID_SCOPE = /^0ne[0-9A-F]{8}$/;

export function newIdScope(): string {
  return `0ne${randomBytes(4).toString('hex').toUpperCase()}`;
}

/**
 * The hub's ID scope, created on first call: inserted only where there is none, so nodes of a
 * cluster starting together all use the one that was kept.
 */
export async function ensureIdScope(store: MetaStore): Promise<string> {
  const existing = await store.getMeta(ID_SCOPE_META);
  if (existing !== undefined && ID_SCOPE.test(existing)) return existing;
  if (existing === undefined) return store.insertMetaIfAbsent(ID_SCOPE_META, newIdScope());
  // A malformed stored scope (edited by hand): replaced, as it always was.
  const scope = newIdScope();
  await store.setMeta(ID_SCOPE_META, scope);
  return scope;
}

/** The ID scope of an initialized store, without creating one. */
export function readIdScope(store: MetaStore): Promise<string | undefined> {
  return store.getMeta(ID_SCOPE_META);
}
