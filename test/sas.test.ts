import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateSasToken, hmacSha256, parseSasToken, pathCovers, resourcePathForHost, signatureMatches } from '../src/auth/sas.js';
import { HubError } from '../src/core/errors.js';
import { ServiceAuthenticator } from '../src/auth/service-authenticator.js';
import type { SharedAccessPolicy } from '../src/core/types.js';

// Vectors from the wire doc §2.3, generated with the installed SDK.
const KEY = 'MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=';
const HOST = 'myhub.azure-devices.net';
const SE = 1700000000;

test('generates the SDK tokens byte for byte', () => {
  assert.equal(
    generateSasToken({ resource: `${HOST}/devices/dev 1`, key: KEY, expiry: SE }),
    'SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fdev%201&sig=NcT2lnsRG6UvL73kedJV4KCCH%2BFy%2F%2BM8oOHZLDfMfEQ%3D&se=1700000000',
  );
  assert.equal(
    generateSasToken({ resource: `${HOST}/devices/d1/modules/m1`, key: KEY, expiry: SE }),
    'SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fd1%2Fmodules%2Fm1&sig=fAD8fwfvpfKAE6SZ2pTDT2oDsuI%2BncfGsz9YS4MD9kU%3D&se=1700000000',
  );
  assert.equal(
    generateSasToken({ resource: HOST, key: KEY, keyName: 'iothubowner', expiry: SE }),
    'SharedAccessSignature sr=myhub.azure-devices.net&sig=sJAIZTF5oG40VHrie96heZ865%2BnR4QavBvHnzxZm8rk%3D&skn=iothubowner&se=1700000000',
  );
});

test('verifies over the raw sr, whatever its encoding, in any field order', () => {
  // DPS puts a raw (unencoded) sr in its tokens; the signature covers it as sent.
  const dps = parseSasToken(
    'SharedAccessSignature sr=0ne00000001/registrations/reg1&sig=a1GoSosLnYzvlWyFm4V94ee2d3yDHfy0E1ZMJ8RxQ2c%3D&skn=registration&se=1700000000',
  );
  assert.ok(signatureMatches(dps, [KEY]));
  const reordered = parseSasToken(
    'SharedAccessSignature se=1700000000&skn=iothubowner&sig=sJAIZTF5oG40VHrie96heZ865%2BnR4QavBvHnzxZm8rk%3D&sr=myhub.azure-devices.net',
  );
  assert.ok(signatureMatches(reordered, [null, KEY]), 'the secondary key is tried too');
  assert.equal(reordered.keyName, 'iothubowner');
  const other = hmacSha256(KEY, 'x').toString('base64');
  assert.ok(!signatureMatches(reordered, [other]));
});

test('refuses malformed tokens with a 401 error', () => {
  for (const bad of [
    undefined,
    '',
    'Bearer abc',
    'SharedAccessSignature sr=a&se=1',
    'SharedAccessSignature sr=a&sig=AAAA&se=1',
    'SharedAccessSignature sr=a&sig=%ZZ&se=1',
    'SharedAccessSignature sr=a&sig=sJAIZTF5oG40VHrie96heZ865%2BnR4QavBvHnzxZm8rk%3D&se=soon',
    'SharedAccessSignature sr=a&sr=b&sig=sJAIZTF5oG40VHrie96heZ865%2BnR4QavBvHnzxZm8rk%3D&se=1',
  ]) {
    assert.throws(
      () => parseSasToken(bad),
      (e: unknown) => e instanceof HubError && e.code === 'IotHubUnauthorizedAccess',
      String(bad),
    );
  }
});

test('scopes: host with or without port, segment-wise prefixes', () => {
  assert.equal(resourcePathForHost('MyHub.Azure-Devices.net', HOST), '');
  assert.equal(resourcePathForHost(`${HOST}:8883/devices/d1`, HOST), '/devices/d1');
  assert.equal(resourcePathForHost('evil.example.com/devices/d1', HOST), undefined);
  assert.ok(pathCovers('/devices/d1', '/devices/d1/modules/m'));
  assert.ok(!pathCovers('/devices/d1', '/devices/d10'));
  assert.ok(pathCovers('', '/anything'));
});

test('service authentication: unknown policy and wrong key look the same; expiry and host are checked', async () => {
  const policy: SharedAccessPolicy = { name: 'registryRead', primaryKey: KEY, secondaryKey: KEY, rights: ['RegistryRead'], etag: 'e' };
  let now = SE * 1000 - 10_000;
  const auth = new ServiceAuthenticator({ findPolicy: async (n) => (n === policy.name ? policy : undefined) }, () => HOST, { now: () => now });
  const good = generateSasToken({ resource: HOST, key: KEY, keyName: 'registryRead', expiry: SE });
  const p = await auth.authenticate(good, '/devices/x');
  assert.deepEqual([...p.rights], ['RegistryRead']);

  const failures: HubError[] = [];
  for (const token of [
    generateSasToken({ resource: HOST, key: KEY, keyName: 'nosuchpolicy', expiry: SE }),
    generateSasToken({ resource: HOST, key: Buffer.alloc(32, 1).toString('base64'), keyName: 'registryRead', expiry: SE }),
    generateSasToken({ resource: 'otherhub.example.com', key: KEY, keyName: 'registryRead', expiry: SE }),
    generateSasToken({ resource: `${HOST}/devices/a`, key: KEY, keyName: 'registryRead', expiry: SE }),
    generateSasToken({ resource: `${HOST}/devices/x`, key: KEY, expiry: SE }),
  ]) {
    await assert.rejects(auth.authenticate(token, '/devices/x'), (e: unknown) => {
      assert.ok(e instanceof HubError);
      failures.push(e);
      return true;
    });
  }
  assert.equal(new Set(failures.map((f) => `${f.code}|${f.message}`)).size, 1, 'every failure shows the same code and text');

  now = SE * 1000 + 1;
  await assert.rejects(auth.authenticate(good, '/devices/x'), (e: unknown) => e instanceof HubError && e.status === 401);
});
