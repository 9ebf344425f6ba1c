/**
 * The reference device's persisted settings: a round trip keeps everything; secrets are not in
 * the file in clear text; a missing, truncated, bit-flipped, foreign-magic or other-device block
 * boots into factory defaults with the reason; a write never leaves half a block; validation
 * names each bad field.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigurationStore, DEFAULT_CONFIG, validateConfig, type DeviceConfig } from '../src/configuration.js';
import { newLabel, readLabel, storageKey, writeLabel } from '../src/label.js';

const dir = mkdtempSync(join(tmpdir(), 'gh-device-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const label = newLabel('GC-0001');
const key = storageKey(label);

const configured: DeviceConfig = {
  mode: 'hub',
  network: { ssid: 'plant-floor', password: 'wifi-secret-123' },
  hub: { kind: 'dps', provisioningHost: 'gatehouse.local', idScope: '0ne0000ABCD', registrationId: 'gate-7', attestation: { type: 'symmetricKey', key: 'c3ltbWV0cmljLWtleS1zZWNyZXQ=' } },
  relay: { pulseMs: 750 },
  button: { softResetMs: 5000, factoryResetMs: 20_000 },
};

describe('the settings block', () => {
  it('round-trips, with secrets sealed in the file and the file mode 0600', () => {
    const file = join(dir, 'roundtrip.bin');
    const store = new ConfigurationStore(file, key);
    store.save(configured);
    const loaded = store.load();
    assert.equal(loaded.source, 'stored');
    assert.deepEqual(loaded.config, configured);
    const raw = readFileSync(file);
    assert.equal(raw.subarray(0, 4).toString(), 'GHGC');
    for (const secret of ['wifi-secret-123', 'c3ltbWV0cmljLWtleS1zZWNyZXQ=']) assert.ok(!raw.includes(secret), `${secret} is not in the file`);
    assert.ok(raw.includes('plant-floor'), 'non-secret settings stay readable for support');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left behind');
  });

  it('boots into defaults, with the reason, when the block is missing, damaged or another device\'s', () => {
    const file = join(dir, 'damaged.bin');
    const store = new ConfigurationStore(file, key);
    const missing = store.load();
    assert.equal(missing.source, 'defaults');
    assert.deepEqual(missing.config, DEFAULT_CONFIG);
    assert.match(missing.reason ?? '', /no stored settings/);

    store.save(configured);
    const good = readFileSync(file);
    const cases: Array<[string, Buffer, RegExp]> = [
      ['truncated', good.subarray(0, good.length - 7), /truncated/],
      ['a flipped bit', Buffer.from(good.map((b, i) => (i === 20 ? b ^ 0x04 : b))), /CRC mismatch/],
      ['foreign magic', Buffer.concat([Buffer.from('XXXX'), good.subarray(4)]), /magic/],
      ['empty', Buffer.alloc(0), /fewer than a header/],
    ];
    for (const [name, bytes, reason] of cases) {
      writeFileSync(file, bytes);
      const r = store.load();
      assert.equal(r.source, 'defaults', name);
      assert.deepEqual(r.config, DEFAULT_CONFIG, name);
      assert.match(r.reason ?? '', reason, name);
    }
    // A block copied from another device: valid CRC, but it does not decrypt here.
    const other = new ConfigurationStore(file, storageKey(newLabel('GC-0002')));
    other.save(configured);
    const stolen = store.load();
    assert.equal(stolen.source, 'defaults');
    assert.match(stolen.reason ?? '', /do not decrypt with this device's key/);
  });

  it('a wipe (factory reset) brings back the first boot', () => {
    const file = join(dir, 'wipe.bin');
    const store = new ConfigurationStore(file, key);
    store.save(configured);
    store.wipe();
    assert.equal(store.load().source, 'defaults');
  });

  it('validation names each bad field with a message a person can act on', () => {
    const r = validateConfig({ ...configured, network: { ssid: '', password: 'x'.repeat(64) }, relay: { pulseMs: 10 }, button: { softResetMs: 6000, factoryResetMs: 5000 } });
    assert.equal(r.ok, false);
    const fields = r.ok ? [] : r.problems.map((p) => `${p.field}: ${p.message}`);
    assert.ok(fields.some((f) => /^network\.ssid: the network name is empty/.test(f)), fields.join('\n'));
    assert.ok(fields.some((f) => /^network\.password: .*63/.test(f)), fields.join('\n'));
    assert.ok(fields.some((f) => /^relay\.pulseMs: the relay pulse must be at least 50 ms/.test(f)), fields.join('\n'));
    assert.ok(fields.some((f) => /^button\.factoryResetMs: .*longer than the soft-reset/.test(f)), fields.join('\n'));
    const hubless = validateConfig({ ...configured, hub: undefined });
    assert.equal(hubless.ok, false);
  });

  it('the label survives a round trip and a bad label is refused', () => {
    const file = join(dir, 'label.json');
    writeLabel(file, label);
    assert.deepEqual(readLabel(file), label);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    writeFileSync(file, JSON.stringify({ ...label, deviceSecret: 'short' }));
    assert.throws(() => readLabel(file), /not 32 bytes/);
  });
});
