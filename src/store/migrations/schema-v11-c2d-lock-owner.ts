import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 11: who holds a C2D lock. `lock_owner` is the node id of the hub whose MQTT or
 * AMQP session took the lock; NULL for a lock a device holds by its token (HTTPS receive). When a
 * node starts it releases the locks its earlier run held (those sessions died with it), so the
 * messages go out again when their devices reconnect instead of after the lock lapses.
 */
export function schemaV11(d: SchemaDialect): string {
  return `
ALTER TABLE c2d_messages ADD COLUMN lock_owner ${d.id};
CREATE INDEX c2d_messages_lock_owner ON c2d_messages (lock_owner);
`;
}
