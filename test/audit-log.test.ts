/**
 * The audit log of a real hub, as an operator uses it: real refusals at the MQTT and HTTPS edges
 * show up in GET /auditLog with their reason, remote address and protocol (and no credential);
 * bad filters get a precise 400; then, with the hub stopped, `gatehouse audit-log verify` passes
 * on the untouched database and fails with exit code 1, naming the seq, after one row is edited.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { connectPacket, connectRaw, deviceToken } from './support/raw-mqtt.js';
import { cli, removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { errorCode, errorMessage, policyKey, restClient, type Rest } from './support/rest.js';

const HOST = '127.0.50.7';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Entry {
  seq: number;
  at: string;
  type: string;
  subject?: string;
  identity?: string;
  outcome?: string;
  reason?: string | null;
  reasonCode?: string | null;
  remote?: string | null;
  protocol?: string | null;
}

let hub: HubProcess;
let ca: string;
let rest: Rest;
let hubStopped = false;

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
});

after(async () => {
  if (!hubStopped) await hub.stop();
  removeDir(hub.dataDir);
});

/** Polls GET /auditLog with `query` until `found` holds (entries are written within ~100 ms). */
async function auditUntil(query: string, found: (entries: Entry[]) => boolean): Promise<Entry[]> {
  let entries: Entry[] = [];
  for (let i = 0; i < 50; i++) {
    const r = await rest('GET', `/auditLog?${query}`);
    assert.equal(r.status, 200, r.raw.toString());
    entries = (r.body as { entries: Entry[] }).entries;
    if (found(entries)) return entries;
    await sleep(100);
  }
  assert.fail(`not in the audit log after 5 s: ${JSON.stringify(entries, null, 1)}`);
}

describe('audit log of a running hub', () => {
  const wrongKey = randomBytes(32).toString('base64');
  let mqttFailure: Entry;
  let restFailure: Entry;

  it('records a refused MQTT connect and a refused REST call with reason, remote address and protocol', async () => {
    const created = await rest('PUT', '/devices/meter-1', { deviceId: 'meter-1' });
    assert.equal(created.status, 200);

    const badToken = deviceToken(HOST, 'meter-1', wrongKey);
    const { code, client } = await connectRaw(HOST, ca, connectPacket(HOST, 'meter-1', badToken));
    client.end();
    assert.equal(code, 4, 'CONNACK 4: bad user name or password');

    const intruder = restClient(HOST, ca, wrongKey);
    const refused = await intruder('GET', '/devices/meter-1');
    assert.equal(refused.status, 401);

    const entries = await auditUntil('type=auth&outcome=failure', (es) => es.some((e) => e.protocol === 'mqtt') && es.some((e) => e.protocol === 'https'));
    const m = entries.find((e) => e.protocol === 'mqtt' && e.identity === 'meter-1');
    const h = entries.find((e) => e.protocol === 'https' && e.identity === 'iothubowner');
    assert.ok(m !== undefined && h !== undefined, JSON.stringify(entries, null, 1));
    mqttFailure = m;
    restFailure = h;
    for (const e of [m, h]) {
      assert.equal(e.type, 'auth');
      assert.equal(e.outcome, 'failure');
      assert.match(e.remote ?? '', /^(::ffff:)?127\.\d+\.\d+\.\d+$/);
      assert.ok(typeof e.reason === 'string' && e.reason.length > 0, 'a reason for the operator');
      assert.ok(typeof e.reasonCode === 'string' && e.reasonCode.length > 0);
      assert.ok(Math.abs(Date.parse(e.at) - Date.now()) < 60_000);
    }
    assert.equal(m.subject, 'device');
    assert.equal(h.subject, 'policy');
    // Newest first: the REST refusal came after the MQTT one.
    assert.ok(h.seq > m.seq);
    // No credential in what the log shows.
    const all = JSON.stringify((await rest('GET', '/auditLog?limit=1000')).body);
    for (const secret of [wrongKey, badToken, badToken.split('sig=')[1] ?? badToken]) assert.ok(!all.includes(secret), 'a credential reached the audit log');

    // The filters an operator reaches for.
    const byIdentity = (await rest('GET', '/auditLog?identity=meter-1&outcome=failure&type=auth')).body as { entries: Entry[] };
    assert.ok(byIdentity.entries.length >= 1 && byIdentity.entries.every((e) => e.identity === 'meter-1' && e.outcome === 'failure'));
    const page = (await rest('GET', `/auditLog?limit=1&before=${h.seq}&from=-1h&to=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).body as { entries: Entry[]; next: number | null };
    assert.equal(page.entries.length, 1);
    assert.ok((page.entries[0]?.seq ?? Infinity) < h.seq);
    assert.equal(page.next, page.entries[0]?.seq === 1 ? null : page.entries[0]?.seq);
  });

  it('bad filters are 400 ArgumentInvalid naming the parameter; only an administrator may read', async () => {
    const cases: Array<[string, RegExp]> = [
      ['outcome=maybe', /outcome must be success or failure/],
      ['type=session', /type must be auth or change/],
      ['limit=0', /limit must be a whole number from 1 to 1000/],
      ['limit=5000', /limit must be a whole number from 1 to 1000/],
      ['before=-3', /before must be a seq/],
      ['from=yesterday', /from must be an ISO-8601 time/],
      ['from=-1h&to=-2h', /from must be earlier than to/],
      ['identiy=meter-1', /Unknown audit log filter 'identiy'/],
      ['outcome=success&outcome=failure', /outcome is given more than once/],
    ];
    for (const [query, message] of cases) {
      const r = await rest('GET', `/auditLog?${query}`);
      assert.equal(r.status, 400, query);
      assert.equal(errorCode(r), 'ArgumentInvalid', query);
      assert.match(errorMessage(r), message, query);
    }
    // registryReadWrite lacks ServiceConnect and DeviceConnect: not an administrator.
    const reader = restClient(HOST, ca, policyKey(hub.dataDir, 'registryReadWrite'), 'registryReadWrite');
    for (const path of ['/auditLog', '/auditLog/verify']) {
      const r = await reader('GET', path);
      assert.equal(r.status, 401, path);
    }
  });

  it('the auditLog.enabled hub setting: off, auth decisions are not recorded but the change is; on again, they are', async () => {
    const refuse = async (deviceId: string) => {
      const { code, client } = await connectRaw(HOST, ca, connectPacket(HOST, deviceId, deviceToken(HOST, deviceId, wrongKey)));
      client.end();
      assert.equal(code, 4);
    };
    const off = await rest('PATCH', '/settings', { auditLog: { enabled: false } });
    assert.equal(off.status, 200, off.raw.toString());
    await refuse('while-off');
    const on = await rest('PATCH', '/settings', { auditLog: { enabled: true } });
    assert.equal(on.status, 200, on.raw.toString());
    await refuse('while-on');
    await auditUntil('identity=while-on', (es) => es.length === 1);
    assert.deepEqual((await rest('GET', '/auditLog?identity=while-off')).body, { entries: [], next: null });
    const changes = (await rest('GET', '/auditLog?type=change&actor=policy:iothubowner')).body as { entries: Array<{ action: string; after: { auditLog?: { enabled: boolean } } }> };
    assert.deepEqual(
      changes.entries.filter((e) => e.action === 'settings.update').map((e) => e.after.auditLog?.enabled),
      [true, false],
    );
  });

  it('GET /auditLog/verify: intact', async () => {
    const r = await rest('GET', '/auditLog/verify');
    assert.equal(r.status, 200);
    const v = r.body as { ok: boolean; checked: number; firstSeq: number; lastSeq: number; start: { from: string }; problems: unknown[] };
    assert.equal(v.ok, true, JSON.stringify(v.problems));
    assert.equal(v.firstSeq, 1);
    assert.equal(v.start.from, 'genesis');
    assert.ok(v.checked >= 2 && v.lastSeq >= restFailure.seq);
  });

  it('gatehouse audit-log verify: exit 0 when untouched, exit 1 naming the seq after an edit', async () => {
    assert.equal(await hub.stop(), 0);
    hubStopped = true;

    const intact = cli(['audit-log', 'verify', '--data-dir', hub.dataDir]);
    assert.equal(intact.status, 0, intact.stderr);
    const v = JSON.parse(intact.stdout) as { ok: boolean; lastSeq: number; problems: unknown[] };
    assert.equal(v.ok, true);
    assert.deepEqual(v.problems, []);

    const listed = cli(['audit-log', 'list', '--data-dir', hub.dataDir, '--identity', 'meter-1', '--outcome', 'failure', '-o', 'table']);
    assert.equal(listed.status, 0, listed.stderr);
    const lines = listed.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^seq\s+at\s+type\s+identity\s+outcome\s+reason\s+remote\s+protocol/);
    assert.ok(lines.some((l) => l.startsWith(`${mqttFailure.seq} `) && /meter-1\s+failure/.test(l) && /\smqtt(\s|$)/.test(l)), listed.stdout);

    const db = new Database(join(hub.dataDir, 'gatehouse.db'));
    try {
      assert.equal(db.prepare('UPDATE audit_log SET reason = ? WHERE seq = ?').run('nothing happened', mqttFailure.seq).changes, 1);
    } finally {
      db.close();
    }
    const broken = cli(['audit-log', 'verify', '--data-dir', hub.dataDir]);
    assert.equal(broken.status, 1, broken.stdout);
    assert.match(broken.stderr, new RegExp(`seq ${mqttFailure.seq} edited`));
    const report = JSON.parse(broken.stdout) as { ok: boolean; problems: Array<{ seq: number; kind: string }> };
    assert.equal(report.ok, false);
    assert.deepEqual(report.problems.map((p) => [p.seq, p.kind]), [[mqttFailure.seq, 'edited']]);

    const table = cli(['audit-log', 'verify', '--data-dir', hub.dataDir, '-o', 'table']);
    assert.equal(table.status, 1);
    assert.match(table.stdout, /status\s+BROKEN/);
  });
});
