/**
 * Config checks shared by the sink factories: the schema of routing-config.ts (so a sink built
 * from a document that skipped the engine's parse still gets every field checked), each problem
 * named by its field, all at once, as one EndpointConfigError.
 */
import type { z } from 'zod';
import { EndpointConfigError } from './sink.js';

export function parseEndpointConfig<S extends z.ZodType>(schema: S, config: unknown, type: string): z.infer<S> {
  const r = schema.safeParse(config);
  if (r.success) return r.data;
  const name = typeof (config as { name?: unknown } | null)?.name === 'string' ? ` '${(config as { name: string }).name}'` : '';
  const problems = r.error.issues.map((i) => `${i.path.length > 0 ? i.path.map(String).join('.') : '(config)'}: ${i.message}`);
  throw new EndpointConfigError(`${type} endpoint${name}: ${problems.join('; ')}`);
}

export function configError(type: string, name: string, problem: string): EndpointConfigError {
  return new EndpointConfigError(`${type} endpoint '${name}': ${problem}`);
}

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK.test(hostname);
}

/** scheme://host:port/path of a URL: never its user, password or query (which may hold a token). */
export function safeUrl(u: URL): string {
  return `${u.protocol}//${u.host}${u.pathname}`;
}
