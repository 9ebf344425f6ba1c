/**
 * The full matrix of who may call what, on one real hub: every HTTPS route (support/
 * rights-expectations.ts, written by hand) called by each default shared access policy and by an
 * operator holding each built-in role. A caller the list allows gets past authorization (any
 * status but 401; 400 and 404 from the harmless parameters count); any other caller gets 401
 * IotHubUnauthorizedAccess, and each such refusal of an authenticated caller is an audit row with
 * reason code insufficient_rights. Public routes answer every caller as they answer an anonymous
 * one. Issue 14 item 5: registryReadWrite exported CA private keys, signed device certificates
 * and managed EST credentials.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { generateSasToken } from '../src/auth/sas.js';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { policyKey, restClient, type Rest } from './support/rest.js';
import { MATRIX_FIXTURES, POLICY_CALLERS, ROLE_CALLERS, ROUTE_CASES, type Caller, type RouteCase } from './support/rights-expectations.js';

const HOST = '127.0.71.1';

let hub: HubProcess;
let ca: string;
let owner: Rest;
let agent: Agent;
const policyKeys = new Map<string, string>();
const operatorTokens = new Map<string, string>();

/** The operator that holds exactly one role, named after it. */
const operatorFor = (role: string) => `m-${role.toLowerCase().replace(/[^a-z]+/g, '-')}`;

function authorization(caller: Caller | 'anonymous'): string | undefined {
  if (caller === 'anonymous') return undefined;
  const token = operatorTokens.get(caller);
  if (token !== undefined) return `Bearer ${token}`;
  return generateSasToken({ resource: HOST, key: policyKeys.get(caller) ?? '', keyName: caller, expiry: Math.floor(Date.now() / 1000) + 600 });
}

/** One request; the status and, for a 401, the error code. Streams are not read past their headers. */
function call(caller: Caller | 'anonymous', c: RouteCase): Promise<{ status: number; code: string | undefined }> {
  const method = c.route.slice(0, c.route.indexOf(' '));
  const payload = c.body === undefined ? undefined : Buffer.from(typeof c.body === 'string' && c.route.includes('/.well-known/est/') ? c.body : JSON.stringify(c.body));
  const auth = authorization(caller);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: HOST,
        port: 443,
        method,
        path: `${c.path}${c.path.includes('?') ? '&' : '?'}api-version=2021-04-12`,
        ca,
        agent,
        headers: {
          ...(auth === undefined ? {} : { authorization: auth }),
          ...(payload === undefined ? {} : { 'content-type': c.route.includes('/.well-known/est/') ? 'application/pkcs10' : 'application/json' }),
        },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        const code = res.headers['iothub-errorcode'];
        res.resume();
        res.on('end', () => resolve({ status, code: typeof code === 'string' ? code : undefined }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const CALLERS: readonly Caller[] = [...POLICY_CALLERS, ...ROLE_CALLERS];

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  agent = new Agent({ keepAlive: true, maxSockets: 4, ca });
  owner = restClient(HOST, ca, policyKey(hub.dataDir));
  const ok = async (p: Promise<{ status: number; body: unknown }>) => {
    const r = await p;
    assert.ok(r.status < 300, `${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  };
  // Refused device logins are part of the matrix; lockout is another test's subject.
  await ok(owner('PATCH', '/settings', { lockout: { enabled: false } }));
  await ok(owner('PUT', `/devices/${MATRIX_FIXTURES.device}`, { deviceId: MATRIX_FIXTURES.device }));
  await ok(owner('PUT', `/devices/${MATRIX_FIXTURES.device}/modules/${MATRIX_FIXTURES.module}`, { deviceId: MATRIX_FIXTURES.device, moduleId: MATRIX_FIXTURES.module }));
  await ok(owner('POST', '/certificateAuthorities', { name: MATRIX_FIXTURES.ca, alg: 'p256' }));
  for (const p of POLICY_CALLERS) policyKeys.set(p, policyKey(hub.dataDir, p));
  for (const role of ROLE_CALLERS) {
    const id = operatorFor(role);
    await ok(owner('PUT', `/operators/${id}`, {}));
    await ok(owner('POST', '/roleAssignments', { assignee: id, role }));
    const t = (await ok(owner('POST', `/operators/${id}/tokens`, { expiresInSeconds: 600 }))) as { token: string };
    operatorTokens.set(role, t.token);
  }
});

after(async () => {
  agent?.destroy();
  await hub?.stop();
  if (hub !== undefined) removeDir(hub.dataDir);
});

describe('rights × routes', () => {
  /** Service-gate refusals observed per caller (device and public routes excluded). */
  const refused = new Map<Caller, number>();
  let matrixFrom = 0;

  it('issue 14 item 5: registryReadWrite cannot export a CA private key, sign a device certificate or manage EST credentials', async () => {
    const exportKey = ROUTE_CASES.find((c) => c.route === 'POST /certificateAuthorities/:name/exportKey');
    assert.ok(exportKey !== undefined);
    for (const caller of ['registryReadWrite', 'IoT Hub Data Contributor'] as const) {
      const r = await call(caller, exportKey);
      assert.equal(r.status, 401, `${caller} exported the CA key`);
      assert.equal(r.code, 'IotHubUnauthorizedAccess');
    }
    const rw = restClient(HOST, ca, policyKeys.get('registryReadWrite') ?? '', 'registryReadWrite');
    const leak = await rw('POST', `/certificateAuthorities/${MATRIX_FIXTURES.ca}/exportKey`, { confirm: MATRIX_FIXTURES.ca });
    assert.ok(!/PRIVATE KEY/.test(leak.raw.toString()), 'no key in the answer');
    assert.equal((await rw('POST', '/est/credentials', { enrollmentGroupId: 'any' })).status, 401);
    assert.equal((await rw('POST', `/certificateAuthorities/${MATRIX_FIXTURES.ca}/sign`, { csr: 'x', deviceId: 'x' })).status, 401);
    // The owner still can.
    const exported = await owner('POST', `/certificateAuthorities/${MATRIX_FIXTURES.ca}/exportKey`, { confirm: MATRIX_FIXTURES.ca });
    assert.equal(exported.status, 200);
    assert.match(String((exported.body as { privateKey: string }).privateKey), /PRIVATE KEY/);
  });

  it('every route answers every policy and every role as the hand-written list says', async () => {
    const wrong: string[] = [];
    matrixFrom = Date.now();
    for (const c of ROUTE_CASES) {
      const anonymous = c.who === 'public' ? await call('anonymous', c) : undefined;
      for (const caller of CALLERS) {
        const r = await call(caller, c);
        if (c.who === 'public') {
          if (r.status !== anonymous?.status) wrong.push(`${c.route} as ${caller}: ${r.status}, anonymous gets ${anonymous?.status}`);
          continue;
        }
        const allowed = c.who === 'device' ? caller === 'iothubowner' || caller === 'device' : c.who.includes(caller);
        if (allowed && r.status === 401) wrong.push(`${c.route} as ${caller}: refused (401), should be allowed`);
        if (!allowed && (r.status !== 401 || r.code !== 'IotHubUnauthorizedAccess')) wrong.push(`${c.route} as ${caller}: ${r.status} ${r.code ?? ''}, should be 401 IotHubUnauthorizedAccess`);
        if (!allowed && c.who !== 'device' && r.status === 401) refused.set(caller, (refused.get(caller) ?? 0) + 1);
      }
    }
    assert.deepEqual(wrong, [], `\n${wrong.join('\n')}`);
  });

  it('each refusal of an authenticated caller is an audit row with reason code insufficient_rights', async () => {
    for (const caller of ['registryReadWrite', 'IoT Hub Data Reader', 'service'] as const) {
      const identity = POLICY_CALLERS.includes(caller as (typeof POLICY_CALLERS)[number]) ? caller : operatorFor(caller);
      const expected = refused.get(caller) ?? 0;
      assert.ok(expected > 0, `${caller} was refused somewhere`);
      let rows: Array<{ reasonCode?: string; outcome?: string }> = [];
      for (let i = 0; i < 50; i++) {
        const r = await owner('GET', `/auditLog?type=auth&outcome=failure&identity=${encodeURIComponent(identity)}&from=${matrixFrom}&limit=1000`);
        assert.equal(r.status, 200);
        rows = (r.body as { entries: typeof rows }).entries.filter((e) => e.reasonCode === 'insufficient_rights');
        if (rows.length >= expected) break;
        await sleep(100);
      }
      assert.equal(rows.length, expected, `${caller}: ${expected} refusals, ${rows.length} audit rows`);
    }
  });
});
