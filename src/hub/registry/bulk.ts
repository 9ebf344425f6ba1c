/**
 * Bulk registry operations, `POST /devices` [DOCS REST: Bulk Registry - Update Registry]:
 * 1-100 ExportImportDevice entries, each applied on its own; the result lists the failures.
 * Import modes are matched case-insensitively (the Node SDK capitalizes some of them).
 */
import { HubError, isHubError } from '../../core/errors.js';
import { isJsonObject, type JsonObject } from '../../core/json.js';
import type { TwinService } from '../twins/twin-service.js';
import { HUB_ACTOR, type Actor, type RegistryService } from './registry-service.js';

export const MAX_BULK = 100;

const MODES = [
  'create',
  'update',
  'updateifmatchetag',
  'delete',
  'deleteifmatchetag',
  'createorupdate',
  'createorupdateifmatchetag',
  'updatetwin',
  'updatetwinifmatchetag',
] as const;
type Mode = (typeof MODES)[number];

export interface BulkError {
  deviceId: string;
  errorCode: string;
  errorStatus: string;
  operation: string;
}

export interface BulkResult {
  isSuccessful: boolean;
  errors: BulkError[];
  warnings: never[];
}

interface Entry {
  id: string;
  mode: Mode;
  eTag: string | undefined;
  twinETag: string | undefined;
  raw: JsonObject;
}

function parseEntries(raw: unknown): Entry[] {
  if (!Array.isArray(raw)) throw new HubError('ArgumentInvalid', 'The bulk request body must be a JSON array of devices.');
  if (raw.length === 0 || raw.length > MAX_BULK) {
    throw new HubError('ArgumentInvalid', `A bulk request holds 1 to ${MAX_BULK} devices, not ${raw.length}.`);
  }
  const seen = new Set<string>();
  return raw.map((item, i) => {
    if (!isJsonObject(item)) throw new HubError('ArgumentInvalid', `Bulk entry ${i} is not an object.`);
    const id = item.id ?? item.deviceId;
    if (typeof id !== 'string' || id === '') throw new HubError('ArgumentInvalid', `Bulk entry ${i} has no id.`);
    if (seen.has(id)) throw new HubError('DeviceDefinedMultipleTimes', `Device ${id} appears more than once in the request.`);
    seen.add(id);
    const modeRaw = typeof item.importMode === 'string' ? item.importMode.toLowerCase() : 'createorupdate';
    const mode = MODES.find((m) => m === modeRaw);
    if (mode === undefined) throw new HubError('ArgumentInvalid', `Bulk entry ${i} has an unknown importMode '${String(item.importMode)}'.`);
    const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v.replace(/^"|"$/g, '') : undefined);
    return { id, mode, eTag: str(item.eTag), twinETag: str(item.twinETag), raw: item };
  });
}

export async function applyBulk(raw: unknown, registry: RegistryService, twins: TwinService, by: Actor = HUB_ACTOR): Promise<BulkResult> {
  const entries = parseEntries(raw);
  const errors: BulkError[] = [];
  for (const e of entries) {
    try {
      await applyOne(e, registry, twins, by);
    } catch (err) {
      if (!isHubError(err)) throw err;
      errors.push({ deviceId: e.id, errorCode: err.code, errorStatus: err.message, operation: e.mode });
    }
  }
  return { isSuccessful: errors.length === 0, errors, warnings: [] };
}

function etagFor(e: Entry): string {
  if (e.eTag === undefined) throw new HubError('ArgumentInvalid', `Device ${e.id}: importMode ${e.mode} needs an eTag.`);
  return e.eTag;
}

async function applyOne(e: Entry, registry: RegistryService, twins: TwinService, by: Actor): Promise<void> {
  const device: JsonObject = { ...e.raw, deviceId: e.id };
  delete device.id;
  switch (e.mode) {
    case 'create':
      await registry.createDevice(e.id, device, by);
      await applyTwin(e, twins, undefined);
      return;
    case 'createorupdate':
    case 'createorupdateifmatchetag':
      try {
        await registry.createDevice(e.id, device, by);
      } catch (err) {
        if (!(isHubError(err) && err.code === 'DeviceAlreadyExists')) throw err;
        await registry.updateDevice(e.id, device, e.mode === 'createorupdate' ? '*' : etagFor(e), by);
      }
      await applyTwin(e, twins, undefined);
      return;
    case 'update':
      await registry.updateDevice(e.id, device, '*', by);
      await applyTwin(e, twins, undefined);
      return;
    case 'updateifmatchetag':
      await registry.updateDevice(e.id, device, etagFor(e), by);
      await applyTwin(e, twins, e.twinETag);
      return;
    case 'delete':
      await registry.deleteDevice(e.id, '*', by);
      return;
    case 'deleteifmatchetag':
      await registry.deleteDevice(e.id, etagFor(e), by);
      return;
    case 'updatetwin':
      await applyTwin(e, twins, undefined);
      return;
    case 'updatetwinifmatchetag':
      if (e.twinETag === undefined) throw new HubError('ArgumentInvalid', `Device ${e.id}: updateTwinIfMatchETag needs a twinETag.`);
      await applyTwin(e, twins, e.twinETag);
      return;
  }
}

async function applyTwin(e: Entry, twins: TwinService, ifMatch: string | undefined): Promise<void> {
  const patch: JsonObject = {};
  if (isJsonObject(e.raw.tags)) patch.tags = e.raw.tags;
  const props = e.raw.properties;
  if (isJsonObject(props) && isJsonObject(props.desired)) patch.properties = { desired: props.desired };
  if (Object.keys(patch).length === 0) return;
  await twins.patch(e.id, null, patch, ifMatch);
}
