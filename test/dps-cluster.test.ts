/**
 * DPS registration operations across nodes (issue 16): behind a load balancer a device's register
 * may land on one node and its status poll on another. Raw HTTPS, each request sent to a chosen
 * node (the SDK polls only while a registration is still assigning, and Gatehouse answers
 * assigned at once, so it never polls; the route is what any client that polls uses).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { after, before, describe, it } from 'node:test';
import { generateSasToken } from '../src/auth/sas.js';
import { parseConnectionString } from '../src/cli/connection.js';
import { cli } from './support/hub-process.js';
import { startCluster, type Cluster } from './support/cluster.js';

const HOSTNAME = 'hub.dps.test';
const [A, B, C] = ['127.0.58.1', '127.0.58.2', '127.0.58.3'] as const;

let cluster: Cluster;
let idScope: string;
let dpsOwnerKey: string;

function https(address: string, method: string, path: string, authorization: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: address,
        servername: HOSTNAME,
        port: 443,
        method,
        path: `${path}?api-version=2021-06-01`,
        headers: { host: HOSTNAME, authorization, 'content-type': 'application/json', ...(payload === undefined ? {} : { 'content-length': payload.length }) },
        ca: readFileSync(cluster.nodes[0]!.caFile),
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

describe('DPS registration operations across three nodes', () => {
  before(async () => {
    cluster = await startCluster({ addresses: [A, B, C], hostname: HOSTNAME });
    const dataDir = cluster.nodes[0]!.dataDir;
    idScope = (JSON.parse(cli(['info', '--data-dir', dataDir, '--json'], cluster.env).stdout) as { idScope: string }).idScope;
    const cs = cli(['connection-string', '--data-dir', dataDir, '--policy', 'provisioningserviceowner'], cluster.env);
    assert.equal(cs.status, 0, cs.stderr);
    dpsOwnerKey = parseConnectionString(cs.stdout.trim()).get('SharedAccessKey') ?? '';
  });

  after(async () => {
    await cluster?.stop();
  });

  it('a register on A answers an operation id that a poll on B and on C finds; another registration\'s poll does not', async () => {
    const service = generateSasToken({ resource: HOSTNAME, key: dpsOwnerKey, keyName: 'provisioningserviceowner', expiry: Math.floor(Date.now() / 1000) + 600 });
    const keys: Record<string, string> = {};
    for (const id of ['dps-cl-1', 'dps-cl-2']) {
      const e = await https(A, 'PUT', `/enrollments/${id}`, service, { registrationId: id, attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: '', secondaryKey: '' } } });
      assert.equal(e.status, 200, JSON.stringify(e.body));
      keys[id] = String((e.body as { attestation: { symmetricKey: { primaryKey: string } } }).attestation.symmetricKey.primaryKey);
    }
    const token = (id: string) => generateSasToken({ resource: `${idScope}/registrations/${id}`, key: keys[id]!, keyName: 'registration', expiry: Math.floor(Date.now() / 1000) + 600 });

    const reg = await https(A, 'PUT', `/${idScope}/registrations/dps-cl-1/register`, token('dps-cl-1'), { registrationId: 'dps-cl-1' });
    assert.equal(reg.status, 200, JSON.stringify(reg.body));
    const operationId = String(reg.body.operationId);
    for (const node of [B, C]) {
      const poll = await https(node, 'GET', `/${idScope}/registrations/dps-cl-1/operations/${operationId}`, token('dps-cl-1'));
      assert.equal(poll.status, 200, `poll on ${node}: ${JSON.stringify(poll.body)}`);
      assert.deepEqual(poll.body, reg.body, 'the same operation, as the register answered it');
    }
    // The operation belongs to its registration: another device proving itself cannot read it, on any node.
    const other = await https(B, 'GET', `/${idScope}/registrations/dps-cl-2/operations/${operationId}`, token('dps-cl-2'));
    assert.equal(other.status, 404);
    const unknown = await https(C, 'GET', `/${idScope}/registrations/dps-cl-1/operations/4.00000000-0000-0000-0000-000000000000`, token('dps-cl-1'));
    assert.equal(unknown.status, 404);
  });
});
