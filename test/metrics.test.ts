/**
 * GET /metrics on a real hub process: strict Prometheus text, every Gatehouse metric present, and
 * the values move with what happens: a bad MQTT login, a good connection with telemetry, a C2D
 * message. Without credentials (or without RegistryRead) it is 401.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { connectPacket, connectRaw, deviceToken, type RawMqtt } from './support/raw-mqtt.js';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { errorCode, policyKey, restClient, type Rest } from './support/rest.js';
import { parsePrometheusText, sampleValue, type Family } from './support/prometheus.js';

const HOST = '127.0.51.2';
let hub: HubProcess;
let ca: string;
let rest: Rest;
let deviceKey: string;

async function scrape(): Promise<Map<string, Family>> {
  const r = await rest('GET', '/metrics', undefined, { apiVersion: false });
  assert.equal(r.status, 200, r.raw.toString('utf8'));
  assert.equal(r.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  return parsePrometheusText(r.raw.toString('utf8'));
}

/** A sample's value, 0 when the series does not exist yet (a counter never incremented). */
function value(m: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  return sampleValue(m, name, labels) ?? 0;
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  const created = await rest('PUT', '/devices/m1', { deviceId: 'm1' });
  assert.equal(created.status, 200);
  deviceKey = String((created.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey);
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

describe('GET /metrics', () => {
  it('is Prometheus text with the process metrics and every Gatehouse metric, typed', async () => {
    const m = await scrape();
    const types: Record<string, string> = {
      gatehouse_connections: 'gauge',
      gatehouse_auth_failures_total: 'counter',
      gatehouse_auth_successes_total: 'counter',
      gatehouse_messages_total: 'counter',
      gatehouse_c2d_queue_depth: 'gauge',
      gatehouse_provisioning_registrations_total: 'counter',
      gatehouse_alerts_firing: 'gauge',
      gatehouse_routing_delivery_latency_seconds: 'histogram',
      gatehouse_process_cpu_user_seconds_total: 'counter',
      gatehouse_nodejs_heap_size_used_bytes: 'gauge',
      gatehouse_nodejs_eventloop_lag_p99_seconds: 'gauge',
    };
    for (const [name, type] of Object.entries(types)) {
      assert.equal(m.get(name)?.type, type, name);
      assert.notEqual(m.get(name)?.help, '', `${name} has help`);
    }
    for (const name of m.keys()) assert.match(name, /^gatehouse_/, 'one prefix, no global-registry leftovers');
    for (const kind of ['telemetry', 'twin']) assert.equal(typeof sampleValue(m, 'gatehouse_messages_total', { direction: 'in', kind }), 'number');
    for (const kind of ['c2d', 'method', 'twin']) assert.equal(typeof sampleValue(m, 'gatehouse_messages_total', { direction: 'out', kind }), 'number');
    assert.equal(value(m, 'gatehouse_c2d_queue_depth'), 0);
    // Sampled every 100 ms (not prom-client's 10 ms, which woke an idle hub 100 times a second): a
    // hub up for a while has samples, and an idle test hub's loop is nowhere near a second late.
    const lag = value(m, 'gatehouse_nodejs_eventloop_lag_p99_seconds');
    assert.ok(Number.isFinite(lag) && lag > 0 && lag < 1, `event-loop lag p99 ${lag} s`);
    for (const rule of ['failed-logins-hub', 'failed-logins-device', 'c2d-dead-letters', 'certificates-expiring', 'disconnect-storm']) {
      assert.equal(sampleValue(m, 'gatehouse_alerts_firing', { rule }), 0, rule);
    }
  });

  it('moves with a bad login, a good connection with telemetry, and a C2D message', async () => {
    const before = await scrape();
    // Summed over reasons: the device authenticator words a wrong key and an unknown device alike
    // ("bad signature, unknown identity or ..."), so which bounded code it gets is the classifier's call.
    const failures = (m: Map<string, Family>) =>
      (m.get('gatehouse_auth_failures_total')?.samples ?? []).filter((s) => s.labels.protocol === 'mqtt').reduce((n, s) => n + s.value, 0);

    const bad = await connectRaw(HOST, ca, connectPacket(HOST, 'm1', deviceToken(HOST, 'm1', Buffer.alloc(32, 1).toString('base64'))));
    assert.equal(bad.code, 4);
    bad.client.end();

    const good = await connectRaw(HOST, ca, connectPacket(HOST, 'm1', deviceToken(HOST, 'm1', deviceKey)));
    assert.equal(good.code, 0);
    const client: RawMqtt = good.client;
    try {
      for (let i = 1; i <= 3; i++) {
        client.send({ cmd: 'publish', topic: 'devices/m1/messages/events/', payload: Buffer.from(`t${i}`), qos: 1, messageId: i, retain: false, dup: false });
        assert.equal((await client.next())?.cmd, 'puback');
      }
      const sent = await rest('POST', '/devices/m1/messages/deviceBound', undefined, { raw: 'hello' });
      assert.equal(sent.status, 204);

      const m = await scrape();
      assert.equal(failures(m) - failures(before), 1, 'auth failure counted');
      for (const sample of m.get('gatehouse_auth_failures_total')?.samples ?? []) {
        assert.match(sample.labels.reason ?? '', /^[a-z_]+$/, 'reason is a bounded category, not free text');
      }
      assert.equal(
        value(m, 'gatehouse_auth_successes_total', { protocol: 'mqtt', method: 'sas' }) - value(before, 'gatehouse_auth_successes_total', { protocol: 'mqtt', method: 'sas' }),
        1,
      );
      assert.equal(value(m, 'gatehouse_connections', { protocol: 'mqtt', auth_method: 'sas' }), 1);
      assert.equal(
        value(m, 'gatehouse_messages_total', { direction: 'in', kind: 'telemetry' }) - value(before, 'gatehouse_messages_total', { direction: 'in', kind: 'telemetry' }),
        3,
      );
      assert.equal(value(m, 'gatehouse_messages_total', { direction: 'out', kind: 'c2d' }) - value(before, 'gatehouse_messages_total', { direction: 'out', kind: 'c2d' }), 1);
      assert.equal(value(m, 'gatehouse_c2d_queue_depth'), 1);
    } finally {
      client.end();
    }
    // The session is gone from the gauge once the socket closed.
    for (let i = 0; i < 50; i++) {
      if (value(await scrape(), 'gatehouse_connections', { protocol: 'mqtt', auth_method: 'sas' }) === 0) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail('the closed session still counts');
  });

  it('is 401 without credentials, and without RegistryRead', async () => {
    const anonymous = await rest('GET', '/metrics', undefined, { auth: false, apiVersion: false });
    assert.equal(anonymous.status, 401);
    assert.equal(errorCode(anonymous), 'IotHubUnauthorizedAccess');
    assert.ok(!anonymous.raw.toString('utf8').includes('gatehouse_'));
    const deviceOnly = restClient(HOST, ca, policyKey(hub.dataDir, 'device'), 'device');
    const r = await deviceOnly('GET', '/metrics', undefined, { apiVersion: false });
    assert.equal(r.status, 401);
  });
});
