/**
 * Direct methods (wire doc §3.7, §6.6): the service calls, the device answers on its own
 * connection, correlated by request id. Timeouts [DOCS: Understand and invoke direct methods from
 * IoT Hub]: response 5-300 s (default 30), connect 0-300 s (default 0); payloads at most 128 KB;
 * not connected or not subscribed → 404 DeviceNotOnline; no answer in time → 504 GatewayTimeout.
 */
import { randomUUID } from 'node:crypto';
import { ERROR_CODES, HubError, type ErrorCode } from '../../core/errors.js';
import { isJsonObject, type JsonValue } from '../../core/json.js';
import { BusNoRespondersError, BusTimeoutError } from '../../bus/bus.js';
import { SUBJECTS, type HubBus, type MethodReply, type MethodRequest } from '../../bus/subjects.js';
import type { MessageTally } from '../../core/tally.js';
import type { ConnectionTable } from '../connections.js';

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

/** Bus time beyond the device's own timeouts before the caller gives up on the holding node. */
const BUS_MARGIN_MS = 5_000;

/**
 * The caller's side sends the request over the bus to whichever node holds the identity's session
 * (that node subscribes while it holds it: connections.ts); the holder's side waits for the device
 * to listen for methods, sends the request on its connection and answers with the device's reply.
 * On one node both sides are this service; in a cluster, the node the call came to and the node
 * the device is connected to.
 */
export class MethodService {
  readonly #pending = new Map<string, Pending>();

  constructor(
    private readonly connections: ConnectionTable,
    private readonly bus: HubBus,
    private readonly tally: MessageTally,
  ) {
    connections.serveMethods((request) => this.#serve(request));
  }

  async invoke(deviceId: string, moduleId: string | null, call: MethodCall): Promise<MethodResult> {
    const who = moduleId === null ? deviceId : `${deviceId}/${moduleId}`;
    const responseTimeoutMs = call.responseTimeoutInSeconds * 1000;
    // connectTimeoutInSeconds: wait for the device to be online (anywhere) *and* listening for methods.
    const deadline = Date.now() + call.connectTimeoutInSeconds * 1000;
    for (;;) {
      const remaining = Math.max(0, deadline - Date.now());
      const claimed = remaining > 0 ? this.#claimWaiter(deviceId, moduleId, remaining) : undefined;
      try {
        const request: MethodRequest = { deviceId, moduleId, methodName: call.methodName, payload: call.payload, connectTimeoutMs: remaining, responseTimeoutMs };
        const reply = await this.bus.request(SUBJECTS.methodRequest, request, remaining + responseTimeoutMs + BUS_MARGIN_MS, deviceId, moduleId);
        if ('error' in reply) throw new HubError(reply.error.code in ERROR_CODES ? (reply.error.code as ErrorCode) : 'ServiceUnavailable', reply.error.message);
        return reply;
      } catch (err) {
        if (err instanceof BusNoRespondersError && claimed !== undefined) {
          await claimed.wait;
          continue;
        }
        if (err instanceof BusNoRespondersError) throw new HubError('DeviceNotOnline', `Device ${who} is not online.`);
        if (err instanceof BusTimeoutError) throw new HubError('GatewayTimeout', `Device ${who} did not answer ${call.methodName} in ${call.responseTimeoutInSeconds} s.`);
        throw err;
      } finally {
        claimed?.cancel();
      }
    }
  }

  /** Resolves when a node claims the identity's session, or after `ms`. */
  #claimWaiter(deviceId: string, moduleId: string | null, ms: number): { wait: Promise<void>; cancel(): void } {
    let done!: () => void;
    const wait = new Promise<void>((resolve) => (done = resolve));
    const timer = setTimeout(() => done(), ms);
    const sub = this.bus.subscribe(SUBJECTS.sessionClaimed, (c) => {
      if (c.deviceId === deviceId && c.moduleId === moduleId) done();
    });
    const cancel = () => {
      clearTimeout(timer);
      sub.unsubscribe();
      done();
    };
    // wait only resolves (a claim, the timeout, or cancel itself).
    void wait.then(cancel);
    return { wait, cancel };
  }

  /** The holding node's side: the identity is connected here. */
  async #serve(r: MethodRequest): Promise<MethodReply> {
    const who = r.moduleId === null ? r.deviceId : `${r.deviceId}/${r.moduleId}`;
    const session = await this.connections.waitFor(r.deviceId, r.moduleId, r.connectTimeoutMs, (s) => s.acceptsMethods());
    if (session === undefined) return { error: { code: 'DeviceNotOnline', message: `Device ${who} is not online.` } };
    const requestId = randomUUID();
    const result = new Promise<MethodResult | undefined>((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(requestId);
        resolve(undefined);
      }, r.responseTimeoutMs);
      this.#pending.set(requestId, {
        deviceId: r.deviceId,
        moduleId: r.moduleId,
        resolve: (res) => {
          clearTimeout(timer);
          resolve(res);
        },
      });
    });
    if (!session.sendMethodRequest(r.methodName, r.payload, requestId)) {
      this.#pending.get(requestId)?.resolve({ status: 0, payload: null });
      this.#pending.delete(requestId);
      return { error: { code: 'DeviceNotOnline', message: `Device ${who} is not subscribed to direct methods.` } };
    }
    this.tally.methodOut++;
    const res = await result;
    if (res === undefined) return { error: { code: 'GatewayTimeout', message: `Device ${who} did not answer ${r.methodName} in ${r.responseTimeoutMs / 1000} s.` } };
    return res;
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
