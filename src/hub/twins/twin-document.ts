import type { JsonObject } from '../../core/json.js';
import type { DeviceRecord, ModuleRecord, TwinState } from '../../core/types.js';
import { NEVER } from '../../core/ids.js';

/** The twin as the service REST API returns it (wire doc §6.3, Appendix E). */
export function renderTwin(twin: TwinState, device: DeviceRecord, module?: ModuleRecord): JsonObject {
  const identity = module ?? device;
  const doc: JsonObject = { deviceId: twin.deviceId };
  if (module !== undefined) doc.moduleId = module.moduleId;
  Object.assign(doc, {
    etag: twin.etag,
    deviceEtag: identity.etag,
    status: device.status,
    statusReason: device.statusReason,
    statusUpdateTime: device.statusUpdatedTime === '' ? NEVER : device.statusUpdatedTime,
    connectionState: identity.connectionState,
    lastActivityTime: identity.lastActivityTime,
    cloudToDeviceMessageCount: identity.cloudToDeviceMessageCount,
    authenticationType: identity.auth.type,
    x509Thumbprint: {
      primaryThumbprint: identity.auth.primaryThumbprint,
      secondaryThumbprint: identity.auth.secondaryThumbprint,
    },
    modelId: twin.modelId,
    version: twin.version,
    tags: twin.tags,
    properties: {
      desired: { ...twin.desired, $metadata: twin.desiredMeta, $version: twin.desiredVersion },
      reported: { ...twin.reported, $metadata: twin.reportedMeta, $version: twin.reportedVersion },
    },
    capabilities: { iotEdge: device.iotEdge },
  } satisfies JsonObject);
  // Azure lists the automatic configurations that target the twin (configuration engine, hub/configurations/).
  if (twin.configurations !== undefined && Object.keys(twin.configurations).length > 0) doc.configurations = twin.configurations;
  if (module === undefined) {
    if (device.deviceScope !== null) doc.deviceScope = device.deviceScope;
    if (device.parentScopes.length > 0) doc.parentScopes = device.parentScopes;
  }
  return doc;
}
