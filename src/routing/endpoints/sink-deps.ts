/**
 * What every endpoint sink gets besides its own config: the hub's name (in message ids, file
 * names, headers), a logger for what happens outside a deliver (a background roll of a file), the
 * clock, and how long one operation on the target may take.
 */
import type { Logger } from 'pino';

export interface SinkDeps {
  /** The hub's name (Azure's `{iothub}`), as `$iothubname` gives it. */
  hubName: string;
  logger?: Pick<Logger, 'warn' | 'info'>;
  /** Milliseconds since the epoch; Date.now by default (tests move it to roll files). */
  now?: () => number;
  /**
   * How long connecting, or one request, publish or insert, may take before deliver rejects.
   * Default 30 s.
   */
  timeoutMs?: number;
}

export const DEFAULT_TIMEOUT_MS = 30_000;

export function timeoutOf(deps: SinkDeps): number {
  return deps.timeoutMs ?? DEFAULT_TIMEOUT_MS;
}

/** Rejects with `what timed out after N ms` unless the promise settles first. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new Error(`${what} timed out after ${ms} ms`));
    }, ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
