/**
 * Message enrichment values (src/routing/query/enrichment.ts) as Microsoft's "Message enrichments
 * for device-to-cloud IoT Hub messages" allows them: a static string, $iothubname, or a path under
 * $twin.tags, $twin.properties.desired or $twin.properties.reported.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { JsonObject } from '../src/core/json.js';
import { RoutingQueryError, enrichmentValue, validateEnrichmentValue } from '../src/routing/query/index.js';

const TWIN: JsonObject = {
  tags: { deploymentLocation: { building: '43', floor: '1' } },
  properties: {
    desired: { telemetryConfig: { sendFrequency: '5m' }, $metadata: {}, $version: 1 },
    reported: { telemetryConfig: { sendFrequency: '5m', status: 'success' }, batteryLevel: 55, $metadata: {}, $version: 4 },
  },
};

describe('enrichment values', () => {
  const hub = { twin: TWIN, hubName: 'contoso-hub' };
  it('stamps static strings, $iothubname and $twin paths', () => {
    assert.equal(enrichmentValue('customer-42', hub), 'customer-42');
    assert.equal(enrichmentValue('$iothubname', hub), 'contoso-hub');
    assert.equal(enrichmentValue('$twin.tags.deploymentLocation.building', hub), '43');
    assert.equal(enrichmentValue('$twin.properties.reported.batteryLevel', hub), '55');
    assert.equal(enrichmentValue('$twin.properties.desired.telemetryConfig', hub), '{"sendFrequency":"5m"}');
    assert.equal(enrichmentValue('$twin.tags.location', hub), undefined);
    assert.equal(enrichmentValue('$twin.tags.deploymentLocation.building', { hubName: 'h' }), undefined);
  });

  it('refuses conditions, functions and other variables', () => {
    for (const bad of ['', '$twin.deviceId', '$twin.properties.other.x', '$body.x', '$messageId', "$twin.tags.a = 'b'", 'x'.repeat(1025), '$twin.tags.', '$iothubname2']) {
      assert.throws(() => validateEnrichmentValue(bad), RoutingQueryError, JSON.stringify(bad));
    }
    for (const good of ['plain', 'with spaces and $ inside', '$IoTHubName', '$twin.tags', "$twin.tags['odd key']", '$twin.properties.reported.a.b']) {
      validateEnrichmentValue(good);
    }
  });
});
