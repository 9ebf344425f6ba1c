import { newEtag } from './ids.js';
import type { TwinState } from './types.js';

/** A new identity's twin: empty sections at version 1. */
export function emptyTwin(deviceId: string, moduleId: string | null, now: string): TwinState {
  return {
    deviceId,
    moduleId,
    etag: newEtag(),
    version: 1,
    tags: {},
    desired: {},
    desiredMeta: { $lastUpdated: now, $lastUpdatedVersion: 1 },
    desiredVersion: 1,
    reported: {},
    reportedMeta: { $lastUpdated: now },
    reportedVersion: 1,
    modelId: '',
  };
}
