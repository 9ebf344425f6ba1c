/**
 * What the CLI's streaming commands (`monitor-events`, `c2d feedback --wait`) share: they stop on
 * SIGINT or SIGTERM, when the reader of stdout goes away, or after `--timeout` seconds without
 * anything new (az's meaning of `--timeout` for monitor-events: 0 waits for ever).
 */
import { usage } from './errors.js';

export interface Follow {
  readonly signal: AbortSignal;
  /** Something arrived: the idle timeout starts again. */
  touch(): void;
  /** True once the idle timeout ended the stream. */
  timedOut(): boolean;
  dispose(): void;
}

/** `--timeout` as milliseconds; 0 (or undefined with no default) means no timeout. */
export function parseTimeout(text: string | undefined, flag = '--timeout'): number | undefined {
  if (text === undefined) return undefined;
  const seconds = Number(text);
  if (text.trim() === '' || !Number.isFinite(seconds) || seconds < 0) throw usage(`${flag} must be 0 (no timeout) or a positive number of seconds`);
  return seconds === 0 ? undefined : seconds * 1000;
}

export function follow(idleMs: number | undefined): Follow {
  const stop = new AbortController();
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    if (idleMs === undefined) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      stop.abort();
    }, idleMs);
  };
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.stdout.on('error', onSignal); // EPIPE: the reader went away
  arm();
  return {
    signal: stop.signal,
    touch: arm,
    timedOut: () => timedOut,
    dispose() {
      if (timer !== undefined) clearTimeout(timer);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.stdout.off('error', onSignal);
    },
  };
}

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
