/**
 * Runs the reference gate controller as its own process, as a user would, and talks to it through
 * its control socket.
 */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { controlRequest, type ControlRequest } from '../../src/control.js';
import type { DeviceStatus } from '../../src/gate-controller.js';
import { ROOT, spawnReaped } from '../../../test/support/hub-process.js';

export const DEVICE_BIN = join(ROOT, 'device', 'bin', 'gate-controller.js');

export interface DeviceProcess {
  proc: ChildProcess;
  output(): string;
  status(): Promise<DeviceStatus>;
  control(req: ControlRequest): Promise<unknown>;
  /** Polls the status until `ok` holds (or fails with the last status and the output). */
  until(what: string, ok: (s: DeviceStatus) => boolean, timeoutMs?: number): Promise<DeviceStatus>;
  stop(): Promise<number | null>;
}

export async function startDevice(dataDir: string, args: string[]): Promise<DeviceProcess> {
  const { proc, output, exited } = spawnReaped([DEVICE_BIN, 'run', '--data-dir', dataDir, ...args]);
  const socket = join(dataDir, 'control.sock');
  const status = () => controlRequest(socket, { op: 'status' }) as Promise<DeviceStatus>;
  const until = async (what: string, ok: (s: DeviceStatus) => boolean, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    let last: DeviceStatus | undefined;
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`the device exited with ${proc.exitCode} while waiting for ${what}:\n${output()}`);
      try {
        last = await status();
        if (ok(last)) return last;
      } catch (err) {
        lastError = err;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}; last status ${JSON.stringify(last)} (${String(lastError)})\n${output()}`);
  };
  await until('the control socket', () => true, 15_000);
  return {
    proc,
    output,
    status,
    control: (req) => controlRequest(socket, req),
    until,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}
