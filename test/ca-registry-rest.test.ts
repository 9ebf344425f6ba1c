/**
 * CA registration against a real hub process, the way an operator does it: `gatehouse ca add`,
 * `verification-code`, a verification certificate signed by the CA key, `ca verify`, `ca list`;
 * plus the REST rights (RegistryRead may read, not write) and the Azure-shaped bodies.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateSasToken } from '../src/auth/sas.js';
import { parseConnectionString } from '../src/cli/connection.js';
import { cli, removeDir, startHubProcess, tempDir, type HubProcess } from './support/hub-process.js';
import { makeIntermediate, makeRoot, makeVerificationCert, thumbprints, type TestCert } from './support/pki.js';

const ADDRESS = '127.0.42.1';
let hub: HubProcess;
let files: string;

before(async () => {
  hub = await startHubProcess({ address: ADDRESS });
  files = tempDir('ca-files');
});

after(async () => {
  await hub.stop();
  removeDir(hub.dataDir);
  removeDir(files);
});

function gh(args: string[]) {
  return cli([...args, '--data-dir', hub.dataDir]);
}

function ok(args: string[]): unknown {
  const r = gh(args);
  assert.equal(r.status, 0, `gatehouse ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout.trim() === '' ? undefined : (JSON.parse(r.stdout) as unknown);
}

function file(name: string, content: string): string {
  const path = join(files, name);
  writeFileSync(path, content);
  return path;
}

interface Row {
  name: string;
  etag: string;
  subject: string;
  thumbprint: string;
  isVerified: boolean;
  verificationCode?: string;
}

/** One HTTPS call signed with a policy of the hub. */
const policyKeys = new Map<string, string>();

function call(policy: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  let key = policyKeys.get(policy);
  if (key === undefined) {
    const r = cli(['connection-string', '--data-dir', hub.dataDir, '--policy', policy]);
    assert.equal(r.status, 0, r.stderr);
    key = parseConnectionString(r.stdout.trim()).get('SharedAccessKey') ?? '';
    policyKeys.set(policy, key);
  }
  const token = generateSasToken({ resource: ADDRESS, key, keyName: policy, expiry: Date.now() / 1000 + 600 });
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: ADDRESS,
        port: 443,
        method,
        path: `${path}?api-version=2021-04-12`,
        ca: readFileSync(hub.caFile),
        headers: { authorization: token, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : (JSON.parse(text) as unknown) });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

describe('gatehouse ca', () => {
  let root: TestCert;
  before(async () => {
    root = await makeRoot('Fleet Root CA');
  });

  it('add, verification-code, verify, list, show, delete', async () => {
    const added = ok(['ca', 'add', '--name', 'fleet-root', '--cert', file('root.pem', root.certPem)]) as Row;
    assert.equal(added.name, 'fleet-root');
    assert.equal(added.subject, 'CN=Fleet Root CA');
    assert.equal(added.thumbprint, thumbprints(root.certPem).sha1);
    assert.equal(added.isVerified, false);

    const code = ok(['ca', 'verification-code', '--name', 'fleet-root']) as Row;
    assert.match(code.verificationCode ?? '', /^[0-9A-F]{32}$/);
    const proof = await makeVerificationCert(root, code.verificationCode ?? '');
    const wrong = await makeVerificationCert(await makeRoot('Fleet Root CA'), code.verificationCode ?? '');
    const refused = gh(['ca', 'verify', '--name', 'fleet-root', '--cert', file('wrong.pem', wrong.certPem)]);
    assert.equal(refused.status, 1);
    assert.equal(refused.stderr.trim(), 'error: ArgumentInvalid: the verification certificate is not signed by CA fleet-root');

    const verified = ok(['ca', 'verify', '--name', 'fleet-root', '--cert', file('proof.pem', proof.certPem)]) as Row;
    assert.equal(verified.isVerified, true);

    const table = gh(['ca', 'list', '-o', 'table']);
    assert.equal(table.status, 0, table.stderr);
    const lines = table.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^name\s+subject\s+thumbprint\s+isVerified\s+expiry$/);
    assert.match(lines[2] ?? '', /^fleet-root\s+CN=Fleet Root CA\s+[0-9A-F]{40}\s+true\s+\w{3}, /);

    const int = await makeIntermediate(root, 'Fleet Intermediate');
    ok(['ca', 'add', '--name', 'fleet-int', '--cert', file('int.pem', int.certPem), '--verified']);
    const shown = ok(['ca', 'show', '--name', 'fleet-int']) as Row;
    assert.equal(shown.isVerified, true, '--verified: the operator vouches on upload');
    const list = ok(['ca', 'list']) as Row[];
    assert.deepEqual(list.map((c) => [c.name, c.isVerified]), [['fleet-int', true], ['fleet-root', true]]);

    const stale = gh(['ca', 'delete', '--name', 'fleet-int', '--etag', 'stale']);
    assert.equal(stale.status, 1);
    assert.match(stale.stderr, /^error: PreconditionFailed: /);
    ok(['ca', 'delete', '--name', 'fleet-int', '--etag', shown.etag]);
    const gone = gh(['ca', 'show', '--name', 'fleet-int']);
    assert.equal(gone.stderr.trim(), "error: ResourceNotFound: No CA certificate named 'fleet-int'.");
  });

  it('refuses a private key with a one-line error', async () => {
    const other = await makeRoot('Keyed Root');
    const r = gh(['ca', 'add', '--name', 'keyed', '--cert', file('keyed.pem', other.certPem + other.keyPem)]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^error: ArgumentInvalid: the certificate contains a private key/);
  });
});

describe('REST /certificates', () => {
  it('registry readers read; registering a CA (a trust anchor, ARM in Azure) is owner-level; bodies are ARM-shaped', async () => {
    const ca = await makeRoot('REST Root');
    const put = { properties: { certificate: ca.certPem } };
    for (const policy of ['registryRead', 'registryReadWrite']) {
      const denied = await call(policy, 'PUT', '/certificates/rest-root', put);
      assert.equal(denied.status, 401, policy);
      assert.match((denied.body as { Message: string }).Message, /^ErrorCode:IotHubUnauthorizedAccess;/);
    }

    const created = await call('iothubowner', 'PUT', '/certificates/rest-root', put);
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const res = created.body as { name: string; etag: string; properties: Record<string, unknown> };
    assert.equal(res.name, 'rest-root');
    assert.deepEqual(Object.keys(res.properties).sort(), ['certificate', 'created', 'expiry', 'isVerified', 'subject', 'thumbprint', 'updated']);
    assert.equal(res.properties.isVerified, false);
    assert.equal(res.properties.expiry, new Date(ca.cert.validTo).toUTCString());

    const listed = await call('registryRead', 'GET', '/certificates');
    assert.equal(listed.status, 200);
    assert.ok((listed.body as { value: Array<{ name: string }> }).value.some((c) => c.name === 'rest-root'));
    for (const policy of ['registryRead', 'registryReadWrite']) {
      assert.equal((await call(policy, 'POST', '/certificates/rest-root/generateVerificationCode')).status, 401, policy);
      assert.equal((await call(policy, 'DELETE', '/certificates/rest-root')).status, 401, policy);
    }

    const gen = await call('iothubowner', 'POST', '/certificates/rest-root/generateVerificationCode');
    const code = (gen.body as { properties: { verificationCode: string } }).properties.verificationCode;
    const proof = await makeVerificationCert(ca, code);
    const verified = await call('iothubowner', 'POST', '/certificates/rest-root/verify', { certificate: proof.certPem });
    assert.equal(verified.status, 200, JSON.stringify(verified.body));
    assert.equal((verified.body as { properties: { isVerified: boolean } }).properties.isVerified, true);

    const dup = await call('iothubowner', 'PUT', '/certificates/rest-root', put);
    assert.equal(dup.status, 400);
    const bad = await call('iothubowner', 'PUT', '/certificates/rest-bad', { properties: {} });
    assert.match((bad.body as { Message: string }).Message, /^ErrorCode:ArgumentNull;properties.certificate is required/);
    assert.equal((await call('iothubowner', 'DELETE', '/certificates/rest-root')).status, 204);
    assert.equal((await call('registryRead', 'GET', '/certificates/rest-root')).status, 404);
  });
});
