/**
 * The MQTT broker core: takes a stream and the TLS peer chain from any listener and runs one
 * MqttConnection on it. It is a fixed topic API, not a general broker (wire doc §3).
 */
import type { Duplex } from 'node:stream';
import type { BrokerDeps } from './broker-deps.js';
import { MqttConnection, type PeerInfo } from './connection.js';

export class MqttBroker {
  readonly #open = new Set<MqttConnection>();
  /** Every connection's close hook: one function, not a closure per connection. */
  readonly #forget = (conn: MqttConnection): void => {
    this.#open.delete(conn);
  };

  constructor(readonly deps: BrokerDeps) {}

  handle(stream: Duplex, peer: PeerInfo): MqttConnection {
    const conn = new MqttConnection(stream, peer, this.deps);
    this.#open.add(conn);
    conn.onClosed = this.#forget;
    return conn;
  }

  get openConnections(): number {
    return this.#open.size;
  }

  closeAll(reason: string): void {
    for (const c of this.#open) c.close(reason);
    this.#open.clear();
  }
}
