/**
 * A device message as it enters the partitioned log, whatever the transport: application and system
 * properties, the hub's stamps (wire doc §3.3: iothub-connection-device-id, -module-id,
 * -auth-method, -auth-generation-id, iothub-enqueuedtime; dt-dataschema, the model id an IoT Plug and
 * Play device announced), and the 256 KB limit (§9.1). A device sets `tracestate` (distributed
 * tracing) and `dt-subject` (its component) as system properties; they travel with the message.
 */
import type { DeviceIdentity } from '../../auth/device-authenticator.js';
import { HubError } from '../../core/errors.js';
import type { LogMessage } from '../../log/log-ports.js';

export const MAX_MESSAGE_BYTES = 256 * 1024;

/** Body + system property values + application property names and values. */
export function messageSize(body: Buffer, system: Record<string, string>, app: Record<string, string>): number {
  let n = body.length;
  for (const v of Object.values(system)) n += Buffer.byteLength(v);
  for (const [k, v] of Object.entries(app)) n += Buffer.byteLength(k) + Buffer.byteLength(v);
  return n;
}

export function telemetryEvent(
  identity: DeviceIdentity,
  body: Buffer,
  system: Record<string, string>,
  app: Record<string, string>,
  now: string,
  limit = MAX_MESSAGE_BYTES,
  /** The model id the device announced when it connected (IoT Plug and Play): the message's `dt-dataschema`. */
  modelId?: string,
): LogMessage {
  if (messageSize(body, system, app) > limit) {
    throw new HubError('MessageTooLarge', `The message is larger than ${limit} bytes.`);
  }
  const stamped: Record<string, string> = {
    ...system,
    'iothub-connection-device-id': identity.deviceId,
    'iothub-connection-auth-method': identity.authMethodStamp,
    'iothub-connection-auth-generation-id': identity.generationId,
    'iothub-enqueuedtime': now,
    'iothub-message-source': 'Telemetry',
  };
  if (identity.moduleId !== null) stamped['iothub-connection-module-id'] = identity.moduleId;
  if (modelId !== undefined) stamped['dt-dataschema'] = modelId;
  return { deviceId: identity.deviceId, moduleId: identity.moduleId, body, properties: app, systemProperties: stamped };
}
