/**
 * IoT Edge scopes [DOCS: How an IoT Edge device can be used as a gateway; Create a parent-child
 * relationship]: an edge device owns a device scope `ms-azure-iot-edge://{deviceId}-{generationId}`
 * that the hub generates; a child (a leaf device or a nested edge device) names its parent by that
 * scope. A leaf device's `deviceScope` is its parent's scope and its `parentScopes` is that one
 * scope; a nested edge device keeps its own scope and lists its parent in `parentScopes`. A scope
 * must name an existing edge device: anything else is refused, so a device cannot claim a parent
 * that does not exist (the SDKs' registry e2e test changes a scope to a random value and expects
 * the update to fail).
 */
import { HubError } from '../../core/errors.js';
import { printable } from '../../core/ids.js';
import type { DeviceRecord } from '../../core/types.js';

export const EDGE_SCOPE_PREFIX = 'ms-azure-iot-edge://';

export function edgeScope(deviceId: string, generationId: string): string {
  return `${EDGE_SCOPE_PREFIX}${deviceId}-${generationId}`;
}

/** The device id a scope names, or undefined when it is not an edge scope. */
function scopeOwner(scope: string): string | undefined {
  if (!scope.startsWith(EDGE_SCOPE_PREFIX)) return undefined;
  const rest = scope.slice(EDGE_SCOPE_PREFIX.length);
  const dash = rest.lastIndexOf('-');
  return dash <= 0 ? undefined : rest.slice(0, dash);
}

export interface ScopeRequest {
  deviceId: string;
  generationId: string;
  iotEdge: boolean;
  /** What the caller asked for (after the fallback to the stored values on an update). */
  deviceScope: string | null;
  parentScopes: string[];
}

/**
 * The scopes a device gets. `lookup` reads a device by id (undefined when there is none); every
 * scope the caller names is checked against the edge device it names.
 */
export async function resolveScopes(
  req: ScopeRequest,
  lookup: (deviceId: string) => Promise<DeviceRecord | undefined>,
): Promise<{ deviceScope: string | null; parentScopes: string[] }> {
  const own = edgeScope(req.deviceId, req.generationId);
  const checkParent = async (scope: string, field: string): Promise<void> => {
    const owner = scopeOwner(scope);
    if (owner === req.deviceId) throw new HubError('ArgumentInvalid', `A device cannot be its own parent (${field}).`);
    const parent = owner === undefined ? undefined : await lookup(owner);
    if (parent === undefined || !parent.iotEdge || parent.deviceScope !== scope) {
      throw new HubError('ArgumentInvalid', `${field} '${printable(scope, 200)}' does not name an existing IoT Edge device.`);
    }
  };
  if (req.parentScopes.length > 1) throw new HubError('ArgumentInvalid', 'parentScopes may name at most one parent.');
  if (req.iotEdge) {
    // An edge device's own scope is the hub's to generate; a value sent back unchanged is fine.
    for (const p of req.parentScopes) await checkParent(p, 'parentScopes');
    return { deviceScope: own, parentScopes: req.parentScopes };
  }
  if (req.deviceScope === null || req.deviceScope === '') {
    if (req.parentScopes.length > 0) throw new HubError('ArgumentInvalid', "A leaf device's parentScopes must be its deviceScope.");
    return { deviceScope: null, parentScopes: [] };
  }
  await checkParent(req.deviceScope, 'deviceScope');
  const parent = req.parentScopes[0];
  if (parent !== undefined && parent !== req.deviceScope) throw new HubError('ArgumentInvalid', "A leaf device's parentScopes must be its deviceScope.");
  return { deviceScope: req.deviceScope, parentScopes: [req.deviceScope] };
}
