/**
 * The device log keeps what an operator needs (where it was assigned, which id) and never writes
 * a secret: fields are secret by the words of their name, values by the shape of SAS material.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSecretName, jsonLogger } from '../src/log.js';

describe('device log redaction', () => {
  it('redacts by the words of a field name, not by a substring inside a word', () => {
    for (const name of ['primaryKey', 'applicationKey', 'setup_password', 'sasToken', 'sig', 'connectionString', 'connection-string', 'deviceSecret', 'wifi.passphrase']) {
      assert.equal(isSecretName(name), true, name);
    }
    for (const name of ['assignedHub', 'registrationId', 'deviceId', 'design', 'signal', 'keyboardLayout', 'monkey', 'thumbprint', 'idScope']) {
      assert.equal(isSecretName(name), false, name);
    }
  });

  it('writes the assignment and redacts SAS material inside values', () => {
    const lines: string[] = [];
    const log = jsonLogger((l) => lines.push(l));
    log.info('provisioned', {
      assignedHub: 'hub.example.com',
      deviceId: 'gate-7',
      detail: 'HostName=h;DeviceId=gate-7;SharedAccessKey=c2VjcmV0c2VjcmV0',
      token: 'SharedAccessSignature sr=h%2Fdevices%2Fgate-7&sig=abc%2Bdef&se=1',
      note: 'SharedAccessSignature sr=h&sig=xyz&se=2, design=blue',
    });
    const entry = JSON.parse(lines[0] ?? '{}') as Record<string, string>;
    assert.equal(entry.assignedHub, 'hub.example.com');
    assert.equal(entry.deviceId, 'gate-7');
    assert.equal(entry.detail, 'HostName=h;DeviceId=gate-7;SharedAccessKey=[redacted]');
    assert.equal(entry.token, '[redacted]');
    assert.equal(entry.note, 'SharedAccessSignature sr=h&sig=[redacted]&se=2, design=blue');
    assert.doesNotMatch(lines.join(''), /c2VjcmV0c2VjcmV0|abc%2Bdef|xyz/);
  });
});
