/**
 * Connection state in the registry and session events on the security stream, the same for every
 * device protocol (MQTT, MQTT over WebSocket, AMQP). The state goes to the store in batches
 * (connection-state-writer.ts); `flush` before the store closes.
 */
import type { Clock } from '../core/clock.js';
import type { AuthProtocol, SecurityEvents } from '../core/security-events.js';
import { ConnectionStateWriter, type ConnectionStateStore } from './connection-state-writer.js';

export interface SessionView {
  deviceId: string;
  moduleId: string | null;
  protocol: string;
  remoteAddress: string;
}

export function sessionStateRecorder(store: ConnectionStateStore, events: SecurityEvents, clock: Clock, onError?: (err: unknown, changes: number) => void) {
  const writer = new ConnectionStateWriter(store, onError);
  const state = (s: SessionView, value: 'Connected' | 'Disconnected') =>
    writer.set({ deviceId: s.deviceId, moduleId: s.moduleId, state: value, at: new Date(clock.now()).toISOString() });
  const emit = (s: SessionView, what: 'connected' | 'disconnected') =>
    events.emit({ type: 'session', at: clock.now(), state: what, deviceId: s.deviceId, moduleId: s.moduleId, protocol: s.protocol as AuthProtocol, remote: s.remoteAddress });
  return {
    connected(s: SessionView): void {
      emit(s, 'connected');
      state(s, 'Connected');
    },
    /** Traffic on a session: last activity time. */
    active(s: SessionView): void {
      state(s, 'Connected');
    },
    disconnected(s: SessionView, wasCurrent: boolean): void {
      // Every session that ends is reported, a takeover's too (the device reconnected).
      emit(s, 'disconnected');
      if (wasCurrent) state(s, 'Disconnected');
    },
    /** Resolves once every state reported so far is in the store. */
    flush: (): Promise<void> => writer.flush(),
  };
}
