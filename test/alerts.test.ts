/**
 * Alerts end to end on a real hub process: the default failed-logins-hub rule gets a signed
 * webhook through the CLI, eleven bad MQTT logins within a minute fire it, the receiver (which
 * fails the first attempt) gets the alert on the retry with a valid signature, and GET /alerts
 * and `gatehouse alert list` show it fired with its delivery. Rule routes are admin only and
 * refuse bad rules precisely.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connectPacket, connectRaw, deviceToken } from './support/raw-mqtt.js';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { errorCode, errorMessage, policyKey, restClient, type Rest } from './support/rest.js';
import { parsePrometheusText, sampleValue } from './support/prometheus.js';

const HOST = '127.0.51.3';
const SECRET = 'webhook-secret-for-the-test-0123456789';
let hub: HubProcess;
let ca: string;
let rest: Rest;

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  answered: number;
}

const received: Received[] = [];
/** Status codes the receiver answers with, in turn; then 204. */
const answers: number[] = [];
let receiver: Server;
let hookUrl: string;

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const answered = answers.shift() ?? 204;
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), answered });
      res.writeHead(answered).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, HOST, resolve));
  hookUrl = `http://${HOST}:${(receiver.address() as AddressInfo).port}/gatehouse-alerts`;

  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  assert.equal((await rest('PUT', '/devices/victim', { deviceId: 'victim' })).status, 200);
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
  await new Promise<void>((resolve) => receiver.close(() => resolve()));
});

describe('alerts on a running hub', () => {
  it('the CLI sets a signed webhook on the default failed-logins-hub rule without ever showing the secret', () => {
    const set = cli(['alert', 'rule', 'set', 'failed-logins-hub', '--data-dir', hub.dataDir, '--webhook', hookUrl, '--webhook-secret', SECRET]);
    assert.equal(set.status, 0, set.stderr);
    assert.ok(!set.stdout.includes(SECRET));
    const [rule] = JSON.parse(set.stdout) as Array<Record<string, unknown>>;
    assert.deepEqual(rule?.actions, { log: true, webhook: { url: hookUrl, secretSet: true } });
    assert.equal(rule?.threshold, 10);
    assert.equal(rule?.windowSeconds, 600);

    const list = cli(['alert', 'rule', 'list', '--data-dir', hub.dataDir, '-o', 'table']);
    assert.equal(list.status, 0, list.stderr);
    assert.match(list.stdout, /failed-logins-hub\s+authFailures\s+true\s+hub\s+10\s+600/);
    assert.ok(!list.stdout.includes(SECRET));
  });

  it('eleven bad MQTT logins within a minute fire it; the webhook is retried after a 500 and signed', async () => {
    answers.push(500);
    const wrongKey = Buffer.alloc(32, 7).toString('base64');
    for (let i = 0; i < 11; i++) {
      const { code, client } = await connectRaw(HOST, ca, connectPacket(HOST, 'victim', deviceToken(HOST, 'victim', wrongKey)));
      assert.equal(code, 4, `login ${i + 1} refused as bad credentials`);
      client.end();
    }
    const ok = await until('a delivered webhook', () => received.find((r) => r.answered === 204));
    const attempts = received.filter((r) => JSON.parse(r.body).alert.rule === 'failed-logins-hub');
    assert.deepEqual(attempts.map((r) => r.answered), [500, 204], 'one failed attempt, then the retry');
    const [first] = attempts;
    assert.equal(first?.body, ok.body, 'the retry sends the same alert');
    assert.equal(first?.headers['x-gatehouse-delivery'], ok.headers['x-gatehouse-delivery']);
    assert.equal(ok.headers['content-type'], 'application/json');
    assert.equal(ok.headers['x-gatehouse-signature'], `sha256=${createHmac('sha256', SECRET).update(ok.body).digest('hex')}`);
    assert.ok(!ok.body.includes(SECRET));

    const { alert } = JSON.parse(ok.body) as { alert: Record<string, unknown> };
    assert.equal(alert.rule, 'failed-logins-hub');
    assert.equal(alert.kind, 'authFailures');
    assert.equal(alert.state, 'fired');
    assert.equal(alert.key, 'hub');
    assert.ok(typeof alert.value === 'number' && alert.value >= 11, `value ${String(alert.value)}`);
    assert.equal(alert.threshold, 10);
    assert.equal(alert.windowSeconds, 600);
    assert.equal(alert.hub, HOST);
    assert.equal(typeof alert.id, 'string');
    assert.ok(!Number.isNaN(Date.parse(String(alert.firedAt))));
    assert.equal(alert.resolvedAt, undefined);
    assert.match(String(alert.summary), /^11 failed authentications in 10 min across the hub/);

    // GET /alerts: fired, with the delivery recorded.
    const listed = await until('the delivery recorded', async () => {
      const r = await rest('GET', '/alerts?state=fired');
      assert.equal(r.status, 200);
      const a = (r.body as { value: Array<Record<string, unknown>> }).value.find((x) => x.id === alert.id);
      return (a?.lastDelivery as { ok?: boolean } | null)?.ok === true ? a : undefined;
    });
    assert.equal(listed.state, 'fired');
    assert.equal(listed.rule, 'failed-logins-hub');
    assert.equal(listed.deliveries, 2);
    assert.deepEqual({ ...(listed.lastDelivery as object), at: undefined }, { at: undefined, state: 'fired', ok: true, attempts: 2, status: 204, error: null });

    // The per-identity default rule fired for the device as well (no webhook: log only).
    const all = (await rest('GET', '/alerts')).body as { value: Array<Record<string, unknown>> };
    assert.ok(all.value.some((a) => a.rule === 'failed-logins-device' && a.key === 'device:victim' && a.state === 'fired'));
    const resolved = (await rest('GET', '/alerts?state=resolved')).body as { value: unknown[] };
    assert.equal(resolved.value.length, 0);

    const cliList = cli(['alert', 'list', '--data-dir', hub.dataDir, '--state', 'fired', '-o', 'table']);
    assert.equal(cliList.status, 0, cliList.stderr);
    assert.match(cliList.stdout, /failed-logins-hub\s+hub\s+fired\s+1[1-9]/);

    const metrics = parsePrometheusText((await rest('GET', '/metrics', undefined, { apiVersion: false })).raw.toString('utf8'));
    assert.equal(sampleValue(metrics, 'gatehouse_alerts_firing', { rule: 'failed-logins-hub' }), 1);
    assert.equal(sampleValue(metrics, 'gatehouse_alerts_firing', { rule: 'failed-logins-device' }), 1);
  });

  it('rule routes are admin only and refuse bad rules with AlertRuleInvalid', async () => {
    const readWrite = restClient(HOST, ca, policyKey(hub.dataDir, 'registryReadWrite'), 'registryReadWrite');
    for (const [method, path] of [['GET', '/alerts'], ['GET', '/alerts/rules'], ['PUT', '/alerts/rules/x'], ['DELETE', '/alerts/rules/x']] as const) {
      const r = await readWrite(method, path, method === 'PUT' ? { kind: 'disconnectStorm', threshold: 1, windowSeconds: 60 } : undefined);
      assert.equal(r.status, 401, `${method} ${path}`);
    }
    assert.equal((await rest('GET', '/alerts/rules', undefined, { auth: false })).status, 401);

    let r = await rest('PUT', '/alerts/rules/storm', { kind: 'disconnectStorm', threshold: -1, windowSeconds: 60 });
    assert.equal(r.status, 400);
    assert.equal(errorCode(r), 'AlertRuleInvalid');
    assert.match(errorMessage(r), /threshold must be an integer from 0 to 1000000/);
    r = await rest('PUT', '/alerts/rules/storm', undefined, { raw: '{"kind":' });
    assert.equal(r.status, 400);
    assert.equal(errorCode(r), 'IotHubFormatError');
    r = await rest('GET', '/alerts?state=open');
    assert.equal(errorCode(r), 'ArgumentInvalid');

    r = await rest('PUT', '/alerts/rules/storm', { kind: 'disconnectStorm', threshold: 1000, windowSeconds: 60, actions: { webhook: { url: hookUrl, secret: SECRET } } });
    assert.equal(r.status, 201);
    assert.deepEqual((r.body as { actions: unknown }).actions, { log: true, webhook: { url: hookUrl, secretSet: true } });
    r = await rest('PUT', '/alerts/rules/storm', { kind: 'disconnectStorm', threshold: 500, windowSeconds: 60, actions: { webhook: { url: hookUrl } } });
    assert.equal(r.status, 200);
    const rules = (await rest('GET', '/alerts/rules')).body as { value: Array<Record<string, unknown>> };
    assert.ok(!JSON.stringify(rules).includes(SECRET));
    assert.deepEqual(rules.value.find((x) => x.name === 'storm')?.actions, { log: true, webhook: { url: hookUrl, secretSet: true } }, 'the secret was kept');
    assert.equal((await rest('DELETE', '/alerts/rules/storm')).status, 204);
    r = await rest('DELETE', '/alerts/rules/storm');
    assert.equal(r.status, 404);
    assert.equal(errorCode(r), 'ResourceNotFound');
    assert.equal(hub.output().includes(SECRET), false, 'the secret never reaches the log');
  });
});
