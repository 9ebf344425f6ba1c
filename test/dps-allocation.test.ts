/**
 * Allocation (src/dps/allocation.ts): hashed, static and custom (a real local webhook) policies,
 * reprovisioning; and one end-to-end run: a device registers through one hub's DPS with the
 * unmodified provisioning SDK and is assigned to a second, linked hub, where its identity is
 * created over that hub's REST API and where it connects.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import iothub from 'azure-iothub';
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import provDevice from 'azure-iot-provisioning-device';
import provMqtt from 'azure-iot-provisioning-device-mqtt';
import symmetricKey from 'azure-iot-security-symmetric-key';
import provService from 'azure-iot-provisioning-service';
import { Allocator, type AllocationRequest, type LinkedHub } from '../src/dps/allocation.js';
import { isHubError } from '../src/core/errors.js';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';

const HUBS: LinkedHub[] = [
  { hostName: 'hub-a.example', allocationWeight: 1 },
  { hostName: 'hub-b.example', allocationWeight: 1, connectionString: 'HostName=hub-b.example;SharedAccessKeyName=iothubowner;SharedAccessKey=AAAA' },
  { hostName: 'hub-c.example', allocationWeight: 1, connectionString: 'HostName=hub-c.example;SharedAccessKeyName=iothubowner;SharedAccessKey=AAAA' },
];
const WEBHOOK_HOST = '127.0.44.3';

function req(registrationId: string, enrollment: AllocationRequest['enrollment'], extra: Partial<AllocationRequest> = {}): AllocationRequest {
  return { registrationId, enrollment, kind: 'individual', ...extra };
}

describe('Allocator', () => {
  const allocator = new Allocator(() => HUBS);

  it('hashed spreads 200 ids over 3 hubs roughly evenly, and is stable', async () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      const id = `device-${i}`;
      const { hub } = await allocator.allocate(req(id, { allocationPolicy: 'hashed', iotHubs: [] }));
      counts.set(hub.hostName, (counts.get(hub.hostName) ?? 0) + 1);
      const again = await allocator.allocate(req(id, { iotHubs: ['hub-c.example', 'hub-b.example', 'hub-a.example'] }));
      assert.equal(again.hub.hostName, hub.hostName, 'the same id lands on the same hub, whatever the order of iotHubs');
    }
    assert.equal(counts.size, 3);
    for (const [host, n] of counts) assert.ok(n >= 40 && n <= 95, `${host} got ${n} of 200`);
  });

  it('hashed only uses the enrollment hubs that are linked; geoLatency behaves as hashed', async () => {
    for (let i = 0; i < 30; i++) {
      const { hub } = await allocator.allocate(req(`d${i}`, { allocationPolicy: 'hashed', iotHubs: ['hub-b.example', 'unlinked.example'] }));
      assert.equal(hub.hostName, 'hub-b.example');
      const geo = await allocator.allocate(req(`d${i}`, { allocationPolicy: 'geoLatency', iotHubs: [] }));
      const hashed = await allocator.allocate(req(`d${i}`, { allocationPolicy: 'hashed', iotHubs: [] }));
      assert.equal(geo.hub.hostName, hashed.hub.hostName);
    }
    await assert.rejects(allocator.allocate(req('x', { iotHubs: ['unlinked.example'] })), (e) => isHubError(e) && e.code === 'ArgumentInvalid');
  });

  it('static takes the one hub in iotHubs and refuses anything else', async () => {
    const r = await allocator.allocate(req('s1', { allocationPolicy: 'static', iotHubs: ['HUB-C.example'], initialTwin: { tags: { a: 1 } } }));
    assert.equal(r.hub.hostName, 'hub-c.example');
    assert.deepEqual(r.initialTwin, { tags: { a: 1 } });
    for (const iotHubs of [['hub-a.example', 'hub-b.example'], ['unlinked.example']]) {
      await assert.rejects(allocator.allocate(req('s1', { allocationPolicy: 'static', iotHubs })), (e) => isHubError(e) && e.code === 'ArgumentInvalid');
    }
  });

  it('updateHubAssignment false keeps the previous hub; true re-runs the policy', async () => {
    let id = '';
    for (let i = 0; id === ''; i++) {
      const { hub } = await allocator.allocate(req(`re-${i}`, { iotHubs: [] }));
      if (hub.hostName !== 'hub-b.example') id = `re-${i}`;
    }
    const keep = await allocator.allocate(req(id, { iotHubs: [], reprovisionPolicy: { updateHubAssignment: false } }, { previousHub: 'hub-b.example' }));
    assert.equal(keep.hub.hostName, 'hub-b.example');
    const rerun = await allocator.allocate(req(id, { iotHubs: [], reprovisionPolicy: { updateHubAssignment: true } }, { previousHub: 'hub-b.example' }));
    assert.notEqual(rerun.hub.hostName, 'hub-b.example');
  });

  describe('custom webhook', () => {
    let server: Server;
    let url: string;
    const seen: unknown[] = [];
    let answer: (body: { deviceRuntimeContext: { payload?: { want?: string } } }) => { delayMs?: number; status?: number; json: unknown };

    before(async () => {
      server = createServer((r: IncomingMessage, res) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Parameters<typeof answer>[0];
          seen.push(body);
          const a = answer(body);
          setTimeout(() => {
            if (res.destroyed) return;
            res.writeHead(a.status ?? 200, { 'content-type': 'application/json' });
            res.end(JSON.stringify(a.json));
          }, a.delayMs ?? 0);
        });
      });
      await new Promise<void>((res) => server.listen(0, WEBHOOK_HOST, () => res()));
      url = `http://${WEBHOOK_HOST}:${(server.address() as AddressInfo).port}/allocate?code=x`;
    });

    after(async () => {
      server.closeAllConnections();
      await new Promise<void>((res) => server.close(() => res()));
    });

    const enrollment = () => ({
      allocationPolicy: 'custom',
      iotHubs: ['hub-a.example', 'hub-b.example'],
      customAllocationDefinition: { webhookUrl: url, apiVersion: '2021-10-01' },
      initialTwin: { tags: { from: 'enrollment' } },
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: 'secret-1', secondaryKey: 'secret-2' } },
    });

    it('uses the answer: hub, initial twin, payload; the webhook sees the context but no keys', async () => {
      seen.length = 0;
      answer = (b) => ({ json: { iotHubHostName: b.deviceRuntimeContext.payload?.want, initialTwin: { tags: { from: 'webhook' } }, payload: { hello: 'device' } } });
      const r = await allocator.allocate(req('c1', enrollment(), { kind: 'group', groupId: 'g1', payload: { want: 'hub-b.example' }, previousHub: 'hub-a.example' }));
      assert.equal(r.hub.hostName, 'hub-b.example');
      assert.deepEqual(r.initialTwin, { tags: { from: 'webhook' } });
      assert.deepEqual(r.payload, { hello: 'device' });
      const sent = seen[0] as Record<string, unknown>;
      assert.ok(sent.enrollmentGroup !== undefined && sent.individualEnrollment === undefined);
      assert.doesNotMatch(JSON.stringify(sent), /secret-/);
      assert.deepEqual(sent.deviceRuntimeContext, {
        registrationId: 'c1',
        symmetricKey: {},
        payload: { want: 'hub-b.example' },
        currentIotHubHostName: 'hub-a.example',
      });
      assert.deepEqual(sent.linkedHubs, ['hub-a.example', 'hub-b.example']);

      answer = () => ({ json: { iotHubHostName: 'hub-a.example' } });
      const plain = await allocator.allocate(req('c2', enrollment()));
      assert.equal(plain.hub.hostName, 'hub-a.example');
      assert.deepEqual(plain.initialTwin, { tags: { from: 'enrollment' } }, "the enrollment's twin when the webhook gives none");
      assert.equal(plain.payload, undefined);
      assert.ok((seen[1] as Record<string, unknown>).individualEnrollment !== undefined);
    });

    it('refuses an answer naming an unlinked hub, or none, or an error status', async () => {
      for (const a of [{ json: { iotHubHostName: 'evil.example' } }, { json: { payload: 1 } }, { status: 500, json: {} }]) {
        answer = () => a;
        await assert.rejects(allocator.allocate(req('c3', enrollment())), (e) => isHubError(e) && e.code === 'ArgumentInvalid');
      }
    });

    it('a webhook that does not answer in time fails the allocation', async () => {
      const quick = new Allocator(() => HUBS, { webhookTimeoutMs: 300 });
      answer = () => ({ delayMs: 2000, json: { iotHubHostName: 'hub-a.example' } });
      const t0 = Date.now();
      await assert.rejects(quick.allocate(req('c4', enrollment())), (e) => isHubError(e) && e.code === 'GatewayTimeout');
      assert.ok(Date.now() - t0 < 1500);
    });
  });
});

describe('two linked hubs', () => {
  const FIRST = '127.0.44.1';
  const SECOND = '127.0.44.2';
  let first: HubProcess;
  let second: HubProcess;

  before(async () => {
    second = await startHubProcess({ address: SECOND });
    first = await startHubProcess({ address: FIRST, extraArgs: ['--linked-hub', second.connectionString] });
  });

  after(async () => {
    assert.equal(await first.stop(), 0);
    assert.equal(await second.stop(), 0);
    removeDir(first.dataDir);
    removeDir(second.dataDir);
  });

  it('a static enrollment assigns the device to the linked hub, where it exists with its key and connects', async () => {
    const info = JSON.parse(cli(['info', '--data-dir', first.dataDir, '--json']).stdout) as { idScope: string; dpsConnectionString: string };
    const service = provService.ProvisioningServiceClient.fromConnectionString(info.dpsConnectionString);
    const { responseBody: enrollment } = await service.createOrUpdateIndividualEnrollment({
      registrationId: 'remote-1',
      deviceId: 'remote-dev-1',
      allocationPolicy: 'static',
      iotHubs: [SECOND],
      attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: '', secondaryKey: '' } },
      initialTwin: { tags: { site: 'far' }, properties: { desired: { interval: 5 } } },
    } as never);
    const key = String((enrollment as { attestation: { symmetricKey: { primaryKey: string } } }).attestation.symmetricKey.primaryKey);

    const client = provDevice.ProvisioningDeviceClient.create(FIRST, info.idScope, new provMqtt.Mqtt(), new symmetricKey.SymmetricKeySecurityClient('remote-1', key) as never);
    const state = (await client.register()) as unknown as { assignedHub: string; deviceId: string; status: string; substatus: string };
    assert.equal(state.assignedHub, SECOND);
    assert.equal(state.deviceId, 'remote-dev-1');
    assert.equal(state.status, 'assigned');
    assert.equal(state.substatus, 'initialAssignment');

    const secondRegistry = iothub.Registry.fromConnectionString(second.connectionString);
    const { responseBody: device } = await secondRegistry.get('remote-dev-1');
    assert.equal(device.authentication?.symmetricKey?.primaryKey, key);
    const { responseBody: twin } = await secondRegistry.getTwin('remote-dev-1');
    assert.equal(twin.tags.site, 'far');
    assert.equal(twin.properties.desired.interval, 5);
    await assert.rejects(iothub.Registry.fromConnectionString(first.connectionString).get('remote-dev-1'), 'not created on the first hub');

    const dev = deviceSdk.Client.fromConnectionString(`HostName=${state.assignedHub};DeviceId=${state.deviceId};SharedAccessKey=${key}`, deviceMqtt.Mqtt);
    await dev.setOptions({ ca: readFileSync(second.caFile, 'utf8') });
    await dev.open();
    await dev.sendEvent(new deviceSdk.Message('on the linked hub'));
    await dev.close();

    // Registering again keeps the identity on the linked hub.
    const again = (await provDevice.ProvisioningDeviceClient.create(
      FIRST,
      info.idScope,
      new provMqtt.Mqtt(),
      new symmetricKey.SymmetricKeySecurityClient('remote-1', key) as never,
    ).register()) as unknown as { assignedHub: string; substatus: string };
    assert.equal(again.assignedHub, SECOND);
    assert.equal(again.substatus, 'deviceDataMigrated');
  });

  describe('reprovisioning between the two hubs', () => {
    type State = { assignedHub: string; deviceId: string; status: string; substatus: string };
    let info: { idScope: string; dpsConnectionString: string };
    let service: InstanceType<typeof provService.ProvisioningServiceClient>;

    before(() => {
      info = JSON.parse(cli(['info', '--data-dir', first.dataDir, '--json']).stdout) as typeof info;
      service = provService.ProvisioningServiceClient.fromConnectionString(info.dpsConnectionString);
    });

    const hubOf = (host: string): HubProcess => (host === FIRST ? first : host === SECOND ? second : assert.fail(`unexpected hub ${host}`));

    async function register(registrationId: string, key: string): Promise<State> {
      const client = provDevice.ProvisioningDeviceClient.create(FIRST, info.idScope, new provMqtt.Mqtt(), new symmetricKey.SymmetricKeySecurityClient(registrationId, key) as never);
      return (await client.register()) as unknown as State;
    }

    /** The device connects, with the key it was provisioned with, to the hub it was assigned to. */
    async function connects(state: State, key: string): Promise<void> {
      const dev = deviceSdk.Client.fromConnectionString(`HostName=${state.assignedHub};DeviceId=${state.deviceId};SharedAccessKey=${key}`, deviceMqtt.Mqtt);
      await dev.setOptions({ ca: readFileSync(hubOf(state.assignedHub).caFile, 'utf8') });
      await dev.open();
      try {
        await dev.sendEvent(new deviceSdk.Message(`on ${state.assignedHub}`));
      } finally {
        await dev.close();
      }
    }

    /**
     * A static enrollment on the second hub with this reprovision policy; the device registers,
     * its twin there gets data of its own; then the enrollment names the first hub instead.
     */
    async function enrolledOnSecondThenRetargeted(
      registrationId: string,
      reprovisionPolicy: { updateHubAssignment: boolean; migrateDeviceData: boolean } | undefined,
    ): Promise<{ key: string; deviceId: string }> {
      const deviceId = `${registrationId}-dev`;
      const { responseBody: created } = await service.createOrUpdateIndividualEnrollment({
        registrationId,
        deviceId,
        allocationPolicy: 'static',
        iotHubs: [SECOND],
        attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: '', secondaryKey: '' } },
        initialTwin: { tags: { site: 'initial' }, properties: { desired: { interval: 5 } } },
        ...(reprovisionPolicy === undefined ? {} : { reprovisionPolicy }),
      } as never);
      const key = String((created as { attestation: { symmetricKey: { primaryKey: string } } }).attestation.symmetricKey.primaryKey);
      if (reprovisionPolicy === undefined) {
        const policy = (created as { reprovisionPolicy?: { updateHubAssignment?: boolean; migrateDeviceData?: boolean } }).reprovisionPolicy;
        // An enrollment without a policy behaves as { updateHubAssignment: true, migrateDeviceData: true }.
        assert.notEqual(policy?.updateHubAssignment, false);
        assert.notEqual(policy?.migrateDeviceData, false);
      }

      const state = await register(registrationId, key);
      assert.equal(state.status, 'assigned');
      assert.equal(state.assignedHub, SECOND);
      assert.equal(state.deviceId, deviceId);
      assert.equal(state.substatus, 'initialAssignment');
      await connects(state, key);

      const secondRegistry = iothub.Registry.fromConnectionString(second.connectionString);
      await secondRegistry.updateTwin(deviceId, { tags: { site: 'b-side', movedFrom: 'b' }, properties: { desired: { fromB: 7, interval: 9 } } } as never, '*');
      const { responseBody: onB } = await secondRegistry.getTwin(deviceId);
      assert.equal(onB.tags.site, 'b-side');
      assert.equal(onB.properties.desired.fromB, 7);
      await assert.rejects(iothub.Registry.fromConnectionString(first.connectionString).get(deviceId), 'not on the first hub yet');

      const { responseBody: current } = await service.getIndividualEnrollment(registrationId);
      const { responseBody: updated } = await service.createOrUpdateIndividualEnrollment({ ...(current as object), iotHubs: [FIRST] } as never);
      assert.deepEqual((updated as { iotHubs?: string[] }).iotHubs, [FIRST]);
      return { key, deviceId };
    }

    it('updateHubAssignment + migrateDeviceData (the defaults): moves to the first hub with the twin data from the second', async () => {
      const { key, deviceId } = await enrolledOnSecondThenRetargeted('move-migrate', undefined);
      const state = await register('move-migrate', key);
      assert.equal(state.status, 'assigned');
      assert.equal(state.assignedHub, FIRST);
      assert.equal(state.deviceId, deviceId);
      assert.equal(state.substatus, 'deviceDataMigrated');

      const firstRegistry = iothub.Registry.fromConnectionString(first.connectionString);
      const { responseBody: device } = await firstRegistry.get(deviceId);
      assert.equal(device.authentication?.symmetricKey?.primaryKey, key);
      const { responseBody: twin } = await firstRegistry.getTwin(deviceId);
      assert.equal(twin.tags.site, 'b-side');
      assert.equal(twin.tags.movedFrom, 'b');
      assert.equal(twin.properties.desired.fromB, 7);
      assert.equal(twin.properties.desired.interval, 9);
      await connects(state, key);

      // The registration record follows the device.
      const { responseBody: record } = await service.getDeviceRegistrationState('move-migrate');
      assert.equal((record as { assignedHub?: string }).assignedHub, FIRST);
    });

    it('updateHubAssignment without migrateDeviceData: moves to the first hub with the initial twin (deviceDataReset)', async () => {
      const { key, deviceId } = await enrolledOnSecondThenRetargeted('move-reset', { updateHubAssignment: true, migrateDeviceData: false });
      const state = await register('move-reset', key);
      assert.equal(state.status, 'assigned');
      assert.equal(state.assignedHub, FIRST);
      assert.equal(state.deviceId, deviceId);
      assert.equal(state.substatus, 'deviceDataReset');

      const { responseBody: twin } = await iothub.Registry.fromConnectionString(first.connectionString).getTwin(deviceId);
      assert.equal(twin.tags.site, 'initial');
      assert.equal(twin.tags.movedFrom, undefined, "none of the second hub's tags");
      assert.equal(twin.properties.desired.interval, 5);
      assert.equal(twin.properties.desired.fromB, undefined, "none of the second hub's desired properties");
      await connects(state, key);

      // Back to the second hub, where the old identity and its twin still exist: reset means
      // reset there too, not a merge with the stale data.
      const { responseBody: current } = await service.getIndividualEnrollment('move-reset');
      await service.createOrUpdateIndividualEnrollment({ ...(current as object), iotHubs: [SECOND] } as never);
      const back = await register('move-reset', key);
      assert.equal(back.assignedHub, SECOND);
      assert.equal(back.substatus, 'deviceDataReset');
      const { responseBody: onB } = await iothub.Registry.fromConnectionString(second.connectionString).getTwin(deviceId);
      assert.equal(onB.tags.site, 'initial');
      assert.equal(onB.tags.movedFrom, undefined, 'the stale tags are gone');
      assert.equal(onB.properties.desired.fromB, undefined, 'the stale desired properties are gone');
      assert.equal(onB.properties.desired.interval, 5);
    });

    it('updateHubAssignment false: re-registering keeps the device on the second hub', async () => {
      const { key, deviceId } = await enrolledOnSecondThenRetargeted('stay', { updateHubAssignment: false, migrateDeviceData: true });
      const state = await register('stay', key);
      assert.equal(state.status, 'assigned');
      assert.equal(state.assignedHub, SECOND);
      assert.equal(state.deviceId, deviceId);
      await assert.rejects(iothub.Registry.fromConnectionString(first.connectionString).get(deviceId), 'not created on the first hub');
      const { responseBody: twin } = await iothub.Registry.fromConnectionString(second.connectionString).getTwin(deviceId);
      assert.equal(twin.tags.site, 'b-side', 'its data on the second hub is untouched');
      await connects(state, key);
    });
  });
});
