/**
 * One line of `devices.txt`, the format of Azure's import and export jobs [DOCS: Import and export
 * IoT Hub device identities in bulk]: an ExportImportDevice (id, eTag, status, statusReason,
 * authentication, twinETag, tags, desired and reported properties without their metadata,
 * capabilities, deviceScope). Built from a device and its twin as the service API renders them, so
 * the hub's export job and `gatehouse device export` write the same lines.
 */
type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A property section without `$metadata`, `$version` and the other `$` keys. */
function withoutMeta(v: unknown): Json {
  if (!isObject(v)) return {};
  return Object.fromEntries(Object.entries(v).filter(([k]) => !k.startsWith('$')));
}

/** The line for `device` (GET /devices/{id}) and `twin` (GET /twins/{id}); keys nulled when `excludeKeys`. */
export function devicesTxtLine(device: Json, twin: Json, excludeKeys: boolean): string {
  const auth = { ...(isObject(device.authentication) ? device.authentication : {}) };
  if (excludeKeys && isObject(auth.symmetricKey)) auth.symmetricKey = { primaryKey: null, secondaryKey: null };
  const props = isObject(twin.properties) ? twin.properties : {};
  return JSON.stringify({
    id: device.deviceId,
    eTag: device.etag,
    status: device.status,
    statusReason: device.statusReason ?? null,
    authentication: auth,
    twinETag: twin.etag,
    tags: isObject(twin.tags) ? twin.tags : {},
    properties: { desired: withoutMeta(props.desired), reported: withoutMeta(props.reported) },
    capabilities: device.capabilities ?? { iotEdge: false },
    ...(typeof device.deviceScope === 'string' && device.deviceScope !== '' ? { deviceScope: device.deviceScope } : {}),
  });
}
