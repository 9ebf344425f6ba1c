/**
 * Endpoint secrets (routing-config.ts SECRET_FIELDS): sealed at rest with the hub's SecretBox,
 * each under a context naming its endpoint and field, so a sealed value copied elsewhere does not
 * open; masked in every response as Azure masks endpoint keys (`****`). A document sent back with
 * a masked value keeps the stored secret, so `GET`, edit, `PUT` (what `az iot hub
 * message-endpoint create` does) never needs the secrets.
 */
import { ENDPOINT_TYPE_NAMES, SECRET_FIELDS, type EndpointType, type RoutingProperties } from './routing-config.js';

export const MASK = '****';

export interface Sealer {
  seal(plaintext: string, context: string): string;
  open(sealed: string, context: string): string;
}

type Endpoint = Record<string, unknown> & { name: string };
type Transform = (value: string, context: string, field: string) => string;

function urlField(field: string): boolean {
  return field === 'url' || field === 'connectionString';
}

/** `postgres://u:pw@h/db` -> `postgres://u:****@h/db`; a URL without a password is no secret. */
export function maskUrl(u: string): string {
  return u.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)([^@/]*)@/i, (_m, head: string) => `${head}${MASK}@`);
}

function mapSecrets(r: RoutingProperties, f: Transform): RoutingProperties {
  const out = structuredClone(r);
  for (const type of ENDPOINT_TYPE_NAMES) {
    for (const ep of out.endpoints[type] as Endpoint[]) {
      for (const field of SECRET_FIELDS[type]) {
        const v = ep[field];
        const ctx = `routing:${type}:${ep.name}:${field}`;
        if (typeof v === 'string') ep[field] = f(v, ctx, field);
        else if (v !== null && typeof v === 'object') {
          ep[field] = Object.fromEntries(Object.entries(v as Record<string, string>).map(([k, x]) => [k, f(x, `${ctx}:${k}`, field)]));
        }
      }
    }
  }
  return out;
}

export function sealSecrets(r: RoutingProperties, box: Sealer): RoutingProperties {
  return mapSecrets(r, (v, ctx) => box.seal(v, ctx));
}

export function openSecrets(r: RoutingProperties, box: Sealer): RoutingProperties {
  return mapSecrets(r, (v, ctx) => box.open(v, ctx));
}

export function maskSecrets(r: RoutingProperties): RoutingProperties {
  return mapSecrets(r, (v, _ctx, field) => (urlField(field) ? maskUrl(v) : MASK));
}

/**
 * The incoming document (as sent, not yet validated) with each masked secret replaced by the
 * stored one of the endpoint with the same type and name. A masked value with nothing stored
 * behind it stays as sent (`****`): findMasked reports it.
 */
export function restoreMasked(incoming: unknown, stored: RoutingProperties): unknown {
  if (!isObject(incoming) || !isObject(incoming.endpoints)) return incoming;
  const out = structuredClone(incoming) as { endpoints: Record<string, unknown> };
  for (const type of ENDPOINT_TYPE_NAMES) {
    const list = out.endpoints[type];
    if (!Array.isArray(list)) continue;
    const before = new Map((stored.endpoints[type] as Endpoint[]).map((e) => [e.name.toLowerCase(), e]));
    for (const ep of list as unknown[]) {
      if (!isObject(ep) || typeof ep.name !== 'string') continue;
      const old = before.get(ep.name.toLowerCase());
      if (old === undefined) continue;
      for (const field of SECRET_FIELDS[type as EndpointType]) {
        const v = ep[field];
        const was = old[field];
        if (typeof v === 'string' && typeof was === 'string') {
          if (v === (urlField(field) ? maskUrl(was) : MASK)) ep[field] = was;
        } else if (isObject(v) && isObject(was)) {
          ep[field] = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, x === MASK && typeof was[k] === 'string' ? was[k] : x]));
        }
      }
    }
  }
  return out;
}

/** Secret fields still masked after restoreMasked: `webhooks.hook-1.secret`. */
export function findMasked(r: RoutingProperties): string[] {
  const out: string[] = [];
  mapSecrets(r, (v, ctx, field) => {
    if (v === MASK || (urlField(field) && v.includes(`:${MASK}@`))) out.push(ctx.replace(/^routing:/, '').replace(/:/g, '.'));
    return v;
  });
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
