/**
 * `$name` in a route condition → the wire name our messages carry the system property under
 * (LogMessage.systemProperties: src/hub/telemetry/telemetry-event.ts stamps the iothub-* ones, the
 * protocol adapters store the rest). Azure's routing query syntax documents `$contentType`,
 * `$contentEncoding`, `$connectionDeviceId`, `$connectionModuleId`, `$iothub-enqueuedtime`,
 * `$dt-dataschema`, `$dt-subject`; the other aliases follow the SDKs' MessageSystemPropertyNames.
 * Matching is case-insensitive (IoT Hub messaging is). A `$name` not in the table is read by its wire
 * name (`$iothub-connection-auth-method`, `$content-type`), and, as Azure does for application
 * properties whose name starts with `$`, from the application properties when the message has no
 * such system property.
 */
const ALIASES: ReadonlyMap<string, string> = new Map([
  ['contenttype', 'content-type'],
  ['contentencoding', 'content-encoding'],
  ['connectiondeviceid', 'iothub-connection-device-id'],
  ['connectionmoduleid', 'iothub-connection-module-id'],
  ['connectionauthmethod', 'iothub-connection-auth-method'],
  ['connectiondevicegenerationid', 'iothub-connection-auth-generation-id'],
  ['enqueuedtime', 'iothub-enqueuedtime'],
  ['messageid', 'message-id'],
  ['correlationid', 'correlation-id'],
  ['userid', 'user-id'],
  ['to', 'to'],
  ['expirytimeutc', 'absolute-expiry-time'],
  ['absoluteexpirytime', 'absolute-expiry-time'],
  ['creationtimeutc', 'creation-time'],
  ['messagesource', 'iothub-message-source'],
  ['interfacename', 'iothub-interface-name'],
  ['interfaceid', 'iothub-interface-id'],
  ['outputname', 'iothub-outputname'],
  ['dataschema', 'dt-dataschema'],
  ['subject', 'dt-subject'],
]);

/** `contentType` (without the `$`) → `content-type`; an unknown name → itself, lower-cased. */
export function systemWireName(name: string): string {
  const lower = name.toLowerCase();
  return ALIASES.get(lower) ?? lower;
}
