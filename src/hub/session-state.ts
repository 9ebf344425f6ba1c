/**
 * Connection state in the registry and session events on the security stream, the same for every
 * device protocol (MQTT, MQTT over WebSocket, AMQP).
 */
import type { Clock } from '../core/clock.js';
import type { AuthProtocol, SecurityEvents } from '../core/security-events.js';
import type { Store } from '../store/ports.js';

export interface SessionView {
  deviceId: string;
  moduleId: string | null;
  protocol: string;
  remoteAddress: string;
}

export function sessionStateRecorder(store: Pick<Store, 'setConnectionState'>, events: SecurityEvents, clock: Clock) {
  const state = (s: SessionView, value: 'Connected' | 'Disconnected') =>
    void store.setConnectionState(s.deviceId, s.moduleId, value, new Date(clock.now()).toISOString()).catch(() => undefined);
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
  };
}
