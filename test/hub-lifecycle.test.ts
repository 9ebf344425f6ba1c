/**
 * `gatehouse start` as an operator meets it: first start on an empty data dir, what it creates,
 * what it refuses, restart with everything intact, no key in clear text on disk, SIGTERM.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect, type DetailedPeerCertificate } from 'node:tls';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import iothub from 'azure-iothub';

const { Registry } = iothub;
type Registry = InstanceType<typeof Registry>;
import { cli, removeDir, startHubProcess, tempDir, BIN } from './support/hub-process.js';
import { spawnSync } from 'node:child_process';

function allFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? allFiles(join(dir, e.name)) : [join(dir, e.name)]));
}

describe('first start on an empty data dir', () => {
  it('creates the database, a 0600 master key, a development CA and a server certificate for the hostname', async () => {
    const address = '127.0.22.1';
    const hub = await startHubProcess({ address, useTestCa: false });
    try {
      assert.match(hub.output(), /ready/);
      assert.ok(existsSync(join(hub.dataDir, 'gatehouse.db')));
      const keyFile = join(hub.dataDir, 'master.key');
      assert.equal(statSync(keyFile).mode & 0o777, 0o600);
      assert.equal(Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64').length, 32);
      assert.equal(hub.caFile, join(hub.dataDir, 'tls', 'ca.pem'));
      const ca = new X509Certificate(readFileSync(hub.caFile));
      assert.ok(ca.ca, 'ca.pem is a CA certificate');

      // A real TLS handshake that trusts only ca.pem and checks the hostname (an IP SAN here).
      const peer = await new Promise<X509Certificate>((resolve, reject) => {
        const s = tlsConnect({ host: address, port: 443, ca: readFileSync(hub.caFile), servername: undefined }, () => {
          const cert = s.getPeerX509Certificate();
          s.end();
          if (cert === undefined) reject(new Error('no peer certificate'));
          else resolve(cert);
        });
        s.on('error', reject);
      });
      assert.ok(peer.checkIP(address));
      assert.ok(peer.checkHost('localhost'));
      assert.ok(peer.checkIP('127.0.0.1'));
      assert.ok(peer.verify(ca.publicKey));

      // TLS 1.1 is refused.
      await new Promise<void>((resolve, reject) => {
        const s = tlsConnect({ host: address, port: 443, ca: readFileSync(hub.caFile), maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }, () => {
          s.end();
          reject(new Error('TLS 1.1 was accepted'));
        });
        s.on('error', () => resolve());
      });

      // No listener sends its self-signed root: a client that does not trust it fails the way it
      // does against Azure (UNABLE_TO_VERIFY_LEAF_SIGNATURE, not SELF_SIGNED_CERT_IN_CHAIN).
      for (const port of [443, 8883, 5671]) {
        const code = await new Promise<string>((resolve) => {
          const s = tlsConnect({ host: address, port, servername: undefined }, () => {
            s.end();
            resolve('accepted');
          });
          s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
        });
        assert.equal(code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', `port ${port}`);
        const sent = await new Promise<number>((resolve, reject) => {
          const s = tlsConnect({ host: address, port, rejectUnauthorized: false }, () => {
            const seen: string[] = [];
            let c: DetailedPeerCertificate | undefined = s.getPeerCertificate(true);
            while (c?.raw !== undefined && !seen.includes(c.fingerprint256)) {
              seen.push(c.fingerprint256);
              c = c.issuerCertificate;
            }
            s.end();
            resolve(seen.length);
          });
          s.on('error', reject);
        });
        assert.equal(sent, 1, `port ${port} sends the leaf only`);
      }

      const info = JSON.parse(cli(['info', '--data-dir', hub.dataDir, '--json']).stdout) as Record<string, unknown>;
      assert.deepEqual(Object.keys(info).sort(), ['caFile', 'connectionString', 'dpsConnectionString', 'eventHubsConnectionString', 'hostname', 'httpsPort', 'idScope', 'mqttPort', 'storageConnectionString']);
      // The embedded blob store of file upload, on the hub's own HTTPS port, under a key of its own (88 base64 characters: 64 bytes).
      assert.match(String(info.storageConnectionString), new RegExp(`^DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=[A-Za-z0-9+/=]{88};BlobEndpoint=https://${address.replace(/\./g, '\\.')}/devstoreaccount1;$`));
      // az iot hub connection-string show --default-eventhub's shape, for the service policy (an IP host is its own entity name).
      const host = address.replace(/\./g, '\\.');
      assert.match(String(info.eventHubsConnectionString), new RegExp(`^Endpoint=sb://${host}/;SharedAccessKeyName=service;SharedAccessKey=[A-Za-z0-9+/=]{44};EntityPath=${host}$`));
      assert.equal(info.hostname, address);
      assert.equal(info.httpsPort, 443);
      assert.equal(info.mqttPort, 8883);
      assert.match(String(info.connectionString), new RegExp(`^HostName=${address.replace(/\./g, '\\.')};SharedAccessKeyName=iothubowner;SharedAccessKey=[A-Za-z0-9+/=]{44}$`));

      const policies = JSON.parse(cli(['policy', 'list', '--data-dir', hub.dataDir]).stdout) as Array<{ keyName: string; rights: string }>;
      assert.deepEqual(
        policies.map((p) => `${p.keyName}:${p.rights}`).sort(),
        [
          'device:DeviceConnect',
          'iothubowner:RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect',
          'provisioningserviceowner:ServiceConfig, EnrollmentRead, EnrollmentWrite, RegistrationStatusRead, RegistrationStatusWrite',
          'registryRead:RegistryRead',
          'registryReadWrite:RegistryRead, RegistryWrite',
          'service:ServiceConnect',
        ],
      );
      const svc = cli(['connection-string', '--data-dir', hub.dataDir, '--policy', 'service']);
      assert.match(svc.stdout, /SharedAccessKeyName=service;SharedAccessKey=/);
    } finally {
      assert.equal(await hub.stop(), 0);
      removeDir(hub.dataDir);
    }
  });
});

describe('refusals', () => {
  it('a port in use: one clear line, exit code not 0', async () => {
    const address = '127.0.22.2';
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(443, address, () => r()));
    const dir = tempDir('busy');
    try {
      const r = spawnSync(process.execPath, [BIN, 'start', '--data-dir', dir, '--bind', address, '--hostname', address, '--log-level', 'silent'], {
        encoding: 'utf8',
        timeout: 30_000,
      });
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /port 443 on 127\.0\.22\.2 is already in use/);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    } finally {
      blocker.close();
      removeDir(dir);
    }
  });

  it('a data dir that cannot be written', () => {
    const dir = tempDir('notdir');
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    try {
      const r = cli(['start', '--data-dir', join(file, 'data'), '--bind', '127.0.22.3', '--hostname', '127.0.22.3', '--log-level', 'silent']);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /cannot write the data dir .*ENOTDIR/);
    } finally {
      removeDir(dir);
    }
  });

  it('bad flags and bad values', () => {
    const unknown = cli(['start', '--no-such-flag']);
    assert.notEqual(unknown.status, 0);
    assert.match(unknown.stderr, /unknown option '--no-such-flag'/);
    const badPort = cli(['start', '--https-port', '99999', '--hostname', 'bad_host!']);
    assert.notEqual(badPort.status, 0);
    assert.match(badPort.stderr, /--https-port: https-port must be 1-65535/);
    assert.match(badPort.stderr, /--hostname: hostname must be a DNS name or an IP address/);
  });
});

describe('restart', () => {
  it('keeps devices, twins and keys, and no key is on disk in clear text', async () => {
    const address = '127.0.22.4';
    const first = await startHubProcess({ address });
    const registry = Registry.fromConnectionString(first.connectionString);
    const { responseBody: d } = await registry.create({ deviceId: 'keeper' });
    const key = String(d.authentication?.symmetricKey?.primaryKey);
    const key2 = String(d.authentication?.symmetricKey?.secondaryKey);
    await registry.updateTwin('keeper', { tags: { room: 'boiler' }, properties: { desired: { t: 21 } } }, '*');
    assert.equal(await first.stop(), 0);

    const second = await startHubProcess({ address, dataDir: first.dataDir });
    try {
      assert.equal(second.connectionString, first.connectionString, 'the policy keys survive');
      const registry2 = Registry.fromConnectionString(second.connectionString);
      const { responseBody: again } = await registry2.get('keeper');
      assert.equal(again.authentication?.symmetricKey?.primaryKey, key);
      assert.equal(again.etag, d.etag);
      const { responseBody: twin } = await registry2.getTwin('keeper');
      assert.equal(twin.tags.room, 'boiler');
      assert.equal(twin.properties.desired.t, 21);

      const ownerKey = /SharedAccessKey=([^;]+)/.exec(second.connectionString)?.[1];
      assert.ok(ownerKey);
      for (const file of allFiles(second.dataDir)) {
        const content = readFileSync(file).toString('latin1');
        for (const secret of [key, key2, ownerKey]) {
          assert.ok(!content.includes(secret), `${file} holds a key in clear text`);
          assert.ok(!content.includes(Buffer.from(secret, 'base64').toString('latin1')), `${file} holds raw key bytes`);
        }
      }
      // The log says nothing secret either.
      assert.ok(!second.output().includes(ownerKey));
    } finally {
      assert.equal(await second.stop(), 0);
      removeDir(first.dataDir);
    }
  });

  it('refuses to start with a master key that does not match the database', async () => {
    const address = '127.0.22.5';
    const hub = await startHubProcess({ address });
    assert.equal(await hub.stop(), 0);
    try {
      const r = cli(['start', '--data-dir', hub.dataDir, '--bind', address, '--hostname', address, '--log-level', 'silent'], {
        GATEHOUSE_MASTER_KEY: Buffer.alloc(32, 5).toString('base64'),
      });
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /master key .* does not match this database/);
    } finally {
      removeDir(hub.dataDir);
    }
  });
});
