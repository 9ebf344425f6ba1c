/**
 * Attack suite (issue 14): network attacks the hub refuses, against a real hub process with its
 * default settings: a TLS 1.1 (or 1.0) handshake on every TLS port (MQTT 8883, HTTPS 443 which
 * also carries MQTT and AMQP over WebSocket and the DPS HTTPS API, AMQP 5671), refused by the
 * server with a protocol_version alert while TLS 1.2 and 1.3 connect; and an address the IP filter
 * rejects, cut off on every port before any TLS (its live session closed when the rule lands),
 * with an audit row per refused connection (reason ip_filtered, the address), while another
 * address keeps working.
 *
 * The audit rows of refused TLS handshakes come with branch i14-lockout: their own describe.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { removeDir, startHubProcess, type HubProcess } from './support/hub-process.js';
import { connectPacket, connectRaw, deviceToken } from './support/raw-mqtt.js';
import { policyKey, restClient, type Rest } from './support/rest.js';
import { auditMark, expectAuditFailures, relaxLockout, tlsHandshake, type ExpectedRow } from './support/attack.js';

const HOST = '127.0.82.1';
const ATTACKER = '127.0.82.9';
const NEIGHBOUR = '127.0.82.3';
const PORTS = [
  ['mqtt', 8883],
  ['https', 443],
  ['amqp', 5671],
] as const;

let hub: HubProcess;
let ca: string;
let rest: Rest;
let deviceKey: string;

before(async () => {
  hub = await startHubProcess({ address: HOST });
  ca = readFileSync(hub.caFile, 'utf8');
  rest = restClient(HOST, ca, policyKey(hub.dataDir));
  await relaxLockout(rest);
  const d = await rest('PUT', '/devices/net-dev', { deviceId: 'net-dev' });
  assert.equal(d.status, 200);
  deviceKey = (d.body as { authentication: { symmetricKey: { primaryKey: string } } }).authentication.symmetricKey.primaryKey;
});

after(async () => {
  assert.equal(await hub.stop(), 0);
  removeDir(hub.dataDir);
});

/** The device connects over MQTT (from `local`, when given). */
async function deviceConnects(local?: string): Promise<void> {
  const { code, client } = await connectRaw(HOST, ca, connectPacket(HOST, 'net-dev', deviceToken(HOST, 'net-dev', deviceKey)), undefined, local);
  assert.equal(code, 0);
  client.end();
}

describe('TLS downgrade', () => {
  it('with the default settings, TLS 1.1 and 1.0 are refused by the server on every TLS port; TLS 1.2 and 1.3 connect', async () => {
    assert.equal(((await rest('GET', '/settings')).body as { minTlsVersion: string }).minTlsVersion, '1.2', 'the default');
    for (const [name, port] of PORTS) {
      for (const old of ['TLSv1.1', 'TLSv1'] as const) {
        // The client offers only the old version (at security level 0, so it really offers it);
        // the alert comes from the server.
        assert.deepEqual(await tlsHandshake(HOST, port, ca, old), { ok: false, code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' }, `${name} ${old}`);
      }
      for (const good of ['TLSv1.2', 'TLSv1.3'] as const) assert.deepEqual(await tlsHandshake(HOST, port, ca, good), { ok: true, protocol: good }, `${name} ${good}`);
    }
    await deviceConnects();
  });
});

describe('IP filter', () => {
  it('a rejected address is cut off on every port before TLS, its live session closed, each refusal audited; another address keeps working', async () => {
    const live = await connectRaw(HOST, ca, connectPacket(HOST, 'net-dev', deviceToken(HOST, 'net-dev', deviceKey)), undefined, ATTACKER);
    assert.equal(live.code, 0, 'connects before the rule');
    const rules = [{ filterName: 'block-attacker', action: 'Reject', ipMask: `${ATTACKER}/32` }];
    assert.equal((await rest('PATCH', '/settings', { ipFilter: { defaultAction: 'Accept', rules } })).status, 200);
    try {
      await live.client.closed;
      const mark = await auditMark(rest);
      const rows: ExpectedRow[] = [];
      for (const [name, port] of PORTS) {
        const r = await tlsHandshake(HOST, port, ca, 'TLSv1.2', ATTACKER);
        assert.equal(r.ok, false, `${name}: refused`);
        // Closed before any handshake: a reset, not a TLS alert.
        assert.doesNotMatch(r.ok ? '' : r.code, /^ERR_SSL/, `${name}: cut off before TLS`);
        rows.push({ subject: 'connection', identity: '', protocol: name, reasonCode: 'ip_filtered', reason: /rejected by the IP filter \(rule block-attacker\)/, remote: ATTACKER });
      }
      await expectAuditFailures(rest, mark, rows);

      for (const [name, port] of PORTS) assert.deepEqual(await tlsHandshake(HOST, port, ca, 'TLSv1.2', NEIGHBOUR), { ok: true, protocol: 'TLSv1.2' }, `${name} from ${NEIGHBOUR}`);
      await deviceConnects(NEIGHBOUR);
    } finally {
      assert.equal((await rest('PATCH', '/settings', { ipFilter: { defaultAction: 'Accept', rules: [] } })).status, 200);
    }
    await deviceConnects(ATTACKER);
  });
});

// Needs branch i14-lockout (audit rows for refused TLS handshakes).
describe('refused TLS handshakes are audited (needs i14-lockout)', () => {
  it('a TLS 1.1 handshake leaves an auth failure row per port', async () => {
    const mark = await auditMark(rest);
    const rows: ExpectedRow[] = [];
    for (const [name, port] of PORTS) {
      assert.equal((await tlsHandshake(HOST, port, ca, 'TLSv1.1', NEIGHBOUR)).ok, false);
      rows.push({ subject: 'connection', identity: '', protocol: name, reasonCode: /tls/i, reason: /TLS|version/i, remote: NEIGHBOUR });
    }
    await expectAuditFailures(rest, mark, rows);
  });
});
