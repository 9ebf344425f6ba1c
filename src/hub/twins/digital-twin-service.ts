/**
 * The IoT Plug and Play service API (`azure-iothub`'s DigitalTwinClient, api-version 2020-09-30 and
 * later): read a device's digital twin, update it with a JSON Patch (desired properties), invoke
 * its commands. Commands are direct methods as IoT Hub maps them [DOCS: IoT Plug and Play
 * conventions]: a root-level command by its name, a component's as `{component}*{command}`.
 */
import type { JsonObject, JsonValue } from '../../core/json.js';
import { parseMethodCall, type MethodResult, type MethodService } from '../methods/method-service.js';
import { checkDtdlName, desiredPatchFor, renderDigitalTwin, type DigitalTwinOperation } from './digital-twin.js';
import type { TwinService } from './twin-service.js';

/** What separates a component from its command in the direct method name. */
export const COMPONENT_COMMAND_SEPARATOR = '*';

export interface CommandCall {
  deviceId: string;
  component: string | undefined;
  command: string;
  payload: JsonValue;
  /** As the query string carries them; undefined: the direct methods' defaults (30 s, 0 s). */
  connectTimeoutInSeconds: number | undefined;
  responseTimeoutInSeconds: number | undefined;
}

export class DigitalTwinService {
  constructor(
    private readonly twins: TwinService,
    private readonly methods: MethodService,
  ) {}

  /** The digital twin and its etag (the twin's). */
  async get(deviceId: string): Promise<{ doc: JsonObject; etag: string }> {
    const twin = await this.twins.state(deviceId, null);
    return { doc: renderDigitalTwin(twin), etag: twin.etag };
  }

  /** Applies the operations as one desired patch; answers the twin's new etag. */
  async update(deviceId: string, ops: readonly DigitalTwinOperation[], ifMatch: string | undefined): Promise<string> {
    const doc = await this.twins.patchDesired(deviceId, null, ifMatch, (twin) => desiredPatchFor(ops, twin.desired, twin.reported));
    return String(doc.etag);
  }

  async invoke(call: CommandCall): Promise<MethodResult> {
    if (call.component !== undefined) checkDtdlName(call.component, 'component');
    const methodName = call.component === undefined ? call.command : `${call.component}${COMPONENT_COMMAND_SEPARATOR}${call.command}`;
    const parsed = parseMethodCall({
      methodName,
      payload: call.payload,
      ...(call.connectTimeoutInSeconds === undefined ? {} : { connectTimeoutInSeconds: call.connectTimeoutInSeconds }),
      ...(call.responseTimeoutInSeconds === undefined ? {} : { responseTimeoutInSeconds: call.responseTimeoutInSeconds }),
    });
    return this.methods.invoke(call.deviceId, null, parsed);
  }
}
