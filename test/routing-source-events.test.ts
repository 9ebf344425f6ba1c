/**
 * The non-telemetry routing sources (src/routing/source-events.ts) against the examples of
 * Microsoft's "Azure IoT Hub non-telemetry event schemas", and routed with Azure's conditions.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { JsonObject } from '../src/core/json.js';
import type { TwinState } from '../src/core/types.js';
import type { LogMessage } from '../src/log/log-ports.js';
import { compileCondition } from '../src/routing/query/index.js';
import { connectionSequenceNumber, connectionStateEvent, deviceJobLifecycleEvent, deviceLifecycleEvent, routeSourceOf, twinChangeEvent } from '../src/routing/source-events.js';

const HUB = 'contoso-routing-hub';

function body(m: LogMessage): JsonObject {
  return JSON.parse(m.body.toString('utf8')) as JsonObject;
}

function twin(over: Partial<TwinState>): TwinState {
  return {
    deviceId: 'd',
    moduleId: null,
    etag: 'AAAAAAAAAAE=',
    version: 2,
    tags: {},
    desired: {},
    desiredMeta: { $lastUpdated: '0001-01-01T00:00:00Z' },
    desiredVersion: 1,
    reported: {},
    reportedMeta: { $lastUpdated: '0001-01-01T00:00:00Z' },
    reportedVersion: 1,
    modelId: '',
    ...over,
  };
}

describe('connection state events', () => {
  it("match Microsoft's example of a device disconnecting", () => {
    const sequenceNumber = '000000000000000001D8713FF7E0851400000002000000000000000000000007';
    const m = connectionStateEvent(
      { hubName: HUB, deviceId: 'contoso-device-1', moduleId: null, now: '2022-06-01T18:43:04.556Z', correlationId: 'aaaa0000-bb11-2222-33cc-444444dddddd' },
      'deviceDisconnected',
      sequenceNumber,
    );
    assert.equal(m.deviceId, 'contoso-device-1');
    assert.equal(m.moduleId, null);
    assert.deepEqual(m.properties, {
      hubName: HUB,
      deviceId: 'contoso-device-1',
      opType: 'deviceDisconnected',
      'iothub-message-schema': 'deviceConnectionStateNotification',
      operationTimestamp: '2022-06-01T18:43:04.556Z',
    });
    assert.deepEqual(m.systemProperties, {
      'content-encoding': 'utf-8',
      'content-type': 'application/json',
      'correlation-id': 'aaaa0000-bb11-2222-33cc-444444dddddd',
      'user-id': HUB,
      'iothub-connection-device-id': 'contoso-device-1',
      'iothub-enqueuedtime': '2022-06-01T18:43:04.556Z',
      'iothub-message-source': 'deviceConnectionStateEvents',
    });
    assert.deepEqual(body(m), { sequenceNumber });
    assert.equal(routeSourceOf(m.systemProperties), 'DeviceConnectionStateEvents');
  });

  it('name a module in the application properties only', () => {
    const m = connectionStateEvent({ hubName: HUB, deviceId: 'd', moduleId: 'm1', now: '2022-06-01T18:43:04.556Z' }, 'deviceConnected', connectionSequenceNumber(0, 0));
    assert.equal(m.properties.moduleId, 'm1');
    assert.equal(m.systemProperties['iothub-connection-module-id'], undefined);
    assert.match(m.systemProperties['correlation-id']!, /^[0-9a-f-]{36}$/);
  });

  it('number connections with 64 hexadecimal digits that grow as strings do', () => {
    // Azure's example number carries a FILETIME (100 ns since 1601) in digits 17-32: 2022-05-26T20:34:16.299Z.
    const t = Date.parse('2022-05-26T20:34:16.299Z');
    const n = connectionSequenceNumber(t, 7);
    assert.equal(n.length, 64);
    assert.equal(n.slice(0, 28), '000000000000000001D8713FF7E0', 'the same FILETIME to the millisecond');
    assert.equal(n.slice(32), '00000000000000000000000000000007');
    const later = [connectionSequenceNumber(t, 8), connectionSequenceNumber(t + 1, 0), connectionSequenceNumber(Date.parse('2030-01-01T00:00:00Z'), 0)];
    let prev = n;
    for (const next of later) {
      assert.ok(next > prev, `${next} > ${prev}`);
      prev = next;
    }
    assert.throws(() => connectionSequenceNumber(t, -1), RangeError);
  });

  it('order two nodes\' numbers by time within one millisecond, whatever their counters', () => {
    // Node A's 5th event, then node B's first, a quarter of a millisecond later: B's must be the larger.
    const t = Date.parse('2026-12-04T10:00:00.000Z');
    const onA = connectionSequenceNumber(t + 0.25, 5);
    const onB = connectionSequenceNumber(t + 0.5, 0);
    assert.ok(onB > onA, `${onB} > ${onA}`);
    assert.equal(BigInt(`0x${onB.slice(16, 32)}`) - BigInt(`0x${onA.slice(16, 32)}`), 2_500n, '2,500 ticks of 100 ns apart');
  });
});

describe('device lifecycle events', () => {
  it("match Microsoft's example of a module created", () => {
    const created = twin({ deviceId: 'contoso-device-2', moduleId: 'module-1' });
    const m = deviceLifecycleEvent(
      { hubName: HUB, deviceId: 'contoso-device-2', moduleId: 'module-1', now: '2022-05-27T18:49:38.490Z', correlationId: 'c5a4e6986c' },
      'createDeviceIdentity',
      created,
    );
    assert.equal(m.moduleId, 'module-1');
    assert.deepEqual(m.properties, {
      hubName: HUB,
      deviceId: 'contoso-device-2',
      operationTimestamp: '2022-05-27T18:49:38.490Z',
      moduleId: 'module-1',
      opType: 'createDeviceIdentity',
      'iothub-message-schema': 'deviceLifecycleNotification',
    });
    assert.deepEqual(m.systemProperties, {
      'content-encoding': 'utf-8',
      'content-type': 'application/json',
      'correlation-id': 'c5a4e6986c',
      'user-id': HUB,
      'iothub-connection-device-id': 'contoso-device-2',
      'iothub-connection-module-id': 'module-1',
      'iothub-enqueuedtime': '2022-05-27T18:49:38.490Z',
      'iothub-message-source': 'deviceLifecycleEvents',
    });
    assert.deepEqual(body(m), {
      deviceId: 'contoso-device-2',
      moduleId: 'module-1',
      etag: 'AAAAAAAAAAE=',
      version: 2,
      properties: {
        desired: { $metadata: { $lastUpdated: '0001-01-01T00:00:00Z' }, $version: 1 },
        reported: { $metadata: { $lastUpdated: '0001-01-01T00:00:00Z' }, $version: 1 },
      },
    });
    assert.equal(routeSourceOf(m.systemProperties), 'DeviceLifecycleEvents');
  });

  it('carry a device twin with its tags, without a module id', () => {
    const m = deviceLifecycleEvent({ hubName: HUB, deviceId: 'd', moduleId: null, now: '2022-05-27T18:49:38.490Z' }, 'deleteDeviceIdentity', twin({ tags: { site: 'b43' } }));
    assert.equal(m.properties.moduleId, undefined);
    assert.equal(m.systemProperties['iothub-connection-module-id'], undefined);
    assert.equal(m.properties.opType, 'deleteDeviceIdentity');
    const b = body(m);
    assert.equal(b.moduleId, undefined);
    assert.deepEqual(b.tags, { site: 'b43' });
  });
});

describe('twin change events', () => {
  const meta = {
    $lastUpdated: '2022-06-01T22:27:50.2612586Z',
    $lastUpdatedVersion: 6,
    property1: { $lastUpdated: '2022-06-01T22:27:50.2612586Z', $lastUpdatedVersion: 6 },
    older: { $lastUpdated: '2022-01-01T00:00:00Z', $lastUpdatedVersion: 2 },
  };
  const after = twin({
    deviceId: 'contoso-device-3',
    moduleId: 'module-1',
    version: 7,
    tags: { tag1: 'new value', other: 'x' },
    desired: { property1: 'new value', older: 1 },
    desiredMeta: meta,
    desiredVersion: 6,
  });

  it("match Microsoft's example of an update of a desired property and a tag on a module twin", () => {
    const m = twinChangeEvent(
      { hubName: HUB, deviceId: 'contoso-device-3', moduleId: 'module-1', now: '2022-06-01T22:27:50.261Z', correlationId: '4d1f1e2e74f' },
      { opType: 'updateTwin', twin: after, tags: { tag1: 'new value' }, desired: { property1: 'new value' } },
    );
    assert.deepEqual(m.properties, {
      hubName: HUB,
      deviceId: 'contoso-device-3',
      operationTimestamp: '2022-06-01T22:27:50.261Z',
      moduleId: 'module-1',
      'iothub-message-schema': 'twinChangeNotification',
      opType: 'updateTwin',
    });
    assert.equal(m.systemProperties['iothub-message-source'], 'twinChangeEvents');
    assert.equal(m.systemProperties['iothub-connection-module-id'], 'module-1');
    assert.deepEqual(body(m), {
      version: 7,
      tags: { tag1: 'new value' },
      properties: {
        desired: {
          property1: 'new value',
          $metadata: {
            $lastUpdated: '2022-06-01T22:27:50.2612586Z',
            $lastUpdatedVersion: 6,
            property1: { $lastUpdated: '2022-06-01T22:27:50.2612586Z', $lastUpdatedVersion: 6 },
          },
          $version: 6,
        },
      },
    });
    assert.equal(routeSourceOf(m.systemProperties), 'TwinChangeEvents');
  });

  it('carry only the sections that changed, removals as null', () => {
    const ctx = { hubName: HUB, deviceId: 'd', moduleId: null, now: '2022-06-01T22:27:50.261Z' };
    assert.deepEqual(body(twinChangeEvent(ctx, { opType: 'updateTwin', twin: after, tags: { other: null } })), { version: 7, tags: { other: null } });
    const reported = body(twinChangeEvent(ctx, { opType: 'updateTwin', twin: twin({ version: 3, reportedVersion: 2 }), reported: { fw: '1.2' } }));
    assert.deepEqual(reported, { version: 3, properties: { reported: { fw: '1.2', $metadata: { $lastUpdated: '0001-01-01T00:00:00Z' }, $version: 2 } } });
  });

  it('carry the whole twin on a replace', () => {
    const m = twinChangeEvent({ hubName: HUB, deviceId: 'contoso-device-3', moduleId: 'module-1', now: '2022-06-01T22:27:50.261Z' }, { opType: 'replaceTwin', twin: after });
    assert.equal(m.properties.opType, 'replaceTwin');
    const b = body(m);
    assert.equal(b.deviceId, 'contoso-device-3');
    assert.equal(b.moduleId, 'module-1');
    assert.equal(b.etag, 'AAAAAAAAAAE=');
    assert.deepEqual(b.tags, { tag1: 'new value', other: 'x' });
    assert.deepEqual((b.properties as JsonObject).desired, { property1: 'new value', older: 1, $metadata: meta, $version: 6 });
  });
});

describe('routing the events with Azure conditions', () => {
  const ctx = { hubName: HUB, deviceId: 'contoso-device-3', moduleId: 'module-1', now: '2022-06-07T10:00:00.000Z' };
  const update = twinChangeEvent(ctx, { opType: 'updateTwin', twin: twin({ version: 9, desiredVersion: 8 }), desired: { telemetryConfig: { sendFrequency: 15 } } });
  const disconnected = connectionStateEvent({ ...ctx, moduleId: null }, 'deviceDisconnected', connectionSequenceNumber(Date.now(), 1));
  const jobFailed = deviceJobLifecycleEvent({ ...ctx, moduleId: null }, 'deviceJobFailed', {
    deviceId: 'contoso-device-3',
    jobId: 'reboot-all',
    jobType: 'scheduleDeviceMethod',
    status: 'failed',
    error: { code: 'DeviceNotOnline', description: 'Device contoso-device-3 is not online.' },
  });

  const cases: Array<[string, LogMessage, boolean]> = [
    // "Azure IoT Hub non-telemetry event schemas": In routing queries, use the property name.
    ["deviceId = 'contoso-device-3'", update, true],
    ['$enqueuedTime > "2022-06-06T22:56:06Z"', update, true],
    ['$enqueuedTime > "2022-06-08T00:00:00Z"', update, false],
    // "IoT Hub message routing query syntax": filter a twin notification on what changed.
    ['$body.properties.desired.telemetryConfig.sendFrequency > 10', update, true],
    ['is_defined($body.properties.desired.telemetryConfig.sendFrequency)', update, true],
    ["opType = 'updateTwin' AND $connectionModuleId = 'module-1' AND $userId = 'contoso-routing-hub'", update, true],
    ["opType = 'deviceDisconnected' AND LENGTH($body.sequenceNumber) = 64", disconnected, true],
    ["$contentType = 'application/json' AND $contentEncoding = 'utf-8'", disconnected, true],
    ['IS_DEFINED(moduleId)', disconnected, false],
    // A device's part of a job ended (DeviceJobLifecycleEvents): its devices.jobs row is the body.
    ["opType = 'deviceJobFailed' AND $body.jobId = 'reboot-all' AND $body.error.code = 'DeviceNotOnline'", jobFailed, true],
    ["opType = 'deviceJobCompleted'", jobFailed, false],
  ];
  for (const [condition, message, expected] of cases) {
    it(condition, () => assert.equal(compileCondition(condition).matches(message), expected));
  }

  it('a device job event belongs to DeviceJobLifecycleEvents', () => {
    assert.equal(routeSourceOf(jobFailed.systemProperties), 'DeviceJobLifecycleEvents');
    assert.equal(jobFailed.properties['iothub-message-schema'], 'deviceJobLifecycleNotification');
  });

  it('treats a message with no iothub-message-source as telemetry', () => {
    assert.equal(routeSourceOf({}), 'DeviceMessages');
    assert.equal(routeSourceOf({ 'iothub-message-source': 'Telemetry' }), 'DeviceMessages');
    assert.equal(routeSourceOf({ 'iothub-message-source': 'somethingElse' }), undefined);
  });
});
