/**
 * Issue 15 item 7, end to end on a real hub: administering a fresh hub through the CLI (`--data-dir`
 * signs with iothubowner) and REST records the rights those calls needed and never DeviceConnect,
 * so `gatehouse audit` reports no `policies.device-connect-used`; a device connecting with a token
 * signed by a policy does raise it; and following every policy fix the audit suggests leaves the
 * CLI able to administer the hub (the fix for iothubowner used to cut `--data-dir` off with
 * IotHubUnauthorizedAccess).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { generateSasToken } from '../src/auth/sas.js';
import type { Right } from '../src/core/types.js';
import { assessPosture, type PostureInput } from '../src/posture/posture.js';
import { DEFAULT_SETTINGS } from '../src/core/settings.js';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { connectPacket, connectRaw } from './support/raw-mqtt.js';
import { restClient } from './support/rest.js';

const HOST = '127.0.71.2';

interface Finding {
  id: string;
  severity: string;
  title: string;
  detail: string;
  fix: string;
  resources?: string[];
}

let hub: HubProcess;
let ca: string;

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
});

after(async () => {
  await hub?.stop();
  if (hub !== undefined) removeDir(hub.dataDir);
});

/** A CLI command against the hub's data dir, as an administrator on the hub machine runs it. */
function admin(args: string[]): string {
  const r = cli([...args, '--data-dir', hub.dataDir]);
  assert.equal(r.status, 0, `gatehouse ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function audit(): Finding[] {
  const r = cli(['audit', '--data-dir', hub.dataDir, '-o', 'json']);
  assert.ok(r.status === 0 || r.status === 2, r.stderr);
  return (JSON.parse(r.stdout) as { findings: Finding[] }).findings;
}

const about = (findings: Finding[], id: string, policy: string) => findings.find((f) => f.id === id && f.resources?.includes(policy));

/**
 * The running hub writes a right's first use out at once (otherwise once a minute): poll the
 * offline audit for 15 s, well inside that minute.
 */
async function auditUntil(found: (fs: Finding[]) => boolean): Promise<Finding[]> {
  const deadline = Date.now() + 15_000;
  let findings: Finding[] = [];
  while (Date.now() < deadline) {
    findings = audit();
    if (found(findings)) return findings;
    await sleep(200);
  }
  assert.fail(`not in gatehouse audit after 15 s: ${JSON.stringify(findings.filter((f) => f.id.startsWith('policies.')), null, 1)}`);
}

const keys = new Map<string, string>();

function deviceToken(deviceId: string, policy: string): string {
  return generateSasToken({ resource: `${HOST}/devices/${deviceId}`, key: keys.get(policy) ?? '', keyName: policy, expiry: Math.floor(Date.now() / 1000) + 600 });
}

/** Administration through the CLI: registry, settings, the CA, EST credentials, alerts (each start costs seconds). */
function administer(suffix: string): void {
  admin(['device', 'create', '-d', `plant-${suffix}`]);
  admin(['settings', 'show']);
  admin(['ca', 'create', '-n', `plant-ca-${suffix}`]);
  admin([suffix === 'a' ? 'est' : 'alert', ...(suffix === 'a' ? ['credential', 'list'] : ['rule', 'list'])]);
}

describe('policy usage and the fixes gatehouse audit suggests', () => {
  it('administration marks no DeviceConnect use; a device on a policy token does; every suggested policy fix keeps the CLI working', async () => {
    for (const p of JSON.parse(admin(['policy', 'list', '--show-keys'])) as Array<{ keyName: string; primaryKey: string }>) keys.set(p.keyName, p.primaryKey);
    administer('a');
    // REST administration too (the console's posture page); it also writes the usage out.
    const rest = restClient(HOST, ca, keys.get('iothubowner') ?? '');
    const posture = await rest('GET', '/posture');
    assert.equal(posture.status, 200);
    assert.equal(about((posture.body as { findings: Finding[] }).findings, 'policies.device-connect-used', 'iothubowner'), undefined, 'GET /posture');

    let findings = audit();
    assert.equal(about(findings, 'policies.device-connect-used', 'iothubowner'), undefined, 'no device used iothubowner');
    // What administration did use is recorded: only DeviceConnect is unused, and dropping it is the fix.
    const unused = about(findings, 'policies.unused-rights', 'iothubowner');
    assert.ok(unused !== undefined, JSON.stringify(findings.filter((f) => f.id.startsWith('policies.'))));
    assert.match(unused.detail, /^DeviceConnect unused/);
    assert.equal(unused.fix, 'gatehouse policy update iothubowner --rights RegistryRead,RegistryWrite,ServiceConnect');

    // Devices on tokens signed by iothubowner and by the device policy (a fleet-wide secret in use).
    const byOwner = await connectRaw(HOST, ca, connectPacket(HOST, 'plant-a', deviceToken('plant-a', 'iothubowner')));
    assert.equal(byOwner.code, 0);
    admin(['device', 'create', '-d', 'plant-b']);
    const byDevicePolicy = await connectRaw(HOST, ca, connectPacket(HOST, 'plant-b', deviceToken('plant-b', 'device')));
    assert.equal(byDevicePolicy.code, 0);
    findings = await auditUntil((fs) => about(fs, 'policies.device-connect-used', 'iothubowner') !== undefined && about(fs, 'policies.device-connect-used', 'device') !== undefined);
    const used = about(findings, 'policies.device-connect-used', 'iothubowner');
    assert.equal(used?.severity, 'high');
    assert.equal(used?.fix.split(': ').at(-1), 'gatehouse policy update iothubowner --rights RegistryRead,RegistryWrite,ServiceConnect');

    // Follow every fix the audit suggests for a policy, as written.
    const fixes = findings.filter((f) => f.id.startsWith('policies.')).map((f) => /gatehouse policy .*$/.exec(f.fix)?.[0]);
    assert.ok(fixes.length >= 2);
    for (const fix of new Set(fixes)) {
      assert.ok(fix !== undefined, 'each policy finding names a command');
      admin(fix.split(' ').slice(1));
    }
    // The devices on policy-signed tokens are cut off (that was the point) ...
    await byOwner.client.closed;
    await byDevicePolicy.client.closed;
    const again = await connectRaw(HOST, ca, connectPacket(HOST, 'plant-a', deviceToken('plant-a', 'iothubowner')));
    again.client.end();
    assert.equal(again.code, 4, 'iothubowner no longer signs device tokens');
    // ... and the administrator is not.
    administer('c');
    findings = audit();
    for (const policy of ['iothubowner', 'device']) assert.equal(about(findings, 'policies.device-connect-used', policy), undefined, `${policy}: fixed`);
    assert.equal(about(findings, 'policies.unused-rights', 'iothubowner'), undefined);
  });
});

describe('policy findings on the assessment alone', () => {
  const at = Date.now();
  const input = (policies: Array<{ name: string; rights: Right[] }>, used: Record<string, Record<string, number>>): PostureInput => ({
    now: at,
    expiringDays: 30,
    settings: { ...DEFAULT_SETTINGS, version: 1, etag: 'e', updatedAt: '', updatedBy: 'test' },
    policies: policies.map((p) => ({ ...p, primaryKey: 'k', secondaryKey: 'k', etag: 'e' })),
    devices: [],
    groups: [],
    cas: [],
    issued: [],
    operators: [],
    assignments: [],
    usage: { since: at - 86_400_000, used },
  });
  const policyFindings = (i: PostureInput) => assessPosture(i).filter((f) => f.id.startsWith('policies.')).map((f) => `${f.id}: ${f.fix}`);

  it('an owner-level policy used only to read the registry is not advised below owner-level', () => {
    const all: Right[] = ['RegistryRead', 'RegistryWrite', 'ServiceConnect', 'DeviceConnect'];
    assert.deepEqual(policyFindings(input([{ name: 'iothubowner', rights: all }], { iothubowner: { RegistryRead: at } })), [
      'policies.unused-rights: gatehouse policy update iothubowner --rights RegistryRead,RegistryWrite,ServiceConnect',
    ]);
  });

  it('a device policy whose only right devices use is to be deleted, and the finding goes with the right', () => {
    assert.deepEqual(policyFindings(input([{ name: 'device', rights: ['DeviceConnect'] }], { device: { DeviceConnect: at } })), [
      'policies.device-connect-used: Give each device its own credential, then: gatehouse policy delete device',
    ]);
    assert.deepEqual(policyFindings(input([{ name: 'gateway', rights: ['RegistryRead'] }], { gateway: { DeviceConnect: at, RegistryRead: at } })), []);
  });

  it('several owner-level policies are one finding; DeviceConnect does not make a policy owner-level', () => {
    const findings = assessPosture(
      input(
        [
          { name: 'iothubowner', rights: ['RegistryRead', 'RegistryWrite', 'ServiceConnect', 'DeviceConnect'] },
          { name: 'backend', rights: ['RegistryRead', 'RegistryWrite', 'ServiceConnect'] },
          { name: 'gateway', rights: ['RegistryRead', 'RegistryWrite', 'DeviceConnect'] },
        ],
        {},
      ),
    ).filter((f) => f.id.startsWith('policies.'));
    assert.deepEqual(
      findings.map((f) => [f.id, f.resources]),
      [['policies.owner-like', ['iothubowner', 'backend']]],
    );
  });
});

