/**
 * Two nodes' session-side parts on one NATS (no hub processes): what a node does when another
 * node's part speaks. A direct method invoked on B reaches the device session held by A; C2D mail
 * and a desired patch published on B reach A's session; an identity change, a revoked certificate
 * or a policy change on B drops A's sessions; a session claimed on B closes A's copy; operators,
 * a renewed policy key and settings changed on B bite on A.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { connectNatsBus } from '../src/bus/nats/nats-bus.js';
import { HubBus, SUBJECTS } from '../src/bus/subjects.js';
import type { JsonObject, JsonValue } from '../src/core/json.js';
import { ConnectionTable, type LiveSession } from '../src/hub/connections.js';
import { MethodService } from '../src/hub/methods/method-service.js';
import { SessionGuard } from '../src/hub/session-guard.js';
import { MessageTally } from '../src/core/tally.js';
import type { DeviceRecord } from '../src/core/types.js';
import { OperatorService } from '../src/access/operators.js';
import { PolicyCache } from '../src/auth/service-authenticator.js';
import { PolicyService } from '../src/policies/policy-service.js';
import { SettingsService } from '../src/settings/settings-service.js';
import { SecurityEvents } from '../src/core/security-events.js';
import type { AccessGate } from '../src/access/gate.js';
import type { EnrollmentService } from '../src/dps/enrollment-service.js';
import type { HubSettings } from '../src/core/settings.js';
import { SecretBox } from '../src/core/secret-box.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { removeDir, tempDir } from './support/hub-process.js';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { keyFingerprint } from '../src/auth/sas.js';

const KEY_1 = Buffer.alloc(32, 1).toString('base64');
const KEY_2 = Buffer.alloc(32, 2).toString('base64');
const KEY_3 = Buffer.alloc(32, 3).toString('base64');

/** The settings service's log, unread here. */
const silentLog = { info: () => undefined, warn: () => undefined };

const NATS = process.env.GATEHOUSE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

interface Node {
  bus: HubBus;
  connections: ConnectionTable;
  methods: MethodService;
  tally: MessageTally;
}

class FakeSession implements LiveSession {
  closed: string | undefined;
  desired: JsonObject[] = [];
  mail = 0;
  constructor(
    readonly deviceId: string,
    readonly moduleId: string | null,
    private readonly node: Node,
    readonly extra: Partial<LiveSession> = {},
  ) {
    Object.assign(this, extra);
  }
  close(reason: string): void {
    this.closed = reason;
    this.node.connections.unregister(this);
  }
  pushDesired(patch: JsonObject): boolean {
    this.desired.push(patch);
    return true;
  }
  sendMethodRequest(name: string, payload: JsonValue, requestId: string): boolean {
    // The device answers on its own connection, to the node holding it.
    setTimeout(() => this.node.methods.respond(this.deviceId, this.moduleId, requestId, 200, { name, payload, answeredBy: this.node.bus.nodeId }), 5);
    return true;
  }
  notifyC2d(): void {
    this.mail++;
  }
  acceptsMethods(): boolean {
    return true;
  }
}

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('two nodes on one NATS', () => {
  const prefix = `t${randomUUID().replace(/-/g, '')}`;
  let a: Node;
  let b: Node;
  const handlerErrors: unknown[] = [];
  const disabledInStore = new Set<string>();
  /** A device's primary key in the store when the test changed it (else KEY_1). */
  const keysInStore = new Map<string, string>();

  const node = async (id: string): Promise<Node> => {
    const bus = new HubBus(await connectNatsBus({ nodeId: id, url: NATS, onHandlerError: (err) => handlerErrors.push(err) }), prefix);
    const tally = new MessageTally();
    const connections = new ConnectionTable(bus, tally);
    // What the store says of an identity, for the recheck after a reconnect: every device exists
    // and is enabled unless the test put it in `disabledInStore`.
    new SessionGuard(connections, bus, () => undefined, {
      device: async (deviceId) =>
        ({ status: disabledInStore.has(deviceId) ? 'disabled' : 'enabled', auth: { type: 'sas', primaryKey: keysInStore.get(deviceId) ?? KEY_1, secondaryKey: KEY_2 } }) as DeviceRecord,
      module: async () => undefined,
      revoked: async () => false,
    });
    return { bus, connections, methods: new MethodService(connections, bus, tally), tally };
  };

  /** A session registered on `n`, once its method subscription reached the server. */
  const connect = async (n: Node, deviceId: string, extra: Partial<LiveSession> = {}) => {
    const s = new FakeSession(deviceId, null, n, extra);
    n.connections.register(s);
    await n.bus.bus.flush();
    return s;
  };

  before(async () => {
    a = await node('node-a');
    b = await node('node-b');
  });
  after(async () => {
    await a.bus.bus.close();
    await b.bus.bus.close();
    assert.deepEqual(handlerErrors, [], 'no bus handler failed');
  });

  it('a method invoked on B is answered by the device held by A; a device nobody holds is DeviceNotOnline', async () => {
    await connect(a, 'm1');
    const r = await b.methods.invoke('m1', null, { methodName: 'reboot', payload: { at: 1 }, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 0 });
    assert.deepEqual(r, { status: 200, payload: { name: 'reboot', payload: { at: 1 }, answeredBy: 'node-a' } });
    assert.equal(a.tally.methodOut, 1);
    await assert.rejects(b.methods.invoke('nobody', null, { methodName: 'reboot', payload: null, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 0 }), { code: 'DeviceNotOnline' });
  });

  it('a method waits for its connect timeout until the device connects on another node', async () => {
    const call = b.methods.invoke('late', null, { methodName: 'hello', payload: null, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 5 });
    await new Promise((r) => setTimeout(r, 200));
    await connect(a, 'late');
    assert.equal((await call).status, 200);
  });

  it('C2D mail and a desired patch published on B reach the session on A', async () => {
    const s = await connect(a, 'c1');
    b.bus.publish(SUBJECTS.c2dEnqueued, { deviceId: 'c1', cause: 'sent' });
    b.bus.publish(SUBJECTS.desiredChanged, { deviceId: 'c1', moduleId: null, patch: { x: 1, $version: 2 } });
    await until('the mail and the patch', () => s.mail === 1 && s.desired.length === 1);
    assert.deepEqual(s.desired, [{ x: 1, $version: 2 }]);
    assert.equal(a.tally.twinOut, 1);
  });

  it('after a reconnect, A reads again what it may have missed: its sessions look at their mail, and one whose identity was disabled meanwhile goes', async () => {
    const kept = await connect(a, 'r1');
    const gone = await connect(a, 'r2');
    disabledInStore.add('r2'); // disabled while A was away: the identity.changed never reached it
    b.bus.publish(SUBJECTS.busResync, { reason: 'reconnected' });
    await until('the recheck', () => gone.closed !== undefined && kept.mail === 1);
    assert.equal(gone.closed, 'identity disabled');
    assert.equal(kept.closed, undefined);
    assert.equal(a.connections.get('r2', null), undefined);
  });

  it('after a reconnect, a SAS session whose key was replaced meanwhile goes; one on the other, unchanged key stays', async () => {
    const onPrimary = await connect(a, 'k1', { authMethod: 'sas', keyFingerprint: keyFingerprint(KEY_1) });
    const onSecondary = await connect(a, 'k2', { authMethod: 'sas', keyFingerprint: keyFingerprint(KEY_2) });
    keysInStore.set('k1', KEY_3); // both re-keyed (primary) while A was away
    keysInStore.set('k2', KEY_3);
    b.bus.publish(SUBJECTS.busResync, { reason: 'reconnected' });
    await until('the recheck', () => onPrimary.closed !== undefined && onSecondary.mail === 1);
    assert.equal(onPrimary.closed, 'identity re-keyed');
    assert.equal(onSecondary.closed, undefined, 'its key is still the secondary');
  });

  it('a disable, a thumbprint rotation, a revocation and a policy change on B drop what they should on A', async () => {
    const disabled = await connect(a, 'd1');
    const other = await connect(a, 'd2');
    b.bus.publish(SUBJECTS.identityChanged, { kind: 'device-updated', deviceId: 'd1', credentialsOrStatus: true });
    await until('d1 dropped', () => disabled.closed !== undefined);
    assert.equal(other.closed, undefined);
    assert.equal(a.connections.get('d1', null), undefined);

    const kept = await connect(a, 'rot', { certificateThumbprints: ['AA', 'BB'] });
    b.bus.publish(SUBJECTS.identityChanged, { kind: 'device-updated', deviceId: 'rot', credentialsOrStatus: true, keepThumbprints: ['BB', 'CC'] });
    const gone = await connect(a, 'rot2', { certificateThumbprints: ['AA'] });
    b.bus.publish(SUBJECTS.identityChanged, { kind: 'device-updated', deviceId: 'rot2', credentialsOrStatus: true, keepThumbprints: ['CC'] });
    await until('rot2 dropped', () => gone.closed !== undefined);
    assert.equal(kept.closed, undefined, 'a session on a still-listed certificate stays');

    const x509 = await connect(a, 'x1', { certificateSerial: '0a:1b' });
    b.bus.publish(SUBJECTS.certificatesRevoked, { certificates: [{ serial: '0A1B', thumbprintSha256: 'FF', caName: 'ca' }] });
    await until('x1 dropped', () => x509.closed === 'certificate revoked');

    const viaPolicy = await connect(a, 'p1', { authMethod: 'policy-sas', policyName: 'Gateway' });
    b.bus.publish(SUBJECTS.policyChanged, { name: 'gateway', change: 'keys-renewed', dropSessions: 'shared access policy gateway: primary key regenerated' });
    await until('p1 dropped', () => viaPolicy.closed !== undefined);
    assert.equal(other.closed, undefined);
  });

  it('a session claimed on B closes the copy on A, and A no longer answers for it; connection state events say connected, connected', async () => {
    const events: string[] = [];
    for (const n of [a, b]) {
      n.connections.routeEventsTo({
        hubName: 'hub',
        wants: () => true,
        emit: (_source, build) => void Promise.resolve(build()).then((m) => m.deviceId === 'moved' && events.push(`${n.bus.nodeId} ${m.properties.opType ?? '?'} ${String((JSON.parse(m.body.toString('utf8')) as { sequenceNumber: string }).sequenceNumber)}`)),
      });
    }
    const old = await connect(a, 'moved');
    const local = await connect(a, 'moved');
    assert.equal(old.closed, undefined, 'a local takeover: the caller closes the replaced session');
    old.close('replaced');
    const now = await connect(b, 'moved');
    await until('the old session closed', () => local.closed !== undefined);
    assert.match(local.closed ?? '', /taken over on node node-b/);
    assert.equal(now.closed, undefined);
    await new Promise((r) => setTimeout(r, 50));
    // Connected three times (each takeover a reconnect), never a disconnect: the device stayed on.
    assert.deepEqual(events.map((e) => e.split(' ').slice(0, 2).join(' ')), ['node-a deviceConnected', 'node-a deviceConnected', 'node-b deviceConnected']);
    const seqs = events.map((e) => e.split(' ')[2] ?? '');
    assert.ok(seqs[0]! < seqs[1]! && seqs[1]! < seqs[2]!, `sequence numbers grow: ${seqs.join(', ')}`);
    await a.bus.bus.flush();
    const r = await b.methods.invoke('moved', null, { methodName: 'where', payload: null, responseTimeoutInSeconds: 5, connectTimeoutInSeconds: 0 });
    assert.equal((r.payload as { answeredBy: string }).answeredBy, 'node-b');
  });

  it('an operator created and disabled on B is known, then refused, on A (one store, two nodes)', async () => {
    const dir = tempDir('bus-ops');
    const store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(randomBytes(32)));
    try {
      const clock = { now: () => Date.now() };
      const onA = new OperatorService(store, clock, () => 'hub.example', a.bus);
      const onB = new OperatorService(store, clock, () => 'hub.example', b.bus);
      await onA.load();
      await onB.load();
      await onB.create('ci-bot');
      await onB.createAssignment('ci-bot', 'Owner', '/', 'test');
      await until('A to know the operator and its role', () => onA.get('ci-bot') !== undefined && onA.hasEnabledOwner());
      const { token } = await onA.issueToken('ci-bot', 600);
      assert.equal((await onA.authenticate(token)).name, 'ci-bot');
      await onB.update('ci-bot', { enabled: false });
      await until('A to see it disabled', () => onA.get('ci-bot')?.enabled === false);
      await assert.rejects(onA.authenticate(token));
    } finally {
      await store.close();
      removeDir(dir);
    }
  });

  it("a policy key renewed on B reaches A's policy cache at once, not at its 5 s expiry", async () => {
    const dir = tempDir('bus-policy');
    const store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(randomBytes(32)));
    try {
      const clock = { now: () => Date.now() };
      const ops = new OperatorService(store, clock, () => 'hub.example', b.bus);
      await ops.load();
      const cacheA = new PolicyCache(store, clock);
      new PolicyService(store, cacheA, a.bus, ops, new SecurityEvents(), clock);
      const onB = new PolicyService(store, new PolicyCache(store, clock), b.bus, ops, new SecurityEvents(), clock);
      await onB.put('svc', 'ServiceConnect', 'test');
      const before = (await cacheA.findPolicy('svc'))?.primaryKey;
      assert.ok(before !== undefined);
      const renewed = await onB.regenerateKey('svc', 'primary', 'test');
      const end = Date.now() + 3000;
      let seen: string | undefined = before;
      while (seen === before && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 20));
        seen = (await cacheA.findPolicy('svc'))?.primaryKey;
      }
      assert.equal(seen, renewed.primaryKey);
    } finally {
      await store.close();
      removeDir(dir);
    }
  });

  it("settings changed on B are applied by A's gate", async () => {
    const dir = tempDir('bus-settings');
    const store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(randomBytes(32)));
    try {
      const clock = { now: () => Date.now() };
      const applied: Record<string, HubSettings[]> = { a: [], b: [] };
      const gate = (who: 'a' | 'b') =>
        ({
          impact: () => [],
          apply: (s: HubSettings) => {
            applied[who]?.push(s);
            return { sessionsClosed: 0, socketsClosed: 0 };
          },
        }) as unknown as AccessGate;
      const ops = new OperatorService(store, clock, () => 'hub.example', b.bus);
      await ops.load();
      const enrollments = {} as EnrollmentService;
      const onA = new SettingsService(store, clock, new SecurityEvents(), a.bus, silentLog);
      const onB = new SettingsService(store, clock, new SecurityEvents(), b.bus, silentLog);
      await onA.load();
      await onB.load();
      onA.bind({ gate: gate('a'), operators: ops, enrollments });
      onB.bind({ gate: gate('b'), operators: ops, enrollments });
      const r = await onB.change({ patch: { c2d: { maxDeliveryCount: 5 } }, actor: 'operator:test' });
      assert.equal(r.dryRun, false);
      await until("A's gate to apply them", () => applied.a?.length === 1);
      assert.equal(applied.a?.[0]?.c2d.maxDeliveryCount, 5);
      assert.equal(onA.current.version, onB.current.version);
      assert.equal(applied.b?.length, 1, 'B applied its own change once');
    } finally {
      await store.close();
      removeDir(dir);
    }
  });
});
