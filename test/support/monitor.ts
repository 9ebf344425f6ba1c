/**
 * `gatehouse monitor-events` as tests read it: az's shape (`{"event": {...}}`, one per line) with
 * every property (`--props all`), from the start of the stream, until 2 s pass without an event.
 */
import type { AzEvent } from '../../src/cli/az-event.js';
import { cli } from './hub-process.js';

export type MonitoredEvent = AzEvent['event'] & {
  properties: { system?: Record<string, unknown>; application: Record<string, string> };
  annotations: Record<string, unknown>;
};

/** `json`: read every payload as JSON (`--ct application/json`), as a script for JSON devices would. */
export function monitorEvents(dataDir: string, opts: { deviceId?: string; json?: boolean; timeoutS?: number } = {}, env: NodeJS.ProcessEnv = {}): MonitoredEvent[] {
  const args = ['monitor-events', '--data-dir', dataDir, '--from', 'earliest', '--props', 'all', '--timeout', String(opts.timeoutS ?? 2)];
  if (opts.deviceId !== undefined) args.push('--device-id', opts.deviceId);
  if (opts.json === true) args.push('--ct', 'application/json');
  const out = cli(args, env);
  if (out.status !== 0) throw new Error(`gatehouse monitor-events exited ${String(out.status)}: ${out.stderr}`);
  return out.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { event: MonitoredEvent }).event);
}
