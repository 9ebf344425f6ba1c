/**
 * Direct methods (wire doc §3.7, §6.6): the service calls, the device answers on its own
 * connection, correlated by request id. Timeouts [DOCS: Understand and invoke direct methods from
 * IoT Hub]: response 5-300 s (default 30), connect 0-300 s (default 0); payloads at most 128 KB;
 * not connected or not subscribed → 404 DeviceNotOnline; no answer in time → 504 GatewayTimeout.
 */
import { randomUUID } from 'node:crypto';
import { HubError } from '../../core/errors.js';
import { isJsonObject, type JsonValue } from '../../core/json.js';
import type { ConnectionRegistry } from '../connections.js';

export const MAX_METHOD_PAYLOAD = 128 * 1024;

export interface MethodCall {
  methodName: string;
  payload: JsonValue;
  responseTimeoutInSeconds: number;
  connectTimeoutInSeconds: number;
}

export interface MethodResult {
  status: number;
  payload: JsonValue;
}

// Method names exclude $ ( ) < > @ , ; : \ " / [ ] ? = { } SP HT [DOCS: direct methods].
const METHOD_NAME = /^[^$()<>@,;:\\"/[\]?={} \t]{1,128}$/;

function intIn(v: unknown, name: string, min: number, max: number, fallback: number): number {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new HubError('ArgumentInvalid', `${name} must be an integer from ${min} to ${max}.`);
  }
  return v;
}

export function parseMethodCall(body: unknown): MethodCall {
  if (!isJsonObject(body)) throw new HubError('ArgumentInvalid', 'The body must be a JSON object with methodName.');
  const { methodName } = body;
  if (typeof methodName !== 'string' || !METHOD_NAME.test(methodName)) {
    throw new HubError('ArgumentInvalid', 'methodName is missing or contains a reserved character.');
  }
  const payload = body.payload === undefined ? null : body.payload;
  if (Buffer.byteLength(JSON.stringify(payload)) > MAX_METHOD_PAYLOAD) {
    throw new HubError('MessageTooLarge', `The method payload exceeds ${MAX_METHOD_PAYLOAD} bytes.`);
  }
  return {
    methodName,
    payload,
    responseTimeoutInSeconds: intIn(body.responseTimeoutInSeconds, 'responseTimeoutInSeconds', 5, 300, 30),
    connectTimeoutInSeconds: intIn(body.connectTimeoutInSeconds, 'connectTimeoutInSeconds', 0, 300, 0),
  };
}

interface Pending {
  resolve: (r: MethodResult) => void;
  deviceId: string;
  moduleId: string | null;
}

export class MethodService {
  readonly #pending = new Map<string, Pending>();
  readonly #sentListeners: Array<() => void> = [];

  constructor(private readonly connections: ConnectionRegistry) {}

  /** A method request went out to a device. Informs only (metrics). */
  onRequestSent(listener: () => void): void {
    this.#sentListeners.push(listener);
  }

  async invoke(deviceId: string, moduleId: string | null, call: MethodCall): Promise<MethodResult> {
    // connectTimeoutInSeconds: wait for the device to be online *and* listening for methods.
    const session = await this.connections.waitFor(deviceId, moduleId, call.connectTimeoutInSeconds * 1000, (s) => s.acceptsMethods());
    const who = moduleId === null ? deviceId : `${deviceId}/${moduleId}`;
    if (session === undefined) throw new HubError('DeviceNotOnline', `Device ${who} is not online.`);
    const requestId = randomUUID();
    const result = new Promise<MethodResult | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(requestId);
        resolve(undefined);
      }, call.responseTimeoutInSeconds * 1000);
      this.#pending.set(requestId, {
        deviceId,
        moduleId,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
    });
    if (!session.sendMethodRequest(call.methodName, call.payload, requestId)) {
      this.#pending.get(requestId)?.resolve({ status: 0, payload: null });
      this.#pending.delete(requestId);
      throw new HubError('DeviceNotOnline', `Device ${who} is not subscribed to direct methods.`);
    }
    for (const l of this.#sentListeners) {
      try {
        l();
      } catch {
        // informs only
      }
    }
    const r = await result;
    if (r === undefined) throw new HubError('GatewayTimeout', `Device ${who} did not answer ${call.methodName} in ${call.responseTimeoutInSeconds} s.`);
    return r;
  }

  /** A device's answer. Only the identity the request went to may answer it. */
  respond(deviceId: string, moduleId: string | null, requestId: string, status: number, payload: JsonValue): boolean {
    const p = this.#pending.get(requestId);
    if (p === undefined || p.deviceId !== deviceId || p.moduleId !== moduleId) return false;
    this.#pending.delete(requestId);
    p.resolve({ status, payload });
    return true;
  }
}
