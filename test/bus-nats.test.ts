/**
 * The bus conformance suite on the NATS server at 127.0.0.1:4222 (npm test starts one when none
 * answers; GATEHOUSE_TEST_NATS_URL points elsewhere), plus what only the NATS bus does: URLs and
 * credentials, and a clear error when the server is not there.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { busConformance } from '../src/bus/bus.case.js';
import { connectNatsBus } from '../src/bus/nats/nats-bus.js';
import { parseNatsUrl, redactNatsUrl } from '../src/bus/nats/nats-options.js';
import { loadConfig } from '../src/config/schema.js';

const url = process.env.GATEHOUSE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

busConformance('NATS', {
  prefix: `t${randomUUID().replace(/-/g, '')}`,
  open: (onHandlerError) => connectNatsBus({ nodeId: `node-${randomUUID().slice(0, 8)}`, url, onHandlerError }),
});

describe('NATS bus options', () => {
  it('takes user and password, or a token, from the URL and keeps them out of what it logs', () => {
    assert.deepEqual(parseNatsUrl('nats://alice:s%40cret@nats.example:4333'), { server: 'nats.example:4333', tls: false, user: 'alice', pass: 's@cret' });
    assert.deepEqual(parseNatsUrl('tls://tok123@nats.example'), { server: 'nats.example:4222', tls: true, token: 'tok123' });
    assert.equal(redactNatsUrl('nats://alice:secret@nats.example:4333'), 'nats://nats.example:4333');
  });

  it('refuses a URL that is not nats:// or tls://, without repeating its secret', () => {
    for (const bad of ['http://u:hunter2@h:4222', 'nats://h:4222/path', 'nats://:hunter2@h', 'not a url']) {
      assert.throws(() => parseNatsUrl(bad), (err: Error) => !err.message.includes('hunter2'), bad);
    }
  });

  it('says which server did not answer, and not the password', async () => {
    await assert.rejects(connectNatsBus({ nodeId: 'n', url: 'nats://bob:hunter2@127.0.0.1:1', connectTimeoutMs: 2000 }), (err: Error) => {
      assert.match(err.message, /nats:\/\/127\.0\.0\.1:1/);
      assert.doesNotMatch(err.message, /hunter2/);
      return true;
    });
  });

  it('refuses a creds file that is not one, naming the file and not its content', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-creds-'));
    const file = join(dir, 'user.creds');
    writeFileSync(file, 'password=hunter2\n');
    await assert.rejects(connectNatsBus({ nodeId: 'n', url, credsFile: file }), (err: Error) => err.message.includes(file) && !err.message.includes('hunter2'));
  });

  it('validates --nats-url, --nats-creds and --nats-ca once, with the config, without echoing a password', () => {
    assert.equal(loadConfig({ natsUrl: 'nats://u:p@127.0.0.1:4222' }, {}).natsUrl, 'nats://u:p@127.0.0.1:4222');
    assert.equal(loadConfig({}, { GATEHOUSE_NATS_URL: 'tls://nats.example:4222', GATEHOUSE_NATS_CA: '/etc/ca.pem' }).natsCa, '/etc/ca.pem');
    assert.throws(() => loadConfig({ natsUrl: 'http://u:hunter2@h' }, {}), (err: Error) => /--nats-url: /.test(err.message) && !err.message.includes('hunter2'));
    assert.throws(() => loadConfig({ natsCreds: '/x.creds' }, {}), /--nats-creds: goes with --nats-url/);
    assert.throws(() => loadConfig({ natsUrl: 'nats://h:4222', natsCa: '/ca.pem' }, {}), /--nats-ca: needs a tls:\/\/ --nats-url/);
  });
});
