// The alert engine in process, against a manual clock and a real SQLite store: windows,
// thresholds and resolution; per-identity keys; default rules; webhook payload, signature and
// retry (with a fake fetch); certificate expiry; restarts; rule validation.
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { SecretBox } from '../src/core/secret-box.js';
import { HubError } from '../src/core/errors.js';
import { createLogger } from '../src/log.js';
import { AlertEngine, type AlertPayload, type CertificateInventory } from '../src/alerts/alerts.js';
import { renderRule } from '../src/alerts/alert-rules.js';
import { SecurityEvents, type AuthEvent, type ChangeEvent } from '../src/core/security-events.js';
import Fastify from 'fastify';
import { registerAlertRoutes } from '../src/protocol/http/routes/alerts.js';
import type { Store } from '../src/store/ports.js';
import { openSqliteStore } from '../src/store/sqlite/open-sqlite-store.js';

const T0 = Date.parse('2030-01-01T00:00:00.000Z');
const DAY = 86_400_000;

interface Sent {
  url: string;
  headers: Record<string, string>;
  body: string;
  payload: AlertPayload;
}

interface Rig {
  store: Store;
  events: SecurityEvents;
  clock: { now(): number; t: number };
  engine: AlertEngine;
  sent: Sent[];
  /** Status codes the fake receiver answers with, in turn (then 204). */
  answers: number[];
  logs: Array<Record<string, unknown>>;
  certs: { cas: Array<{ name: string; subject: string; expiry: string }>; issued: Array<{ serial: string; caName: string; deviceId: string; notAfter: string; revokedAt: string | null }> };
  restart(): Promise<AlertEngine>;
  close(): Promise<void>;
}

function authFailure(identity: string, over: Partial<AuthEvent> = {}): AuthEvent {
  return { type: 'auth', at: 0, subject: 'device', identity, outcome: 'failure', reason: 'bad signature', reasonCode: 'bad_credentials', remote: '127.0.0.9', protocol: 'mqtt', method: 'sas', ...over };
}

/** A hub's alert engine on a fresh SQLite store; `defaults: false` starts with no rules. */
async function rig(opts: { defaults?: boolean } = {}): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-alerts-engine-'));
  const store = await openSqliteStore(join(dir, 'hub.db'), new SecretBox(randomBytes(32)));
  if (opts.defaults === false) await store.setMeta('alerts.defaults-created', 'test');
  const clock = { t: T0, now: () => clock.t };
  const events = new SecurityEvents((err) => {
    throw err;
  });
  const sent: Sent[] = [];
  const answers: number[] = [];
  const logs: Array<Record<string, unknown>> = [];
  const logger = createLogger(
    'info',
    new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    }),
  );
  const certs: Rig['certs'] = { cas: [], issued: [] };
  const inventory: CertificateInventory = { caCertificates: async () => certs.cas, issuedCertificates: async () => certs.issued };
  const make = () =>
    new AlertEngine({
      store: store.alerts,
      meta: store,
      events,
      certificates: inventory,
      clock,
      logger,
      hub: 'hub.test',
      tickMs: 0,
      certificateCheckMs: 0,
      delivery: { attempts: 3, timeoutMs: 1000, backoffMs: 1 },
      fetch: async (url, init) => {
        const body = String(init.body);
        sent.push({ url, headers: init.headers as Record<string, string>, body, payload: JSON.parse(body) as AlertPayload });
        return new Response(null, { status: answers.shift() ?? 204 });
      },
    });
  const r: Rig = {
    store,
    events,
    clock,
    engine: make(),
    sent,
    answers,
    logs,
    certs,
    async restart() {
      await r.engine.stop();
      r.engine = make();
      await r.engine.start();
      return r.engine;
    },
    async close() {
      await r.engine.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await r.engine.start();
  return r;
}

function withRig(opts: { defaults?: boolean }, fn: (r: Rig) => Promise<void>): () => Promise<void> {
  return async () => {
    const r = await rig(opts);
    try {
      await fn(r);
    } finally {
      await r.close();
    }
  };
}

const hubRule = { kind: 'authFailures', scope: 'hub', threshold: 10, windowSeconds: 600 };

describe('alert engine: windows', () => {
  it(
    'more than 10 in 10 minutes: the 10th is quiet, the 11th fires once, the 12th does not fire again; resolves once the window passes',
    withRig({ defaults: false }, async (r) => {
      await r.engine.putRule('hub-logins', { ...hubRule, actions: { webhook: { url: 'https://hooks.test/in' } } });
      for (let i = 0; i < 10; i++) {
        r.events.emit(authFailure(`dev-${i}`));
        r.clock.t += 1000;
      }
      await r.engine.whenIdle();
      assert.deepEqual(await r.engine.listAlerts({ limit: 10 }), []);
      assert.equal(r.sent.length, 0);
      assert.equal(r.engine.firingByRule().get('hub-logins'), 0);

      r.events.emit(authFailure('dev-10'));
      await r.engine.whenIdle();
      let alerts = await r.engine.listAlerts({ limit: 10 });
      assert.equal(alerts.length, 1);
      const [a] = alerts;
      assert.ok(a);
      assert.deepEqual(
        { rule: a.rule, kind: a.kind, key: a.key, state: a.state, value: a.value, threshold: a.threshold, windowSeconds: a.windowSeconds, firedAt: a.firedAt },
        { rule: 'hub-logins', kind: 'authFailures', key: 'hub', state: 'fired', value: 11, threshold: 10, windowSeconds: 600, firedAt: new Date(T0 + 10_000).toISOString() },
      );
      assert.match(a.summary, /^11 failed authentications in 10 min across the hub/);
      assert.equal(r.engine.firingByRule().get('hub-logins'), 1);
      assert.equal(r.sent.length, 1);
      const warn = r.logs.find((l) => l.event === 'alert.fired');
      assert.equal(warn?.level, 40, 'logged as a warning');

      r.events.emit(authFailure('dev-11'));
      r.engine.evaluate();
      await r.engine.whenIdle();
      assert.equal((await r.engine.listAlerts({ limit: 10 })).length, 1, 'the 12th does not fire again');
      assert.equal(r.sent.length, 1);

      // The first failure leaves the window at T0 + 600 s: 11 left, still above.
      r.clock.t = T0 + 600_000;
      r.engine.evaluate();
      await r.engine.whenIdle();
      assert.equal((await r.engine.listAlerts({ state: 'fired', limit: 10 })).length, 1);
      // The second leaves: 10 left, back to the threshold: resolved.
      r.clock.t = T0 + 601_000;
      r.engine.evaluate();
      await r.engine.whenIdle();
      alerts = await r.engine.listAlerts({ limit: 10 });
      assert.equal(alerts[0]?.state, 'resolved');
      assert.equal(alerts[0]?.value, 10);
      assert.equal(alerts[0]?.resolvedAt, new Date(T0 + 601_000).toISOString());
      assert.equal(r.engine.firingByRule().get('hub-logins'), 0);
      assert.deepEqual(r.sent.map((s) => s.payload.alert.state), ['fired', 'resolved']);
      assert.equal(r.sent[1]?.payload.alert.id, a.id);
      assert.ok(r.logs.some((l) => l.event === 'alert.resolved' && l.level === 30), 'resolution logged as info');

      // A new burst is a new alert.
      for (let i = 0; i < 11; i++) r.events.emit(authFailure('again'));
      await r.engine.whenIdle();
      alerts = await r.engine.listAlerts({ limit: 10 });
      assert.equal(alerts.length, 2);
      assert.equal(alerts[0]?.state, 'fired');
      assert.notEqual(alerts[0]?.id, a.id);
    }),
  );

  it(
    'per-identity keys count independently; successes and other events do not count',
    withRig({ defaults: false }, async (r) => {
      await r.engine.putRule('per-device', { kind: 'authFailures', scope: 'device', threshold: 10, windowSeconds: 600 });
      for (let i = 0; i < 10; i++) {
        r.events.emit(authFailure('a'));
        r.events.emit(authFailure('b'));
        r.events.emit({ ...authFailure('a'), outcome: 'success' });
      }
      r.events.emit(authFailure('a', { subject: 'policy' })); // another identity: policy:a
      r.events.emit({ type: 'session', at: 0, state: 'disconnected', deviceId: 'a', moduleId: null, protocol: 'mqtt', remote: '' });
      await r.engine.whenIdle();
      assert.deepEqual(await r.engine.listAlerts({ limit: 10 }), []);

      r.events.emit(authFailure('a'));
      await r.engine.whenIdle();
      let alerts = await r.engine.listAlerts({ limit: 10 });
      assert.deepEqual(alerts.map((a) => [a.key, a.value]), [['device:a', 11]]);
      assert.match(alerts[0]?.summary ?? '', /for device:a/);
      assert.deepEqual(alerts[0]?.details, { subject: 'device', identity: 'a', reason: 'bad_credentials', protocol: 'mqtt', remote: '127.0.0.9' });

      r.events.emit(authFailure('b'));
      r.events.emit(authFailure('a'));
      await r.engine.whenIdle();
      alerts = await r.engine.listAlerts({ limit: 10 });
      assert.deepEqual(alerts.map((a) => a.key), ['device:b', 'device:a']);
      assert.equal(r.engine.firingByRule().get('per-device'), 2);

      // b's failures age out first only if they are older: move b's window past, keep a busy.
      r.clock.t += 600_000;
      for (let i = 0; i < 11; i++) r.events.emit(authFailure('a'));
      r.engine.evaluate();
      await r.engine.whenIdle();
      const fired = await r.engine.listAlerts({ state: 'fired', limit: 10 });
      assert.deepEqual(fired.map((a) => a.key), ['device:a']);
      assert.deepEqual((await r.engine.listAlerts({ state: 'resolved', limit: 10 })).map((a) => a.key), ['device:b']);
    }),
  );

  it(
    'a rule with reasons counts only failures of those reason codes, says so in its summary, and a changed filter starts over',
    withRig({ defaults: false }, async (r) => {
      await r.engine.putRule('cross', { kind: 'authFailures', scope: 'device', reasons: ['cross_device', 'forbidden_topic'], threshold: 1, windowSeconds: 600 });
      for (let i = 0; i < 5; i++) r.events.emit(authFailure('a'));
      r.events.emit(authFailure('a', { reasonCode: 'cross_device', reason: 'publish to devices/b/messages/events/ refused' }));
      await r.engine.whenIdle();
      assert.deepEqual(await r.engine.listAlerts({ limit: 10 }), [], 'bad credentials are not what it watches');
      r.events.emit(authFailure('a', { reasonCode: 'forbidden_topic', reason: 'publish to x refused' }));
      await r.engine.whenIdle();
      const [a] = await r.engine.listAlerts({ limit: 10 });
      assert.equal(a?.key, 'device:a');
      assert.equal(a?.value, 2);
      assert.match(a?.summary ?? '', /^2 failed authentications \(cross_device, forbidden_topic\) in 10 min for device:a/);
      const [rule] = (await r.engine.listRules()).filter((x) => x.name === 'cross');
      assert.deepEqual(rule?.reasons, ['cross_device', 'forbidden_topic']);

      await r.engine.putRule('cross', { kind: 'authFailures', scope: 'device', reasons: ['tls_version'], threshold: 1, windowSeconds: 600 });
      await r.engine.whenIdle();
      assert.equal((await r.engine.listAlerts({ state: 'fired', limit: 10 })).length, 0, 'a changed filter resolves what the old one had open');
    }),
  );

  it(
    'a per-identity rule tracking its maximum of identities still catches a new one (the oldest quiet one is forgotten)',
    withRig({ defaults: false }, async (r) => {
      await r.engine.putRule('per-device', { kind: 'authFailures', scope: 'device', threshold: 1, windowSeconds: 600 });
      for (let i = 0; i < 10_000; i++) r.events.emit(authFailure(`spray-${i}`));
      r.events.emit(authFailure('target'));
      r.events.emit(authFailure('target'));
      await r.engine.whenIdle();
      assert.deepEqual((await r.engine.listAlerts({ limit: 10 })).map((a) => [a.key, a.value]), [['device:target', 2]]);
    }),
  );

  it(
    'C2D dead letters and disconnect storms',
    withRig({ defaults: false }, async (r) => {
      await r.engine.putRule('dl', { kind: 'c2dDeadLetters', threshold: 0, windowSeconds: 3600 });
      await r.engine.putRule('storm', { kind: 'disconnectStorm', threshold: 3, windowSeconds: 60 });
      r.events.emit({ type: 'c2d', at: 0, outcome: 'expired', deviceId: 'd1', count: 5 });
      await r.engine.whenIdle();
      assert.deepEqual(await r.engine.listAlerts({ limit: 10 }), [], 'expiry is not a dead letter');
      r.events.emit({ type: 'c2d', at: 0, outcome: 'dead-lettered', deviceId: 'd1', count: 2 });
      for (let i = 0; i < 4; i++) r.events.emit({ type: 'session', at: 0, state: i % 2 === 0 ? 'disconnected' : 'connected', deviceId: `d${i}`, moduleId: null, protocol: 'mqtt', remote: '' });
      await r.engine.whenIdle();
      assert.deepEqual(await r.engine.listAlerts({ limit: 10 }).then((l) => l.map((a) => [a.rule, a.value])), [['dl', 2]]);
      for (let i = 0; i < 2; i++) r.events.emit({ type: 'session', at: 0, state: 'disconnected', deviceId: 'x', moduleId: null, protocol: 'mqtt-ws', remote: '' });
      await r.engine.whenIdle();
      const [storm] = await r.engine.listAlerts({ rule: 'storm', limit: 1 });
      assert.ok(storm);
      r.clock.t += 3_600_000;
      r.engine.evaluate();
      await r.engine.whenIdle();
      assert.deepEqual(await r.engine.listAlerts({ state: 'fired', limit: 10 }), []);
    }),
  );
});

describe('alert engine: webhooks', () => {
  it(
    'posts the alert JSON with an HMAC signature, retries a failed attempt, and records the delivery',
    withRig({ defaults: false }, async (r) => {
      const secret = 's3cret-'.padEnd(32, 'x');
      await r.engine.putRule('hub-logins', { ...hubRule, actions: { log: false, webhook: { url: 'https://hooks.test/in', secret } } });
      r.answers.push(500);
      for (let i = 0; i < 11; i++) r.events.emit(authFailure('d1'));
      await r.engine.whenIdle();
      assert.equal(r.sent.length, 2, 'one failed attempt, one retry');
      const [first, retry] = r.sent;
      assert.ok(first && retry);
      assert.equal(first.body, retry.body);
      assert.equal(first.headers['x-gatehouse-delivery'], retry.headers['x-gatehouse-delivery']);
      assert.equal(retry.headers['x-gatehouse-signature'], `sha256=${createHmac('sha256', secret).update(retry.body).digest('hex')}`);
      assert.equal(retry.headers['x-gatehouse-event'], 'alert.fired');
      assert.equal(retry.headers['content-type'], 'application/json');
      const a = retry.payload.alert;
      assert.deepEqual(Object.keys(a).sort(), ['details', 'firedAt', 'hub', 'id', 'key', 'kind', 'rule', 'state', 'summary', 'threshold', 'value', 'windowSeconds'].sort());
      assert.deepEqual(
        { rule: a.rule, kind: a.kind, key: a.key, state: a.state, value: a.value, threshold: a.threshold, windowSeconds: a.windowSeconds, hub: a.hub },
        { rule: 'hub-logins', kind: 'authFailures', key: 'hub', state: 'fired', value: 11, threshold: 10, windowSeconds: 600, hub: 'hub.test' },
      );
      assert.ok(!retry.body.includes(secret));
      const [stored] = await r.engine.listAlerts({ limit: 1 });
      assert.equal(stored?.deliveries, 2);
      assert.deepEqual({ ...stored?.lastDelivery, at: undefined }, { at: undefined, state: 'fired', ok: true, attempts: 2, status: 204, error: null });
      assert.ok(!r.logs.some((l) => l.event === 'alert.fired'), 'log action off');

      // Three failures: given up, recorded, logged without the URL path; the hub carries on.
      r.answers.push(503, 503, 503);
      r.clock.t += 601_000;
      r.engine.evaluate();
      await r.engine.whenIdle();
      const [resolved] = await r.engine.listAlerts({ limit: 1 });
      assert.equal(resolved?.state, 'resolved');
      assert.equal(resolved?.deliveries, 5);
      assert.deepEqual({ ...resolved?.lastDelivery, at: undefined }, { at: undefined, state: 'resolved', ok: false, attempts: 3, status: 503, error: 'HTTP 503' });
      const failed = r.logs.find((l) => l.event === 'alert.delivery-failed');
      assert.equal(failed?.target, 'https://hooks.test');
      // A 4xx other than 408/429 is not retried.
      r.answers.push(400);
      r.sent.length = 0;
      for (let i = 0; i < 11; i++) r.events.emit(authFailure('d1'));
      await r.engine.whenIdle();
      assert.equal(r.sent.length, 1);
    }),
  );

  it(
    'a receiver that is down does not block or break evaluation',
    withRig({ defaults: false }, async (r) => {
      await r.engine.putRule('hub-logins', { ...hubRule, threshold: 0, actions: { webhook: { url: 'http://127.0.0.1:9/unreachable' } } });
      // Replace the fake fetch's answers with a thrown network error.
      const engine = new AlertEngine({
        store: r.store.alerts,
        meta: r.store,
        events: r.events,
        certificates: { caCertificates: async () => [], issuedCertificates: async () => [] },
        clock: r.clock,
        logger: createLogger('silent'),
        hub: 'h',
        tickMs: 0,
        certificateCheckMs: 0,
        delivery: { attempts: 2, timeoutMs: 100, backoffMs: 1 },
        fetch: async () => {
          throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
        },
      });
      await r.engine.stop();
      r.engine = engine;
      await engine.start();
      r.events.emit(authFailure('x'));
      await engine.whenIdle();
      const [a] = await engine.listAlerts({ limit: 1 });
      assert.deepEqual({ ...a?.lastDelivery, at: undefined }, { at: undefined, state: 'fired', ok: false, attempts: 2, status: null, error: 'ECONNREFUSED' });
    }),
  );
});

describe('alert engine: rules', () => {
  it(
    'creates the default rules on the first start only; a deleted default stays deleted',
    withRig({}, async (r) => {
      const names = (await r.engine.listRules()).map((x) => x.name);
      assert.deepEqual(names, ['c2d-dead-letters', 'certificates-expiring', 'disconnect-storm', 'failed-logins-device', 'failed-logins-hub']);
      const hub = (await r.engine.listRules()).find((x) => x.name === 'failed-logins-hub');
      assert.deepEqual(hub && renderRule(hub), {
        name: 'failed-logins-hub',
        kind: 'authFailures',
        enabled: true,
        scope: 'hub',
        threshold: 10,
        windowSeconds: 600,
        actions: { log: true, webhook: null },
        created: hub?.created,
        updated: hub?.updated,
      });
      await r.engine.deleteRule('disconnect-storm');
      await r.restart();
      assert.ok(!(await r.engine.listRules()).some((x) => x.name === 'disconnect-storm'));
      await assert.rejects(r.engine.deleteRule('disconnect-storm'), (e: unknown) => e instanceof HubError && e.code === 'ResourceNotFound');
    }),
  );

  it(
    'refuses bad rules with AlertRuleInvalid naming the field',
    withRig({ defaults: false }, async (r) => {
      const cases: Array<[string, unknown, RegExp]> = [
        ['ok', null, /JSON object/],
        ['ok', { kind: 'nope' }, /kind must be one of authFailures, c2dDeadLetters, certificateExpiry, disconnectStorm/],
        ['ok', { kind: 'authFailures', windowSeconds: 60 }, /threshold is required/],
        ['ok', { kind: 'authFailures', threshold: -1, windowSeconds: 60 }, /threshold must be an integer from 0 to 1000000/],
        ['ok', { kind: 'authFailures', threshold: 1.5, windowSeconds: 60 }, /threshold must be an integer/],
        ['ok', { kind: 'authFailures', threshold: 1, windowSeconds: 0 }, /windowSeconds must be an integer from 1 to 86400/],
        ['ok', { kind: 'authFailures', threshold: 1, windowSeconds: 60, scope: 'planet' }, /scope must be hub or device/],
        ['ok', { kind: 'authFailures', threshold: 1, windowSeconds: 60, reasons: ['cross_device', 'nope'] }, /reasons\.1 must each be one of bad_credentials, /],
        ['ok', { kind: 'authFailures', threshold: 1, windowSeconds: 60, reasons: [] }, /reasons must name at least one reason code/],
        ['ok', { kind: 'authFailures', threshold: 1, windowSeconds: 60, reasons: ['tls_version', 'tls_version'] }, /reasons must not repeat a reason code/],
        ['ok', { kind: 'authFailures', threshold: 1, windowSeconds: 60, reasons: 'cross_device' }, /reasons must be a list of reason codes/],
        ['ok', { kind: 'disconnectStorm', threshold: 1, windowSeconds: 60, reasons: ['cross_device'] }, /unknown field: reasons/],
        ['ok', { kind: 'certificateExpiry' }, /days is required/],
        ['ok', { kind: 'certificateExpiry', days: 30, threshold: 3 }, /unknown field: threshold/],
        ['ok', { kind: 'disconnectStorm', threshold: 1, windowSeconds: 60, actions: { webhook: { url: 'ftp://x' } } }, /actions\.webhook\.url must be an http/],
        ['ok', { kind: 'disconnectStorm', threshold: 1, windowSeconds: 60, actions: { webhook: { url: 'https://u:p@x.test/' } } }, /without user name or password/],
        ['ok', { kind: 'disconnectStorm', threshold: 1, windowSeconds: 60, actions: { webhook: { url: 'https://x.test/', secret: 'short' } } }, /secret must be 16 to 256 characters/],
        ['ok', { kind: 'disconnectStorm', threshold: 1, windowSeconds: 60, actions: { email: 'x' } }, /unknown field in actions: email/],
        ['ok', { kind: 'disconnectStorm', threshold: 1, windowSeconds: 60, enabled: 'yes' }, /enabled must be true or false/],
        ['bad name!', { kind: 'disconnectStorm', threshold: 1, windowSeconds: 60 }, /rule name 'bad name!' must be 1-64/],
      ];
      for (const [name, body, message] of cases) {
        await assert.rejects(r.engine.putRule(name, body), (e: unknown) => {
          assert.ok(e instanceof HubError, String(e));
          assert.equal(e.code, 'AlertRuleInvalid');
          assert.equal(e.status, 400);
          assert.match(e.message, message);
          return true;
        });
      }
      assert.deepEqual(await r.engine.listRules(), []);
    }),
  );

  it(
    'keeps the webhook secret across a GET-edit-PUT round trip, drops it on null or a new URL, never renders it',
    withRig({ defaults: false }, async (r) => {
      const secret = 'x'.repeat(40);
      await r.engine.putRule('r', { ...hubRule, actions: { webhook: { url: 'https://a.test/', secret } } });
      let rule = (await r.engine.listRules())[0];
      assert.equal(rule?.webhookSecret, secret);
      const shown = rule && renderRule(rule);
      assert.deepEqual((shown?.actions as { webhook: unknown }).webhook, { url: 'https://a.test/', secretSet: true });
      assert.ok(!JSON.stringify(shown).includes(secret));
      await r.engine.putRule('r', { ...hubRule, threshold: 5, actions: { webhook: { url: 'https://a.test/' } } });
      rule = (await r.engine.listRules())[0];
      assert.equal(rule?.webhookSecret, secret, 'same URL, secret omitted: kept');
      assert.equal(rule?.threshold, 5);
      await r.engine.putRule('r', { ...hubRule, actions: { webhook: { url: 'https://b.test/' } } });
      assert.equal((await r.engine.listRules())[0]?.webhookSecret, null, 'a new URL does not inherit the secret');
      await r.engine.putRule('r', { ...hubRule, actions: { webhook: { url: 'https://b.test/', secret } } });
      await r.engine.putRule('r', { ...hubRule, actions: { webhook: { url: 'https://b.test/', secret: null } } });
      assert.equal((await r.engine.listRules())[0]?.webhookSecret, null, 'null removes it');
    }),
  );

  it(
    'changing a rule resolves what it had open; changing only its actions keeps it firing',
    withRig({ defaults: false }, async (r) => {
      await r.engine.putRule('r', hubRule);
      for (let i = 0; i < 11; i++) r.events.emit(authFailure('d'));
      await r.engine.putRule('r', { ...hubRule, actions: { log: false, webhook: { url: 'https://hooks.test/' } } });
      await r.engine.whenIdle();
      assert.equal((await r.engine.listAlerts({ state: 'fired', limit: 10 })).length, 1);
      await r.engine.putRule('r', { ...hubRule, threshold: 50 });
      await r.engine.whenIdle();
      const [a] = await r.engine.listAlerts({ limit: 10 });
      assert.equal(a?.state, 'resolved');
      assert.match(a?.summary ?? '', /\(rule changed\)$/);
      assert.equal(r.sent.at(-1)?.payload.alert.state, 'resolved', 'through the old actions');
      for (let i = 0; i < 11; i++) r.events.emit(authFailure('d'));
      await r.engine.putRule('r', { ...hubRule, threshold: 5, enabled: false });
      for (let i = 0; i < 11; i++) r.events.emit(authFailure('d'));
      await r.engine.whenIdle();
      assert.deepEqual(await r.engine.listAlerts({ state: 'fired', limit: 10 }), [], 'a disabled rule does not fire');
    }),
  );

  it(
    'after a restart open alerts are adopted, not fired again; a windowed one resolves when its window is empty',
    withRig({ defaults: false }, async (r) => {
      await r.engine.putRule('r', { ...hubRule, actions: { webhook: { url: 'https://hooks.test/' } } });
      for (let i = 0; i < 11; i++) r.events.emit(authFailure('d'));
      await r.engine.whenIdle();
      const engine = await r.restart();
      r.events.emit(authFailure('d'));
      await engine.whenIdle();
      assert.equal(r.sent.length, 1, 'not fired again');
      assert.equal(engine.firingByRule().get('r'), 1);
      engine.evaluate();
      await engine.whenIdle();
      const [a] = await engine.listAlerts({ limit: 10 });
      assert.equal(a?.state, 'resolved');
      assert.deepEqual(r.sent.map((s) => s.payload.alert.state), ['fired', 'resolved']);
    }),
  );
});

describe('alert engine: certificate expiry', () => {
  it(
    'fires per CA and per newest unrevoked device certificate expiring within the days, and resolves on renewal',
    withRig({ defaults: false }, async (r) => {
      const at = (days: number) => new Date(T0 + days * DAY).toISOString();
      r.certs.cas.push({ name: 'root', subject: 'CN=root', expiry: at(400) }, { name: 'old-root', subject: 'CN=old', expiry: at(10) });
      r.certs.issued.push(
        { serial: '01', caName: 'root', deviceId: 'd1', notAfter: at(5), revokedAt: null },
        { serial: '02', caName: 'root', deviceId: 'd2', notAfter: at(3), revokedAt: at(-1) },
        { serial: '03', caName: 'root', deviceId: 'd3', notAfter: at(-2), revokedAt: null },
        { serial: '04', caName: 'root', deviceId: 'd4', notAfter: at(1), revokedAt: null },
        { serial: '05', caName: 'root', deviceId: 'd4', notAfter: at(365), revokedAt: null },
      );
      await r.engine.putRule('certs', { kind: 'certificateExpiry', days: 30 });
      await r.engine.checkCertificates();
      await r.engine.whenIdle();
      const fired = await r.engine.listAlerts({ state: 'fired', limit: 10 });
      assert.deepEqual(fired.map((a) => [a.key, a.value, a.threshold, a.windowSeconds]).sort(), [
        ['ca:old-root', 10, 30, null],
        ['issued:01', 5, 30, null],
        ['issued:03', -2, 30, null],
      ]);
      assert.match(fired.find((a) => a.key === 'ca:old-root')?.summary ?? '', /^CA certificate 'old-root' expires in 10 days/);
      assert.match(fired.find((a) => a.key === 'issued:03')?.summary ?? '', /of 'd3' \(CA 'root'\) expired on/);
      assert.deepEqual(fired.find((a) => a.key === 'issued:01')?.details, { type: 'device', serial: '01', deviceId: 'd1', caName: 'root', notAfter: at(5) });

      await r.engine.checkCertificates();
      await r.engine.whenIdle();
      assert.equal((await r.engine.listAlerts({ limit: 10 })).length, 3, 'checked again: nothing new');

      // d1 renews; old-root is replaced.
      r.certs.issued.push({ serial: '06', caName: 'root', deviceId: 'd1', notAfter: at(365), revokedAt: null });
      r.certs.cas.splice(1, 1);
      await r.engine.checkCertificates();
      await r.engine.whenIdle();
      assert.deepEqual((await r.engine.listAlerts({ state: 'fired', limit: 10 })).map((a) => a.key), ['issued:03']);
      assert.deepEqual((await r.engine.listAlerts({ state: 'resolved', limit: 10 })).map((a) => a.key).sort(), ['ca:old-root', 'issued:01']);
      assert.equal(r.engine.firingByRule().get('certs'), 1);
    }),
  );
});

describe('alert rule routes', () => {
  it(
    'rule changes are change events with the caller as actor and no secret',
    withRig({ defaults: false }, async (r) => {
      const changes: ChangeEvent[] = [];
      r.events.on((e) => {
        if (e.type === 'change') changes.push(e);
      });
      const app = Fastify();
      app.decorateRequest('principal', undefined);
      app.addHook('onRequest', async (req) => {
        req.principal = { kind: 'policy', name: 'iothubowner', rights: new Set() };
      });
      registerAlertRoutes(app, r.engine, r.events);
      const secret = 'y'.repeat(32);
      const body = { kind: 'disconnectStorm', threshold: 5, windowSeconds: 60, actions: { webhook: { url: 'https://hooks.test/', secret } } };
      assert.equal((await app.inject({ method: 'PUT', url: '/alerts/rules/storm', payload: body })).statusCode, 201);
      assert.equal((await app.inject({ method: 'PUT', url: '/alerts/rules/storm', payload: { ...body, threshold: 6 } })).statusCode, 200);
      assert.equal((await app.inject({ method: 'DELETE', url: '/alerts/rules/storm' })).statusCode, 204);
      await app.close();
      assert.deepEqual(
        changes.map((c) => [c.actor, c.action, c.target, (c.before as { threshold?: number } | undefined)?.threshold, (c.after as { threshold?: number } | undefined)?.threshold]),
        [
          ['policy:iothubowner', 'alert-rule.create', 'alerts/rules/storm', undefined, 5],
          ['policy:iothubowner', 'alert-rule.update', 'alerts/rules/storm', 5, 6],
          ['policy:iothubowner', 'alert-rule.delete', 'alerts/rules/storm', 6, undefined],
        ],
      );
      assert.ok(!JSON.stringify(changes).includes(secret));
    }),
  );
});
