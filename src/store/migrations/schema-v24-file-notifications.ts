import type { SchemaDialect } from './dialect.js';

/**
 * Schema version 24: file upload notifications (issue 18 item 3), one row per completed upload,
 * handed to the service's receivers by a shared queue over their seq (hub/shared-queue.ts).
 */
export function schemaV24(d: SchemaDialect): string {
  return `
CREATE TABLE file_notifications (
  seq ${d.serial},
  device_id ${d.id} NOT NULL,
  body TEXT NOT NULL,
  enqueued_at ${d.bigint} NOT NULL
);
CREATE INDEX file_notifications_enqueued ON file_notifications (enqueued_at);
`;
}
