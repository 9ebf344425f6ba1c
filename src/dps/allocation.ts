/**
 * Which hub a registering device goes to [DOCS: How to use allocation policies; Use custom
 * allocation policies with DPS]. The candidates are the enrollment's `iotHubs` that are linked
 * (all linked hubs when it names none); the local hub is always linked.
 *
 * - `hashed` (the default): an evenly weighted hash of the registration id over the candidates,
 *   stable for a given id and independent of the order `iotHubs` lists them in.
 * - `geoLatency`: Azure picks the hub with the lowest latency to the device; a self-hosted service
 *   has one region, so this is `hashed`.
 * - `static`: the one hub `iotHubs` names (ArgumentInvalid unless exactly one linked hub).
 * - `custom`: POST the enrollment (without keys), the device's runtime context and the candidates
 *   to `customAllocationDefinition.webhookUrl`; the answer's `iotHubHostName` must be a linked
 *   hub, its `initialTwin` replaces the enrollment's, its `payload` goes back to the device.
 *
 * `reprovisionPolicy.updateHubAssignment: false` keeps a re-registering device on the hub it had.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { HubError } from '../core/errors.js';
import { isJsonObject, type JsonObject, type JsonValue } from '../core/json.js';

export interface LinkedHub {
  hostName: string;
  allocationWeight: number;
  /** An iothubowner/registryReadWrite connection string; absent for the local hub. */
  connectionString?: string;
}

/** The parts of an enrollment allocation reads (structurally the DPS service's types). */
export interface AllocationEnrollment {
  allocationPolicy?: string;
  iotHubs?: string[];
  customAllocationDefinition?: { webhookUrl: string; apiVersion?: string };
  reprovisionPolicy?: { updateHubAssignment?: boolean; migrateDeviceData?: boolean };
  initialTwin?: unknown;
  attestation?: { type: string };
}

export interface AllocationRequest {
  registrationId: string;
  enrollment: AllocationEnrollment;
  kind: 'individual' | 'group';
  /** The enrollment group's id when `kind` is 'group'. */
  groupId?: string;
  /** What the device sent as its provisioning payload. */
  payload?: JsonValue;
  /** The hub of the device's previous assignment, if any. */
  previousHub?: string;
  /** For `deviceRuntimeContext.x509` (X.509 attestation); symmetric-key devices send `{}`. */
  x509?: JsonObject;
}

export interface AllocationResult {
  hub: LinkedHub;
  /** The initial twin to apply (the webhook's if it gave one, else the enrollment's). */
  initialTwin?: unknown;
  /** The webhook's payload for the device (registrationState.payload). */
  payload?: JsonValue;
}

const DEFAULT_WEBHOOK_TIMEOUT_MS = 10_000;
const MAX_WEBHOOK_ANSWER_BYTES = 256 * 1024;

const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

export class Allocator {
  readonly #timeoutMs: number;

  constructor(
    private readonly linkedHubs: () => LinkedHub[],
    opts: { webhookTimeoutMs?: number } = {},
  ) {
    this.#timeoutMs = opts.webhookTimeoutMs ?? DEFAULT_WEBHOOK_TIMEOUT_MS;
  }

  /** The linked hub with this host name (case-insensitive), or undefined. */
  linked(hostName: string): LinkedHub | undefined {
    return this.linkedHubs().find((h) => same(h.hostName, hostName));
  }

  async allocate(req: AllocationRequest): Promise<AllocationResult> {
    const e = req.enrollment;
    const withTwin = (hub: LinkedHub): AllocationResult => (e.initialTwin === undefined ? { hub } : { hub, initialTwin: e.initialTwin });
    if (req.previousHub !== undefined && e.reprovisionPolicy?.updateHubAssignment === false) {
      const kept = this.linked(req.previousHub);
      if (kept !== undefined) return withTwin(kept);
    }
    const candidates = this.#candidates(e);
    switch (e.allocationPolicy ?? 'hashed') {
      case 'static': {
        if (candidates.length !== 1 || (e.iotHubs ?? []).length !== 1) {
          throw new HubError('ArgumentInvalid', 'The static allocation policy needs exactly one linked IoT hub in iotHubs.');
        }
        return withTwin(candidates[0] as LinkedHub);
      }
      case 'custom':
        return this.#custom(req, candidates);
      case 'geoLatency': // one region here: every hub is equally near
      case 'hashed':
      default:
        return withTwin(hashed(req.registrationId, candidates));
    }
  }

  #candidates(e: AllocationEnrollment): LinkedHub[] {
    const linked = this.linkedHubs();
    const named = e.iotHubs ?? [];
    const out = named.length === 0 ? linked : linked.filter((h) => named.some((n) => same(n, h.hostName)));
    if (out.length === 0) throw new HubError('ArgumentInvalid', 'None of the enrollment\'s IoT hubs is linked to this provisioning service.');
    return out;
  }

  async #custom(req: AllocationRequest, candidates: LinkedHub[]): Promise<AllocationResult> {
    const def = req.enrollment.customAllocationDefinition;
    if (def === undefined || typeof def.webhookUrl !== 'string') {
      throw new HubError('ArgumentInvalid', 'allocationPolicy custom needs a customAllocationDefinition.');
    }
    const context: JsonObject = {
      registrationId: req.registrationId,
      ...(req.x509 === undefined ? { symmetricKey: {} } : { x509: req.x509 }),
      ...(req.payload === undefined ? {} : { payload: req.payload }),
      ...(req.previousHub === undefined ? {} : { currentIotHubHostName: req.previousHub }),
    };
    const body: JsonObject = {
      [req.kind === 'group' ? 'enrollmentGroup' : 'individualEnrollment']: withoutKeys(req.enrollment),
      deviceRuntimeContext: context,
      linkedHubs: candidates.map((h) => h.hostName),
    };
    const answer = await this.#post(def.webhookUrl, body);
    const host = answer.iotHubHostName;
    if (typeof host !== 'string' || host === '') {
      throw new HubError('ArgumentInvalid', 'The custom allocation webhook did not name an iotHubHostName.');
    }
    const hub = this.linked(host);
    if (hub === undefined) {
      throw new HubError('ArgumentInvalid', `The custom allocation webhook chose ${host.slice(0, 128)}, which is not a linked IoT hub.`);
    }
    const twin = answer.initialTwin ?? req.enrollment.initialTwin;
    return {
      hub,
      ...(twin === undefined || twin === null ? {} : { initialTwin: twin }),
      ...(answer.payload === undefined ? {} : { payload: answer.payload }),
    };
  }

  /** POSTs JSON; https trusts the default CAs plus NODE_EXTRA_CA_CERTS. */
  #post(url: string, body: JsonObject): Promise<JsonObject> {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return Promise.reject(new HubError('ArgumentInvalid', 'The custom allocation webhook URL is not a URL.'));
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') {
      return Promise.reject(new HubError('ArgumentInvalid', 'The custom allocation webhook URL must be http or https.'));
    }
    const data = Buffer.from(JSON.stringify(body));
    const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: HubError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        reject(err);
      };
      const req = send(
        u,
        { method: 'POST', headers: { 'content-type': 'application/json; charset=utf-8', 'content-length': String(data.length), accept: 'application/json' } },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_WEBHOOK_ANSWER_BYTES) fail(new HubError('ArgumentInvalid', 'The custom allocation webhook answer is too large.'));
            else chunks.push(c);
          });
          res.on('error', () => fail(new HubError('ServiceUnavailable', 'The custom allocation webhook connection failed.')));
          res.on('end', () => {
            if (settled) return;
            const status = res.statusCode ?? 0;
            if (status < 200 || status >= 300) {
              fail(new HubError('ArgumentInvalid', `The custom allocation webhook answered ${status}.`));
              return;
            }
            let parsed: unknown;
            try {
              parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
              parsed = undefined;
            }
            if (!isJsonObject(parsed)) {
              fail(new HubError('ArgumentInvalid', 'The custom allocation webhook answer is not a JSON object.'));
              return;
            }
            settled = true;
            clearTimeout(timer);
            resolve(parsed);
          });
        },
      );
      const timer = setTimeout(() => fail(new HubError('GatewayTimeout', `The custom allocation webhook did not answer in ${this.#timeoutMs} ms.`)), this.#timeoutMs);
      req.on('error', (err: NodeJS.ErrnoException) =>
        fail(new HubError('ServiceUnavailable', 'The custom allocation webhook cannot be reached.', { cause: err.code ?? err.message })),
      );
      req.end(data);
    });
  }
}

/** An evenly weighted hash of the id over the hubs, independent of their order. */
export function hashed(registrationId: string, hubs: LinkedHub[]): LinkedHub {
  const sorted = [...hubs].sort((a, b) => (a.hostName.toLowerCase() < b.hostName.toLowerCase() ? -1 : 1));
  const weights = sorted.map((h) => (Number.isFinite(h.allocationWeight) && h.allocationWeight > 0 ? h.allocationWeight : 1));
  const total = weights.reduce((a, b) => a + b, 0);
  const digest = createHash('sha256').update(registrationId.toLowerCase()).digest();
  let point = (digest.readUInt32BE(0) / 0x1_0000_0000) * total;
  for (let i = 0; i < sorted.length; i++) {
    point -= weights[i] as number;
    if (point < 0) return sorted[i] as LinkedHub;
  }
  return sorted[sorted.length - 1] as LinkedHub;
}

/** The enrollment as the webhook sees it: no keys, no registration state. */
function withoutKeys(e: AllocationEnrollment): JsonObject {
  const copy = JSON.parse(JSON.stringify(e)) as JsonObject;
  delete copy.registrationState;
  const att = copy.attestation;
  if (isJsonObject(att)) {
    delete att.symmetricKey;
    delete att.tpm;
  }
  return copy;
}
