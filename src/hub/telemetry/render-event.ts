/** A log record as the built-in endpoint's readers show it (`GET /events`, `gatehouse monitor-events`). */
import type { JsonObject, JsonValue } from '../../core/json.js';
import type { LogRecord } from '../../log/log-ports.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A body as monitor-events shows it: JSON when it parses, else text when UTF-8, else base64. */
export function renderPayload(body: Buffer): JsonValue {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    return { base64: body.toString('base64') };
  }
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    return text;
  }
}

/**
 * The SSE / monitor-events shape of a record: the device, where the record sits in the log
 * (partition, sequence number, offset: Event Hubs' positions) and what the device sent.
 */
export function renderEvent(r: LogRecord): JsonObject {
  return {
    deviceId: r.deviceId,
    ...(r.moduleId === null ? {} : { moduleId: r.moduleId }),
    partition: r.partition,
    sequenceNumber: r.sequenceNumber,
    offset: r.offset,
    enqueuedTime: r.enqueuedTime,
    payload: renderPayload(r.body),
    properties: { ...r.properties },
    systemProperties: { ...r.systemProperties },
  };
}
