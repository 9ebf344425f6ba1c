/**
 * Who is making the current request, for code far from the HTTP layer (the registry's change
 * events): set once per request by the HTTP edge, read through AsyncLocalStorage.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

export interface RequestContext {
  /** `policy:<name>` or `operator:<id>`, once authenticated. */
  actor?: string;
  remote: string;
}

export const requestContext = new AsyncLocalStorage<RequestContext>();

/** The current request's actor, or `hub` outside a request (provisioning, EST, the hub itself). */
export function currentActor(): { actor: string; remote?: string } {
  const c = requestContext.getStore();
  return c?.actor === undefined ? { actor: 'hub', ...(c === undefined ? {} : { remote: c.remote }) } : { actor: c.actor, remote: c.remote };
}
