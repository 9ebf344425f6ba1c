/**
 * Hub settings edited on two nodes of one store (issue 16): a change made on a node whose copy is
 * stale never overwrites the other node's; with If-Match it is 412 and the node takes the stored
 * settings in (its gate applies them), without If-Match the patch lands on top of them.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';
import { HubError } from '../src/core/errors.js';
import { SecretBox } from '../src/core/secret-box.js';
import { ConnectionTable } from '../src/hub/connections.js';
import { SecurityEvents } from '../src/core/security-events.js';
import { AccessGate } from '../src/access/gate.js';
import { SettingsService } from '../src/settings/settings-service.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';
import { MessageTally } from '../src/core/tally.js';
import { testBus } from './support/test-bus.js';

/** The settings service's log, unread here. */
const silentLog = { info: () => undefined, warn: () => undefined };

it('a settings change made on a stale node is refused or applied on top, never over the other node', async () => {
  const store = await openSqliteStore(':memory:', new SecretBox(randomBytes(32)));
  const clock = { now: () => Date.now() };
  let n = 0;
  const node = async () => {
    const events = new SecurityEvents();
    const bus = testBus(`node-${++n}`); // the nodes never hear each other: only the store's etag tells them
    const settings = new SettingsService(store, clock, events, bus, silentLog);
    await settings.load();
    const gate = new AccessGate(settings.current, { devices: {} as never, service: {} as never, operators: {} as never, connections: new ConnectionTable(bus, new MessageTally()), events, clock, log: () => undefined, counters: store.counters });
    settings.bind({ gate, operators: {} as never, enrollments: {} as never });
    return { settings, gate };
  };
  try {
    const a = await node();
    const b = await node();
    const staleEtag = b.settings.current.etag;
    await a.settings.change({ patch: { minTlsVersion: '1.3' }, actor: 'operator:a' });

    await assert.rejects(b.settings.change({ patch: { auditLog: { enabled: false } }, ifMatch: `"${staleEtag}"`, actor: 'operator:b' }), (err: unknown) => err instanceof HubError && err.code === 'PreconditionFailed');
    assert.equal(b.settings.current.minTlsVersion, '1.3', 'the refused node took the stored settings in');
    assert.equal(b.gate.settings.minTlsVersion, '1.3', 'and its gate applies them');

    const r = await b.settings.change({ patch: { c2d: { maxDeliveryCount: 5 } }, actor: 'operator:b' });
    assert.equal(r.dryRun, false);
    await a.settings.refresh();
    for (const n of [a, b]) {
      assert.equal(n.settings.current.minTlsVersion, '1.3', "a's change kept");
      assert.equal(n.settings.current.c2d.maxDeliveryCount, 5, "b's change made");
      assert.equal(n.settings.current.version, 2);
    }
  } finally {
    await store.close();
  }
});
