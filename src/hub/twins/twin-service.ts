/**
 * Service-side twin reads and writes. Writes are read-modify-compare-and-swap: a caller's
 * If-Match is checked against the twin etag, and a concurrent writer makes the swap fail and the
 * loop retry (only when the caller did not pin an etag).
 */
import type { Clock } from '../../core/clock.js';
import { HubError } from '../../core/errors.js';
import { newEtag, newEtags } from '../../core/ids.js';
import { isJsonObject, type JsonObject } from '../../core/json.js';
import type { DeviceRecord, ModuleRecord, TwinState } from '../../core/types.js';
import type { DeviceRegistryStore, ModuleRegistryStore, TwinStore } from '../../store/ports.js';
import { SUBJECTS, type HubBus, type TwinsChanged } from '../../bus/subjects.js';
import type { MessageTally } from '../../core/tally.js';
import { renderTwin } from './twin-document.js';
import { checkSectionSize, clone, mergeInto, validatePatch } from './twin-patch.js';
import type { SourceEventSink } from '../../routing/routed-events.js';
import { twinChangeEvent, type TwinChange } from '../../routing/source-events.js';


type Stores = DeviceRegistryStore & ModuleRegistryStore & TwinStore;

const MAX_ATTEMPTS = 8;

/** A stored desired patch goes out on the bus (`twin.desired.changed`) to the node holding the identity's session. */
export class TwinService {
  #events: SourceEventSink | undefined;

  constructor(
    private readonly store: Stores,
    private readonly clock: Clock,
    private readonly bus: HubBus,
    private readonly tally: MessageTally,
  ) {}

  /** Twin change events for routes on TwinChangeEvents (routing/routed-events.ts). */
  routeEventsTo(events: SourceEventSink): void {
    this.#events = events;
  }

  #changed(deviceId: string, moduleId: string | null, change: TwinChange): void {
    this.bus.publish(SUBJECTS.twinChanged, { deviceId, moduleId });
    this.#changeEvent(deviceId, moduleId, change);
  }

  #changeEvent(deviceId: string, moduleId: string | null, change: TwinChange): void {
    const events = this.#events;
    events?.emit('TwinChangeEvents', () => twinChangeEvent({ hubName: events.hubName, deviceId, moduleId, now: new Date(this.clock.now()).toISOString() }, change));
  }

  async get(deviceId: string, moduleId: string | null): Promise<JsonObject> {
    const { twin, device, module } = await this.#load(deviceId, moduleId);
    return renderTwin(twin, device, module);
  }

  /**
   * PATCH: merge tags and desired properties. Like Azure, every accepted patch is a new twin
   * version, and one with desired properties raises the desired `$version` and reaches the
   * device even when it repeats the values it already has (the SDKs' twin e2e tests count on it).
   */
  async patch(deviceId: string, moduleId: string | null, body: unknown, ifMatch: string | undefined): Promise<JsonObject> {
    const parsed = parseTwinBody(body, 'patch');
    let applied: AppliedPatch = { desiredPatch: undefined };
    return this.#write(deviceId, moduleId, ifMatch, (twin) => patchChange(twin, applied), (next, now) => {
      applied = applyPatch(next, now, parsed);
      return { changed: parsed.tags !== undefined || parsed.desired !== undefined, desiredPatch: applied.desiredPatch };
    });
  }

  /**
   * The same PATCH on many device twins (a twin-update job's batch), as patch() without If-Match
   * does it one by one but with one read of the batch's twins and one transaction for their writes,
   * each still a compare-and-swap on its etag. Every twin written is announced as patch() announces
   * it (a twin change event; what `twin.changed` and `twin.desired.changed` say, for the whole batch
   * in one `twins.changed`); one
   * whose etag moved in between goes through patch() alone. Answers, per device, the error it
   * failed with (absent: done).
   */
  async patchDevices(deviceIds: readonly string[], body: unknown): Promise<Map<string, unknown>> {
    const failed = new Map<string, unknown>();
    const parsed = parseTwinBody(body, 'patch');
    if (parsed.tags === undefined && parsed.desired === undefined) return failed;
    const found = new Map((await this.store.getDeviceTwins(deviceIds)).map((t) => [t.deviceId, t]));
    const now = new Date(this.clock.now()).toISOString();
    const etags = newEtags(found.size);
    const writes: { twin: TwinState; expectedEtag: string; applied: AppliedPatch }[] = [];
    for (const deviceId of deviceIds) {
      const twin = found.get(deviceId);
      if (twin === undefined) {
        failed.set(deviceId, new HubError('DeviceNotFound', `Device ${deviceId} not found`));
        continue;
      }
      try {
        // The twin was just parsed from the store: it is ours to change in place.
        const expectedEtag = twin.etag;
        const applied = applyPatch(twin, now, parsed);
        checkSectionSize('tags', twin.tags);
        checkSectionSize('properties.desired', twin.desired);
        twin.etag = etags[writes.length] ?? newEtag();
        twin.version += 1;
        writes.push({ twin, expectedEtag, applied });
      } catch (err) {
        failed.set(deviceId, err);
      }
    }
    const made = await this.store.writeServiceSections(writes);
    const retry: string[] = [];
    const changed: TwinsChanged['twins'] = [];
    writes.forEach((w, i) => {
      const { deviceId } = w.twin;
      if (made[i] !== true) return void retry.push(deviceId);
      this.#changeEvent(deviceId, null, patchChange(w.twin, w.applied));
      changed.push(w.applied.desiredPatch === undefined ? { deviceId, moduleId: null } : { deviceId, moduleId: null, desired: w.applied.desiredPatch });
    });
    if (changed.length > 0) this.bus.publish(SUBJECTS.twinsChanged, { twins: changed });
    for (const deviceId of retry) await this.patch(deviceId, null, body, undefined).catch((err: unknown) => failed.set(deviceId, err));
    return failed;
  }

  /** PUT: replace tags and/or desired properties wholesale. */
  async replace(deviceId: string, moduleId: string | null, body: unknown, ifMatch: string | undefined): Promise<JsonObject> {
    const { tags, desired } = parseTwinBody(body, 'replace');
    return this.#write(deviceId, moduleId, ifMatch, (twin) => ({ opType: 'replaceTwin', twin }), (next, now) => {
      let desiredPatch: JsonObject | undefined;
      if (tags !== undefined) next.tags = stripSystem(tags);
      if (desired !== undefined) {
        const version = next.desiredVersion + 1;
        const removed: JsonObject = {};
        for (const k of Object.keys(next.desired)) if (!(k in desired)) removed[k] = null;
        next.desired = {};
        next.desiredMeta = { $lastUpdated: now, $lastUpdatedVersion: version };
        mergeInto(next.desired, next.desiredMeta, desired, now, version);
        next.desiredVersion = version;
        desiredPatch = { ...removed, ...stripSystem(desired), $version: version };
      }
      return { changed: true, desiredPatch };
    });
  }

  /**
   * The automatic configurations' write (hub/configurations/): `decide` sees the twin document as
   * stored and answers the twin's `configurations` section and the desired patch of the winning
   * configuration (undefined: none). The twin is written only when either changes anything; a
   * desired change raises `$version` and reaches the device like a service patch. Returns the
   * twin document after the write (or as it was).
   */
  async applyConfigurations(deviceId: string, moduleId: string | null, decide: (doc: JsonObject) => { configurations: JsonObject; desired: JsonObject | undefined }): Promise<JsonObject> {
    let applied: JsonObject | undefined;
    const change = (twin: TwinState): TwinChange => ({ opType: 'updateTwin', twin, ...(applied === undefined ? {} : { desired: applied }) });
    return this.#write(deviceId, moduleId, undefined, change, (next, now, doc) => {
      applied = undefined;
      const decision = decide(doc());
      let changed = JSON.stringify(decision.configurations) !== JSON.stringify(next.configurations ?? {});
      next.configurations = decision.configurations;
      let desiredPatch: JsonObject | undefined;
      const patch = decision.desired;
      if (patch !== undefined && mergeInto(clone(next.desired), clone(next.desiredMeta), patch, now, undefined)) {
        const version = next.desiredVersion + 1;
        mergeInto(next.desired, next.desiredMeta, patch, now, version);
        next.desiredVersion = version;
        applied = patch;
        desiredPatch = { ...stripSystem(patch), $version: version };
        changed = true;
      }
      return { changed, desiredPatch };
    });
  }

  /** The twin as stored (the digital twin renders it: digital-twin.ts). */
  async state(deviceId: string, moduleId: string | null): Promise<TwinState> {
    return (await this.#load(deviceId, moduleId)).twin;
  }

  /**
   * A desired patch computed from the twin as stored, under the caller's If-Match: the digital
   * twin's JSON Patch (digital-twin.ts). Written and delivered like a service PATCH.
   */
  async patchDesired(deviceId: string, moduleId: string | null, ifMatch: string | undefined, build: (twin: TwinState) => JsonObject): Promise<JsonObject> {
    let applied: JsonObject | undefined;
    const change = (twin: TwinState): TwinChange => ({ opType: 'updateTwin', twin, ...(applied === undefined ? {} : { desired: applied }) });
    return this.#write(deviceId, moduleId, ifMatch, change, (next, now) => {
      const patch = (applied = validatePatch('properties.desired', build(next)));
      const version = next.desiredVersion + 1;
      mergeInto(next.desired, next.desiredMeta, patch, now, version);
      next.desiredVersion = version;
      return { changed: true, desiredPatch: { ...stripSystem(patch), $version: version } };
    });
  }

  /**
   * The model id a device or module announced when it connected (IoT Plug and Play): kept in the
   * twin's `modelId` until it announces another. Not a twin version: tags and properties are as
   * they were; the etag moves, as for any write of the twin document.
   */
  async announceModel(deviceId: string, moduleId: string | null, modelId: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const twin = await this.store.getTwin(deviceId, moduleId);
      if (twin === undefined || twin.modelId === modelId) return;
      try {
        await this.store.replaceTwin({ ...twin, modelId, etag: newEtag() }, twin.etag);
        this.bus.publish(SUBJECTS.twinChanged, { deviceId, moduleId });
        return;
      } catch (err) {
        if (err instanceof HubError && err.code === 'PreconditionFailed' && attempt < MAX_ATTEMPTS) continue;
        throw err;
      }
    }
  }

  /** The twin as a device reads it over MQTT (wire doc §3.6): desired and reported with versions. */
  async deviceView(deviceId: string, moduleId: string | null): Promise<JsonObject> {
    const { twin } = await this.#load(deviceId, moduleId);
    return {
      desired: { ...twin.desired, $version: twin.desiredVersion },
      reported: { ...twin.reported, $version: twin.reportedVersion },
    };
  }

  /** A device's reported-properties patch. Returns the new reported `$version`. */
  async updateReported(deviceId: string, moduleId: string | null, patch: unknown): Promise<number> {
    const valid = validatePatch('properties.reported', patch);
    for (let attempt = 1; ; attempt++) {
      const { twin } = await this.#load(deviceId, moduleId);
      const now = new Date(this.clock.now()).toISOString();
      const next: TwinState = { ...twin, reported: clone(twin.reported), reportedMeta: clone(twin.reportedMeta) };
      mergeInto(next.reported, next.reportedMeta, valid, now, undefined);
      checkSectionSize('properties.reported', next.reported);
      next.reportedVersion = twin.reportedVersion + 1;
      next.version = twin.version + 1;
      next.etag = newEtag();
      try {
        await this.store.replaceTwin(next, twin.etag);
        this.#changed(deviceId, moduleId, { opType: 'updateTwin', twin: next, reported: valid as JsonObject });
        this.tally.twinIn++;
        return next.reportedVersion;
      } catch (err) {
        if (err instanceof HubError && err.code === 'PreconditionFailed' && attempt < MAX_ATTEMPTS) continue;
        throw err;
      }
    }
  }

  async #write(
    deviceId: string,
    moduleId: string | null,
    ifMatch: string | undefined,
    change: (twin: TwinState) => TwinChange,
    apply: (next: TwinState, now: string, doc: () => JsonObject) => { changed: boolean; desiredPatch: JsonObject | undefined },
  ): Promise<JsonObject> {
    const pinned = ifMatch !== undefined && ifMatch !== '*';
    for (let attempt = 1; ; attempt++) {
      const { twin, device, module } = await this.#load(deviceId, moduleId);
      if (pinned && ifMatch !== twin.etag) {
        throw new HubError('PreconditionFailed', 'The twin etag does not match; it was changed by someone else.');
      }
      const now = new Date(this.clock.now()).toISOString();
      const next: TwinState = {
        ...twin,
        tags: clone(twin.tags),
        desired: clone(twin.desired),
        desiredMeta: clone(twin.desiredMeta),
      };
      const { changed, desiredPatch } = apply(next, now, () => renderTwin(twin, device, module));
      if (!changed) return renderTwin(twin, device, module);
      checkSectionSize('tags', next.tags);
      checkSectionSize('properties.desired', next.desired);
      next.etag = newEtag();
      next.version = twin.version + 1;
      try {
        await this.store.replaceTwin(next, twin.etag);
      } catch (err) {
        if (err instanceof HubError && err.code === 'PreconditionFailed' && !pinned && attempt < MAX_ATTEMPTS) continue;
        throw err;
      }
      this.#changed(deviceId, moduleId, change(next));
      if (desiredPatch !== undefined) this.bus.publish(SUBJECTS.desiredChanged, { deviceId, moduleId, patch: desiredPatch });
      return renderTwin(next, device, module);
    }
  }

  async #load(deviceId: string, moduleId: string | null): Promise<{ twin: TwinState; device: DeviceRecord; module?: ModuleRecord }> {
    const device = await this.store.getDevice(deviceId);
    if (device === undefined) throw new HubError('DeviceNotFound', `Device ${deviceId} not found`);
    let module: ModuleRecord | undefined;
    if (moduleId !== null) {
      module = await this.store.getModule(deviceId, moduleId);
      if (module === undefined) throw new HubError('ModuleNotFound', `Module ${moduleId} on device ${deviceId} not found`);
    }
    const twin = await this.store.getTwin(deviceId, moduleId);
    if (twin === undefined) throw new HubError('DeviceNotFound', `Device ${deviceId} not found`);
    return module === undefined ? { twin, device } : { twin, device, module };
  }
}

type ParsedPatch = { tags?: JsonObject | 'clear'; desired?: JsonObject | 'clear' };

/** A PATCH as applied to one twin: the sections as merged (a `null` section spelled out as its keys' removal) and the desired patch for the device. */
interface AppliedPatch {
  tags?: JsonObject;
  desired?: JsonObject;
  desiredPatch: JsonObject | undefined;
}

/** Merges a parsed PATCH into `next` (changed in place); a desired patch raises the desired `$version`. */
function applyPatch(next: TwinState, now: string, { tags, desired }: ParsedPatch): AppliedPatch {
  const out: AppliedPatch = { desiredPatch: undefined };
  if (tags !== undefined) mergeInto(next.tags, {}, (out.tags = clearing(tags, next.tags)), now, undefined);
  if (desired !== undefined) {
    const version = next.desiredVersion + 1;
    const patch = (out.desired = clearing(desired, next.desired));
    mergeInto(next.desired, next.desiredMeta, patch, now, version);
    next.desiredVersion = version;
    out.desiredPatch = { ...stripSystem(patch), $version: version };
  }
  return out;
}

function patchChange(twin: TwinState, applied: AppliedPatch): TwinChange {
  return { opType: 'updateTwin', twin, ...(applied.tags === undefined ? {} : { tags: applied.tags }), ...(applied.desired === undefined ? {} : { desired: applied.desired }) };
}

function stripSystem(o: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(o)) if (!k.startsWith('$')) out[k] = v;
  return out;
}

/**
 * `{ tags?, properties?: { desired? } }`; reported properties belong to the device. In a PATCH a
 * section set to `null` removes every property in it (the SDKs' "null out all desired
 * properties"), which is the same patch as naming each current key with `null`.
 */
function parseTwinBody(body: unknown, mode: 'replace'): { tags?: JsonObject; desired?: JsonObject };
function parseTwinBody(body: unknown, mode: 'patch'): ParsedPatch;
function parseTwinBody(body: unknown, mode: 'patch' | 'replace'): { tags?: JsonObject | 'clear'; desired?: JsonObject | 'clear' } {
  if (!isJsonObject(body)) throw new HubError('ArgumentInvalid', 'The twin patch must be a JSON object.');
  const out: { tags?: JsonObject | 'clear'; desired?: JsonObject | 'clear' } = {};
  if (body.tags === null && mode === 'patch') out.tags = 'clear';
  else if (body.tags !== undefined && body.tags !== null) out.tags = validatePatch('tags', body.tags);
  const props = body.properties;
  if (props !== undefined && props !== null) {
    if (!isJsonObject(props)) throw new HubError('ArgumentInvalid', 'properties must be a JSON object.');
    if (props.reported !== undefined && props.reported !== null) {
      throw new HubError('ArgumentInvalid', 'Reported properties can only be set by the device.');
    }
    if (props.desired === null && mode === 'patch') out.desired = 'clear';
    else if (props.desired !== undefined && props.desired !== null) {
      out.desired = validatePatch('properties.desired', props.desired);
    }
  }
  return out;
}

/** `clear` as the patch that removes every current key. */
function clearing(section: JsonObject | 'clear', current: JsonObject): JsonObject {
  if (section !== 'clear') return section;
  const out: JsonObject = {};
  for (const k of Object.keys(current)) out[k] = null;
  return out;
}
