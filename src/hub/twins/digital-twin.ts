/**
 * IoT Plug and Play digital twins [DOCS: Understand IoT Plug and Play digital twins; Manage IoT
 * Plug and Play digital twins]: a view of the device twin, and JSON Patch updates of its desired
 * properties. No model is resolved: like IoT Hub, the twin's own markers decide.
 *
 * - A component is an object marked `"__t": "c"` in the reported or desired properties; the
 *   digital twin shows it as an object with its own `$metadata`.
 * - A reported writable property acknowledgement `{ "value", "ac", "av", "ad" }` shows as its
 *   value, with `ackCode`, `ackVersion`, `ackDescription` in `$metadata`; a desired value shows as
 *   `desiredValue` and `desiredVersion` there; `lastUpdateTime` is when the device last reported it.
 * - `$metadata.$model` is the model id the device announced when it connected.
 *
 * Update: `add`/`replace`/`remove` on `/{property}`, `/{component}/{property}` or `/{component}`
 * (a component value carries the empty `"$metadata": {}` marker; adding or replacing one clears
 * the desired values its value leaves out). Names follow DTDL v2 (letters, digits, underscore; 1-64;
 * not starting with a digit or underscore, not ending with an underscore); values are DTDL property
 * values: no arrays, objects at most five levels deep.
 */
import { HubError } from '../../core/errors.js';
import { isJsonObject, type JsonObject, type JsonValue } from '../../core/json.js';
import { printable } from '../../core/ids.js';
import type { TwinState } from '../../core/types.js';

const COMPONENT_MARKER = '__t';
const DTDL_NAME = /^[A-Za-z](?:[A-Za-z0-9_]{0,62}[A-Za-z0-9])?$/;
const MAX_VALUE_DEPTH = 5;
export const MAX_PATCH_OPERATIONS = 100;

function isComponent(v: JsonValue | undefined): v is JsonObject {
  return isJsonObject(v) && v[COMPONENT_MARKER] === 'c';
}

function skipped(key: string): boolean {
  return key.startsWith('$') || key === COMPONENT_MARKER;
}

function lastUpdated(meta: JsonValue | undefined): string | undefined {
  return isJsonObject(meta) && typeof meta.$lastUpdated === 'string' ? meta.$lastUpdated : undefined;
}

function section(v: JsonValue | undefined): JsonObject {
  return isJsonObject(v) ? v : {};
}

/** The properties and `$metadata` of one level of the digital twin: its root or a component. */
function renderLevel(reported: JsonObject, reportedMeta: JsonObject, desired: JsonObject, desiredMeta: JsonObject, desiredVersion: number, root: boolean): JsonObject {
  const out: JsonObject = {};
  const metadata: JsonObject = {};
  for (const [key, value] of Object.entries(reported)) {
    if (skipped(key) || (root && isComponent(value))) continue;
    const m: JsonObject = {};
    if (isJsonObject(value) && 'value' in value && typeof value.ac === 'number') {
      out[key] = value.value as JsonValue;
      m.ackCode = value.ac;
      if (typeof value.av === 'number') m.ackVersion = value.av;
      if (typeof value.ad === 'string') m.ackDescription = value.ad;
    } else {
      out[key] = value;
    }
    const at = lastUpdated(reportedMeta[key]);
    if (at !== undefined) m.lastUpdateTime = at;
    metadata[key] = m;
  }
  for (const [key, value] of Object.entries(desired)) {
    if (skipped(key) || (root && isComponent(value))) continue;
    const meta = desiredMeta[key];
    const version = isJsonObject(meta) && typeof meta.$lastUpdatedVersion === 'number' ? meta.$lastUpdatedVersion : desiredVersion;
    metadata[key] = { ...section(metadata[key]), desiredValue: value, desiredVersion: version };
  }
  out.$metadata = metadata;
  return out;
}

/** The digital twin of a device, from its twin. */
export function renderDigitalTwin(twin: TwinState): JsonObject {
  const rootLevel = renderLevel(twin.reported, twin.reportedMeta, twin.desired, twin.desiredMeta, twin.desiredVersion, true);
  const { $metadata, ...rootProperties } = rootLevel;
  const doc: JsonObject = { $dtId: twin.deviceId, ...rootProperties };
  const components = new Set([...Object.keys(twin.reported), ...Object.keys(twin.desired)].filter((k) => !skipped(k) && (isComponent(twin.reported[k]) || isComponent(twin.desired[k]))));
  for (const c of components) {
    const r = twin.reported[c];
    const d = twin.desired[c];
    const reported = isComponent(r) ? r : {};
    const desired = isComponent(d) ? d : {};
    doc[c] = renderLevel(reported, section(twin.reportedMeta[c]), desired, section(twin.desiredMeta[c]), twin.desiredVersion, false);
  }
  doc.$metadata = { ...(twin.modelId === '' ? {} : { $model: twin.modelId }), ...section($metadata) };
  return doc;
}

// ---- update: JSON Patch → a desired-properties patch ------------------------------------------

export interface DigitalTwinOperation {
  op: 'add' | 'replace' | 'remove';
  /** `[property]`, `[component]` or `[component, property]`. */
  path: string[];
  value?: JsonValue;
}

function invalid(message: string): HubError {
  return new HubError('ArgumentInvalid', message);
}

export function checkDtdlName(name: string, what: string): void {
  if (!DTDL_NAME.test(name)) {
    throw invalid(`The ${what} name '${printable(name)}' is not a DTDL name: 1-64 letters, digits or underscores, starting with a letter and not ending with an underscore.`);
  }
}

function checkValue(v: JsonValue, where: string, depth: number): void {
  if (Array.isArray(v)) throw invalid(`${where}: digital twin property values cannot hold arrays.`);
  if (!isJsonObject(v)) return;
  if (depth > MAX_VALUE_DEPTH) throw invalid(`${where} is nested deeper than ${MAX_VALUE_DEPTH} levels.`);
  for (const [k, child] of Object.entries(v)) {
    checkDtdlName(k, 'field');
    checkValue(child, `${where}/${k}`, depth + 1);
  }
}

/** RFC 6901 reference tokens. */
function pointer(path: string): string[] {
  if (!path.startsWith('/')) throw invalid(`The patch path '${printable(path)}' does not start with '/'.`);
  return path.slice(1).split('/').map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** The request body of `PATCH /digitaltwins/{id}`: a JSON Patch (RFC 6902) of add, replace and remove operations. */
export function parseDigitalTwinPatch(body: unknown): DigitalTwinOperation[] {
  if (!Array.isArray(body) || body.length === 0) throw invalid('The body must be a non-empty JSON Patch array of operations.');
  if (body.length > MAX_PATCH_OPERATIONS) throw invalid(`A digital twin patch holds at most ${MAX_PATCH_OPERATIONS} operations.`);
  return body.map((raw: unknown, i) => {
    if (!isJsonObject(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string') throw invalid(`Operation ${i} must be an object with op and path.`);
    const { op } = raw;
    if (op !== 'add' && op !== 'replace' && op !== 'remove') throw invalid(`Operation ${i}: '${printable(op)}' is not supported; use add, replace or remove.`);
    const path = pointer(raw.path);
    if (path.length > 2) throw invalid(`Operation ${i}: the path '${printable(raw.path)}' is deeper than /{component}/{property}.`);
    path.forEach((seg, j) => {
      if (j === 0 && seg === '$metadata') throw invalid(`Operation ${i}: $metadata is read-only.`);
      checkDtdlName(seg, path.length === 2 && j === 0 ? 'component' : 'property');
    });
    if (op === 'remove') return { op, path };
    if (!('value' in raw)) throw invalid(`Operation ${i}: ${op} needs a value.`);
    const value = raw.value as JsonValue;
    if (path.length === 1 && isJsonObject(value) && '$metadata' in value) {
      // A component: the empty marker, then its properties.
      const { $metadata: marker, ...props } = value;
      if (!isJsonObject(marker) || Object.keys(marker).length > 0) throw invalid(`Operation ${i}: a component's $metadata marker must be an empty object.`);
      for (const [k, v] of Object.entries(props)) {
        checkDtdlName(k, 'property');
        checkValue(v, `${raw.path}/${k}`, 1);
      }
      return { op, path, value: { ...props, $metadata: {} } };
    }
    checkValue(value, raw.path, 1);
    return { op, path, value };
  });
}

/** A value that replaces `current` under the twin's merge (twin-patch.ts): the keys it leaves out go. */
function replacing(value: JsonValue, current: JsonValue | undefined): JsonValue {
  if (!isJsonObject(value) || !isJsonObject(current)) return value;
  const out: JsonObject = {};
  for (const k of Object.keys(current)) if (!(k in value) && !k.startsWith('$')) out[k] = null;
  for (const [k, v] of Object.entries(value)) out[k] = replacing(v, current[k]);
  return out;
}

/**
 * The desired-properties patch the operations make, given the twin's current desired and reported
 * properties (which tell components from properties: see the file comment).
 */
export function desiredPatchFor(ops: readonly DigitalTwinOperation[], desired: JsonObject, reported: JsonObject): JsonObject {
  const patch: JsonObject = {};
  const known = (name: string) => name in desired || name in reported;
  const componentNamed = (name: string) => isComponent(desired[name]) || isComponent(reported[name]);
  /** The patch of a component: a fresh marker, or (after a removal in this patch) the removal of each current desired value. */
  const componentPatch = (name: string): JsonObject => {
    const cur = patch[name];
    if (isJsonObject(cur)) return cur;
    const fresh: JsonObject = { [COMPONENT_MARKER]: 'c' };
    const current = desired[name];
    if (cur === null && isComponent(current)) for (const k of Object.keys(current)) if (!skipped(k)) fresh[k] = null;
    patch[name] = fresh;
    return fresh;
  };
  for (const { op, path, value } of ops) {
    const [first, second] = path as [string, string | undefined];
    if (second === undefined) {
      if (op === 'remove') {
        patch[first] = null;
        continue;
      }
      if (isJsonObject(value) && '$metadata' in value) {
        // Add or replace a component: the values given, and the removal of every other desired value.
        const { $metadata: _marker, ...props } = value;
        const next: JsonObject = { [COMPONENT_MARKER]: 'c' };
        const existing = desired[first];
        const current = isComponent(existing) ? existing : {};
        for (const k of Object.keys(current)) if (!skipped(k)) next[k] = null;
        for (const [k, v] of Object.entries(props)) next[k] = replacing(v, current[k]);
        patch[first] = next;
        continue;
      }
      if (componentNamed(first)) throw invalid(`'${first}' is a component: its value needs the empty "$metadata": {} marker.`);
      patch[first] = replacing(value as JsonValue, desired[first]);
      continue;
    }
    // `/{name}/{property}`: a component's property, unless the name is a root property of the twin
    // (then a field of that complex property).
    if (!componentNamed(first) && known(first)) {
      const cur = patch[first];
      const target: JsonObject = isJsonObject(cur) ? cur : {};
      target[second] = op === 'remove' ? null : replacing(value as JsonValue, section(desired[first])[second]);
      patch[first] = target;
      continue;
    }
    componentPatch(first)[second] = op === 'remove' ? null : replacing(value as JsonValue, section(desired[first])[second]);
  }
  return patch;
}
