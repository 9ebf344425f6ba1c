/**
 * Security events that used to reach only the log (issue 14, item 8), on a real hub: a device
 * touching another device's topics over MQTT (publish, subscribe) or attaching to another
 * device's AMQP link, and TLS handshakes the hub refuses (a TLS 1.1 client, a client offering
 * only ciphers the hub does not allow) on MQTT 8883, HTTPS 443 and AMQP 5671. Each is an audit
 * row with the remote address, protocol and reason, a count in gatehouse_auth_failures_total by
 * reason, and something an alert rule filtered to that reason fires on. A flood of refused
 * handshakes from one address is one row at once and one summary row per minute, not a row each.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import rhea from 'rhea';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { parsePrometheusText, sampleValue } from './support/prometheus.js';
import { connectPacket, connectRaw, deviceToken } from './support/raw-mqtt.js';
import { policyKey, restClient, type Rest } from './support/rest.js';
import { generateSasToken } from '../src/auth/sas.js';

const HOST = '127.0.66.1';
const MQTT_DEVICE = '127.0.66.20';
const AMQP_DEVICE = '127.0.66.21';
const OLD_TLS = '127.0.66.30';
const BAD_CIPHER = '127.0.66.31';
const FLOOD = '127.0.66.32';
const PORTS = [
  { port: 8883, protocol: 'mqtt' },
  { port: 443, protocol: 'https' },
  { port: 5671, protocol: 'amqp' },
] as const;

let hub: HubProcess;
let hubRunning = false;
let ca: string;
let rest: Rest;
const keys = new Map<string, string>();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Entry {
  type: string;
  subject?: string | null;
  identity?: string | null;
  outcome?: string | null;
  reason?: string | null;
  reasonCode?: string | null;
  remote?: string | null;
  protocol?: string | null;
}

async function entries(): Promise<Entry[]> {
  const r = await rest('GET', '/auditLog?type=auth&outcome=failure&limit=1000');
  assert.equal(r.status, 200);
  return (r.body as { entries: Entry[] }).entries;
}

async function auditRow(pred: (e: Entry) => boolean, what: string): Promise<Entry> {
  for (let i = 0; i < 50; i++) {
    const hit = (await entries()).find(pred);
    if (hit !== undefined) return hit;
    await sleep(100);
  }
  return assert.fail(`no audit row: ${what}`);
}

async function failures(protocol: string, reason: string): Promise<number> {
  const r = await rest('GET', '/metrics', undefined, { apiVersion: false });
  assert.equal(r.status, 200);
  return sampleValue(parsePrometheusText(r.raw.toString('utf8')), 'gatehouse_auth_failures_total', { protocol, reason }) ?? 0;
}

async function firedFor(rule: string): Promise<Record<string, unknown>> {
  for (let i = 0; i < 50; i++) {
    const r = await rest('GET', '/alerts?state=fired');
    assert.equal(r.status, 200);
    const hit = (r.body as { value: Array<Record<string, unknown>> }).value.find((a) => a.rule === rule);
    if (hit !== undefined) return hit;
    await sleep(100);
  }
  return assert.fail(`alert rule ${rule} did not fire`);
}

async function putRule(name: string, reasons: string[]): Promise<void> {
  const r = await rest('PUT', `/alerts/rules/${name}`, { kind: 'authFailures', scope: 'hub', reasons, threshold: 0, windowSeconds: 600 });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  assert.deepEqual((r.body as { reasons?: string[] }).reasons, reasons);
}

/** A TLS handshake the hub should refuse; resolves with the client's error code. */
function refusedHandshake(port: number, localAddress: string, opts: ConnectionOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    // (tls.connect passes localAddress on to net.connect; the type does not list it.)
    const s = tlsConnect({ host: HOST, port, ca, ...opts, ...({ localAddress } as object) }, () => {
      s.destroy();
      reject(new Error(`port ${port}: the handshake succeeded with ${s.getProtocol()}`));
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

const TLS11: ConnectionOptions = { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' };
/** Camellia: in OpenSSL, excluded by node's default cipher list (`!CAMELLIA`), which the hub keeps. */
const CAMELLIA_ONLY: ConnectionOptions = { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-CAMELLIA128-SHA256:ECDHE-ECDSA-CAMELLIA128-SHA256:CAMELLIA128-SHA256' };

async function createDevice(id: string): Promise<string> {
  const r = await rest('PUT', `/devices/${id}`, { deviceId: id });
  assert.equal(r.status, 200);
  const key = (r.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey;
  keys.set(id, key);
  return key;
}

before(async () => {
  hub = await startHubProcess({ address: HOST });
  hubRunning = true;
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  await createDevice('d1');
  await createDevice('d2');
});

after(async () => {
  if (hubRunning) await hub.stop();
  removeDir(hub.dataDir);
});

describe("a device touching another device's topics or links", () => {
  it("MQTT publish on another device's topic: closed, an audit row with address and reason, counted, and a rule on cross_device fires", async () => {
    await putRule('cross-device', ['cross_device']);
    // A bad login is not what that rule watches.
    const bad = await connectRaw(HOST, ca, connectPacket(HOST, 'd1', deviceToken(HOST, 'd1', keys.get('d2') ?? '')));
    assert.equal(bad.code, 4);
    bad.client.end();

    const { code, client } = await connectRaw(HOST, ca, connectPacket(HOST, 'd1', deviceToken(HOST, 'd1', keys.get('d1') ?? '')), undefined, MQTT_DEVICE);
    assert.equal(code, 0);
    const before = await failures('mqtt', 'cross_device');
    client.send({ cmd: 'publish', topic: 'devices/d2/messages/events/', payload: Buffer.from('spoofed'), qos: 1, messageId: 1, retain: false, dup: false });
    await client.closed;
    const row = await auditRow((e) => e.identity === 'd1' && e.reasonCode === 'cross_device' && /publish/.test(e.reason ?? ''), 'the cross-device publish');
    assert.equal(row.subject, 'device');
    assert.equal(row.remote, MQTT_DEVICE);
    assert.equal(row.protocol, 'mqtt');
    assert.match(row.reason ?? '', /devices\/d2\/messages\/events/);
    assert.equal(await failures('mqtt', 'cross_device'), before + 1);
    const alert = await firedFor('cross-device');
    assert.equal(alert.key, 'hub');
    assert.equal((alert.details as { reason?: string }).reason, 'cross_device');
  });

  it("MQTT subscribe to another device's C2D topic: closed, an audit row, counted", async () => {
    const { code, client } = await connectRaw(HOST, ca, connectPacket(HOST, 'd1', deviceToken(HOST, 'd1', keys.get('d1') ?? '')), undefined, MQTT_DEVICE);
    assert.equal(code, 0);
    const before = await failures('mqtt', 'cross_device');
    client.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'devices/d2/messages/devicebound/#', qos: 1 }] });
    await client.closed;
    const row = await auditRow((e) => e.identity === 'd1' && e.reasonCode === 'cross_device' && /subscri/.test(e.reason ?? ''), 'the cross-device subscription');
    assert.equal(row.remote, MQTT_DEVICE);
    assert.match(row.reason ?? '', /devices\/d2\/messages\/devicebound/);
    assert.equal(await failures('mqtt', 'cross_device'), before + 1);
  });

  it("AMQP attach to another device's link: the connection is closed, an audit row, counted", async () => {
    const conn = await new Promise<rhea.Connection>((resolve, reject) => {
      const c = rhea.create_container().connect({ host: HOST, port: 5671, transport: 'tls', ca, localAddress: AMQP_DEVICE, reconnect: false } as never);
      c.once('connection_open', () => resolve(c));
      c.once('disconnected', (ctx: rhea.EventContext & { error?: Error }) => reject(ctx.error ?? new Error('disconnected')));
    });
    const cbsIn = conn.open_receiver('$cbs');
    const cbsOut = conn.open_sender('$cbs');
    const status = new Promise<number>((resolve) => cbsIn.on('message', (ctx: rhea.EventContext) => resolve(Number(ctx.message?.application_properties?.['status-code']))));
    await new Promise<void>((resolve) => cbsOut.once('sendable', () => resolve()));
    const token = generateSasToken({ resource: `${HOST}/devices/d1`, key: keys.get('d1') ?? '', expiry: Math.floor(Date.now() / 1000) + 600 });
    cbsOut.send({ to: '$cbs', reply_to: 'cbs', message_id: 'd1', application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: `${HOST}/devices/d1` }, body: token });
    assert.equal(await status, 200);
    const before = await failures('amqp', 'cross_device');
    const closed = new Promise<string | undefined>((resolve) => {
      conn.once('connection_close', (ctx: rhea.EventContext) => resolve((ctx.connection.error as { condition?: string } | undefined)?.condition));
      conn.once('disconnected', () => resolve('disconnected'));
    });
    // The refused link and the closed connection come as errors; without a listener rhea throws them.
    conn.on('sender_error', () => undefined);
    conn.on('connection_error', () => undefined);
    conn.open_sender('/devices/d2/messages/events');
    assert.equal(await closed, 'amqp:unauthorized-access');
    const row = await auditRow((e) => e.identity === 'd1' && e.reasonCode === 'cross_device' && e.protocol === 'amqp', 'the cross-device attach');
    assert.equal(row.remote, AMQP_DEVICE);
    assert.match(row.reason ?? '', /\/devices\/d2\/messages\/events/);
    assert.equal(await failures('amqp', 'cross_device'), before + 1);
  });
});

describe('refused TLS handshakes', () => {
  it('a TLS 1.1 client and a client offering only disallowed ciphers, on 8883, 443 and 5671: an audit row each with address, protocol and reason, counted, and a rule fires', async () => {
    // This rule through the CLI.
    const set = cli(['alert', 'rule', 'set', 'tls-refused', '--data-dir', hub.dataDir, '--kind', 'authFailures', '--reasons', 'tls_version,tls_cipher', '--threshold', '0', '--window', '10m']);
    assert.equal(set.status, 0, set.stderr);
    assert.deepEqual((JSON.parse(set.stdout) as Array<{ reasons?: string[] }>)[0]?.reasons, ['tls_version', 'tls_cipher']);
    for (const { port, protocol } of PORTS) {
      const beforeVersion = await failures(protocol, 'tls_version');
      const beforeCipher = await failures(protocol, 'tls_cipher');
      await refusedHandshake(port, OLD_TLS, TLS11);
      const old = await auditRow((e) => e.remote === OLD_TLS && e.protocol === protocol && e.reasonCode === 'tls_version', `TLS 1.1 on ${port}`);
      assert.equal(old.subject, 'connection');
      assert.match(old.reason ?? '', /unsupported protocol/);
      await refusedHandshake(port, BAD_CIPHER, CAMELLIA_ONLY);
      const cipher = await auditRow((e) => e.remote === BAD_CIPHER && e.protocol === protocol && e.reasonCode === 'tls_cipher', `Camellia only on ${port}`);
      assert.match(cipher.reason ?? '', /no shared cipher/);
      assert.equal(await failures(protocol, 'tls_version'), beforeVersion + 1);
      assert.equal(await failures(protocol, 'tls_cipher'), beforeCipher + 1);
    }
    const alert = await firedFor('tls-refused');
    assert.match(String(alert.summary), /failed authentications/);
  });

  it('a flood from one address: every handshake counted, one audit row at once, and one summary row for the rest', async () => {
    const before = await failures('mqtt', 'tls_version');
    const N = 30;
    for (let i = 0; i < N; i++) await refusedHandshake(8883, FLOOD, TLS11);
    assert.equal(await failures('mqtt', 'tls_version'), before + N, 'the metric counts each one');
    await auditRow((e) => e.remote === FLOOD, 'the first refusal from the flooding address');
    await sleep(500);
    assert.equal((await entries()).filter((e) => e.remote === FLOOD).length, 1, 'one row while the minute lasts');
    // Stopping the hub writes the pending summary; read it with the CLI on the data dir.
    assert.equal(await hub.stop(), 0);
    hubRunning = false;
    const listed = cli(['audit-log', 'list', '--data-dir', hub.dataDir, '--type', 'auth', '--limit', '1000']);
    assert.equal(listed.status, 0, listed.stderr);
    const rows = (JSON.parse(listed.stdout) as { entries: Entry[] }).entries.filter((e) => e.remote === FLOOD);
    assert.equal(rows.length, 2, JSON.stringify(rows));
    assert.ok(rows.some((e) => new RegExp(`${N - 1} more`).test(e.reason ?? '')), JSON.stringify(rows));
    assert.ok(rows.every((e) => e.reasonCode === 'tls_version' && e.protocol === 'mqtt'));
  });
});
