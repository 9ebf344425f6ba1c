import type { SchemaDialect } from './dialect.js';

/** Schema version 5: persistent MQTT sessions (subscriptions per client id). */
export function schemaV5(d: SchemaDialect): string {
  return `
CREATE TABLE mqtt_sessions (
  client_id ${d.id} PRIMARY KEY,
  subscriptions TEXT NOT NULL,
  updated TEXT NOT NULL
);
`;
}
