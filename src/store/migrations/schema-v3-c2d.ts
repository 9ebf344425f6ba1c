import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 3: cloud-to-device queues and feedback [DOCS: Send cloud-to-device messages
 * from IoT Hub].
 *
 * `c2d_messages` rows belong to their device: deleting the device deletes its queue in the same
 * statement (no feedback, the device is gone). `expiry_time` and `locked_until` are epoch
 * milliseconds so every comparison is numeric on both dialects. `generation_id` is the device's
 * at enqueue time, for the feedback records. Feedback outlives the device.
 *
 * `c2d_feedback.created` uses the identifier type (byte-order collation on PostgreSQL) so the
 * retention sweep can compare ISO-8601 strings whatever the server's locale.
 */
export function schemaV3(d: SchemaDialect): string {
  return `
CREATE TABLE c2d_messages (
  seq ${d.serial},
  device_id ${d.id} NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
  generation_id TEXT NOT NULL,
  message_id TEXT NOT NULL,
  correlation_id TEXT,
  user_id TEXT,
  to_path TEXT NOT NULL,
  ack TEXT NOT NULL,
  content_type TEXT,
  content_encoding TEXT,
  properties TEXT NOT NULL,
  body ${d.blob} NOT NULL,
  enqueued_time TEXT NOT NULL,
  expiry_time ${d.bigint} NOT NULL,
  delivery_count INTEGER NOT NULL DEFAULT 0,
  lock_token TEXT,
  locked_until ${d.bigint}
);
CREATE INDEX c2d_messages_device ON c2d_messages (device_id, seq);
CREATE INDEX c2d_messages_expiry ON c2d_messages (expiry_time);
CREATE UNIQUE INDEX c2d_messages_lock ON c2d_messages (lock_token);
CREATE INDEX c2d_messages_locked_until ON c2d_messages (locked_until);

CREATE TABLE c2d_feedback (
  seq ${d.serial},
  original_message_id TEXT NOT NULL,
  device_generation_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  enqueued_time_utc TEXT NOT NULL,
  status_code TEXT NOT NULL,
  description TEXT NOT NULL,
  created ${d.id} NOT NULL
);
CREATE INDEX c2d_feedback_created ON c2d_feedback (created);
`;
}
