/**
 * Identities are cached where devices connect (src/hub/identity-cache.ts); a change made through
 * another node must still bite at once (issue 19, item 4). Two nodes on one PostgreSQL schema and
 * NATS; the devices connect to A (so A has them cached), the operator works through B, and the
 * next CONNECT to A must see the change: deleted or disabled devices and replaced keys are
 * refused, live sessions are dropped as before, and the connection state the owner writes in
 * batches reads right through the other node, also after a disconnect and a reconnect.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { startAgent, startCluster, type Agent, type Cluster } from './support/cluster.js';
import { connectPacket, mqttClientOn, type MqttClientEnd } from './support/mqtt-packets.js';
import { deviceToken } from './support/raw-mqtt.js';

const HOSTNAME = 'hub.identity-cache.test';
const [A, B] = ['127.0.131.1', '127.0.131.2'] as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let cluster: Cluster;
let agentB: Agent;
let ca: string;

async function rest(method: string, path: string, body?: unknown, ifMatch?: string): Promise<{ status: number; body: unknown }> {
  return agentB.call('rest', { hostname: HOSTNAME, key: cluster.ownerKey, method, path, body, ...(ifMatch === undefined ? {} : { ifMatch }) });
}

async function createDevice(deviceId: string): Promise<{ key: string; etag: string; body: Record<string, unknown> }> {
  const r = await rest('PUT', `/devices/${deviceId}`, { deviceId });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const body = r.body as { etag: string; authentication: { symmetricKey: { primaryKey: string } } };
  return { key: body.authentication.symmetricKey.primaryKey, etag: body.etag, body: r.body as Record<string, unknown> };
}

/** A raw MQTT CONNECT to node A with a SAS token; the CONNACK code and the client. */
async function connectToA(deviceId: string, key: string): Promise<{ code: number | undefined; client: MqttClientEnd }> {
  const socket = connect({ host: A, port: 8883, servername: HOSTNAME, ca });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  const client = mqttClientOn(socket);
  client.send(connectPacket(HOSTNAME, deviceId, deviceToken(HOSTNAME, deviceId, key)));
  const p = await client.next(5000);
  return { code: p?.cmd === 'connack' ? p.returnCode : undefined, client };
}

async function connectionState(deviceId: string): Promise<string> {
  const r = await rest('GET', `/devices/${deviceId}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return (r.body as { connectionState: string }).connectionState;
}

/** Polls through B until the state reads `want` (the owner A writes it; B reads the shared store). */
async function waitForState(deviceId: string, want: string): Promise<void> {
  let seen = '';
  for (const until = Date.now() + 3000; Date.now() < until; await sleep(50)) {
    seen = await connectionState(deviceId);
    if (seen === want) return;
  }
  assert.equal(seen, want, `connection state of ${deviceId} through B`);
}

/** Connects to A and closes at once, so A holds the identity in its cache. */
async function warm(deviceId: string, key: string): Promise<void> {
  const { code, client } = await connectToA(deviceId, key);
  assert.equal(code, 0, 'the first connect is accepted');
  client.end();
  await client.closed;
}

describe('identities cached on one node, changed through another (PostgreSQL + NATS)', () => {
  before(async () => {
    cluster = await startCluster({ addresses: [A, B], hostname: HOSTNAME });
    ca = readFileSync(cluster.nodes[0]!.caFile, 'utf8');
    agentB = await startAgent(HOSTNAME, B);
  });

  after(async () => {
    agentB?.kill();
    await cluster?.stop();
  });

  it('a device deleted through B is refused by A at the next connect, like a device that never existed', async () => {
    const { key } = await createDevice('ic-del');
    await warm('ic-del', key);
    assert.equal((await rest('DELETE', '/devices/ic-del')).status, 204);
    const { code, client } = await connectToA('ic-del', key);
    client.end();
    // CONNACK 4, as for an unknown device: the refusal does not tell that it existed.
    assert.equal(code, 4);
    const never = await connectToA('ic-never-existed', key);
    never.client.end();
    assert.equal(never.code, 4);
  });

  it('an id A refused as unknown connects on A at once after it is created through B', async () => {
    const early = await connectToA('ic-late', Buffer.alloc(32, 7).toString('base64'));
    early.client.end();
    assert.equal(early.code, 4);
    const { key } = await createDevice('ic-late');
    // "At once": as soon as B's announcement reached A over the bus (milliseconds; 2 s allowed).
    let code: number | undefined;
    for (const end = Date.now() + 2000; code !== 0 && Date.now() < end; await new Promise((r) => setTimeout(r, 50))) {
      const attempt = await connectToA('ic-late', key);
      attempt.client.end();
      code = attempt.code;
    }
    assert.equal(code, 0);
  });

  it('a device disabled through B loses its live session on A, and A refuses it at once', async () => {
    const { key, body } = await createDevice('ic-dis');
    await warm('ic-dis', key);
    const live = await connectToA('ic-dis', key);
    assert.equal(live.code, 0);
    const r = await rest('PUT', '/devices/ic-dis', { ...body, status: 'disabled' }, '*');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const dropped = await Promise.race([live.client.closed.then(() => true), sleep(1500).then(() => false)]);
    assert.ok(dropped, 'the live session on A is dropped');
    const again = await connectToA('ic-dis', key);
    again.client.end();
    assert.equal(again.code, 5, 'valid credentials of a disabled device: not authorized');
  });

  it('keys replaced through B: A refuses the old key at once and takes the new one', async () => {
    const { key, body } = await createDevice('ic-key');
    await warm('ic-key', key);
    const fresh = Buffer.alloc(32, 7).toString('base64');
    const r = await rest('PUT', '/devices/ic-key', { ...body, authentication: { type: 'sas', symmetricKey: { primaryKey: fresh, secondaryKey: fresh } } }, '*');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const old = await connectToA('ic-key', key);
    old.client.end();
    assert.equal(old.code, 4);
    const ok = await connectToA('ic-key', fresh);
    ok.client.end();
    assert.equal(ok.code, 0);
  });

  it('the connection state A writes reads right through B: Connected, Disconnected, and Connected after a reconnect', async () => {
    const { key } = await createDevice('ic-state');
    const first = await connectToA('ic-state', key);
    assert.equal(first.code, 0);
    await waitForState('ic-state', 'Connected');
    first.client.end();
    await first.client.closed;
    await waitForState('ic-state', 'Disconnected');
    // Disconnect and reconnect back to back: the last word is Connected.
    const second = await connectToA('ic-state', key);
    assert.equal(second.code, 0);
    second.client.end();
    const third = await connectToA('ic-state', key);
    assert.equal(third.code, 0);
    await sleep(300);
    await waitForState('ic-state', 'Connected');
    const stats = await rest('GET', '/statistics/service');
    assert.equal(stats.status, 200, JSON.stringify(stats.body));
    assert.ok((stats.body as { connectedDeviceCount: number }).connectedDeviceCount >= 1);
    third.client.end();
    await third.client.closed;
    await waitForState('ic-state', 'Disconnected');
  });
});
