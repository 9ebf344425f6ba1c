/**
 * The device's local port, in process on a manual clock, over real HTTP: what protects the setup
 * page (both label secrets, an HttpOnly SameSite=Strict session, a CSRF token, a body limit, a
 * lockout after failed attempts) and web-server mode's local activation, which takes the
 * application key and nothing else. Logs never carry either secret.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GateController } from '../src/gate-controller.js';
import { newLabel } from '../src/label.js';
import { jsonLogger } from '../src/log.js';
import { ManualClock } from './support/manual-clock.js';

const ADDRESS = '127.0.56.3';
const PORT = 8081;
const BASE = `http://${ADDRESS}:${PORT}`;
const label = newLabel('GC-0103');

function form(fields: Record<string, string>): { method: string; headers: Record<string, string>; body: string; redirect: 'manual' } {
  return { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString(), redirect: 'manual' };
}

describe('the device web server', () => {
  let dir: string;
  let clock: ManualClock;
  let device: GateController;
  const logs: string[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-gate-web-'));
    clock = new ManualClock();
    clock.t = Date.parse('2026-11-22T10:00:00Z');
    device = new GateController({ dataDir: dir, label, bind: ADDRESS, port: PORT, log: jsonLogger((l) => logs.push(l)), scheduler: clock });
    await device.boot();
  });

  after(async () => {
    await device.shutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  it('setup mode: the page needs both label secrets; the session cookie is HttpOnly and SameSite=Strict', async () => {
    const page = await fetch(`${BASE}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /Setup password/);
    assert.match(page.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
    assert.equal(page.headers.get('x-content-type-options'), 'nosniff');

    const onlyPassword = await fetch(`${BASE}/login`, form({ setupPassword: label.setupPassword, applicationKey: 'wrong' }));
    assert.equal(onlyPassword.status, 401);
    assert.equal(onlyPassword.headers.get('set-cookie'), null);
    const swapped = await fetch(`${BASE}/login`, form({ setupPassword: label.applicationKey, applicationKey: label.setupPassword }));
    assert.equal(swapped.status, 401);

    const ok = await fetch(`${BASE}/login`, form({ setupPassword: label.setupPassword, applicationKey: label.applicationKey }));
    assert.equal(ok.status, 303);
    const cookie = ok.headers.get('set-cookie') ?? '';
    assert.match(cookie, /^gc_session=[\w-]{40,};/);
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Strict/);
    const session = cookie.split(';')[0]!;
    const setup = await fetch(`${BASE}/`, { headers: { cookie: session } });
    const html = await setup.text();
    assert.match(html, /name="csrf" value="[\w-]+"/);
    assert.deepEqual(device.status().leds, { green: 'on', red: 'on' }, 'steady with a client attached');
    clock.advance(61_000);
    assert.deepEqual(device.status().leds, { green: 'blinking', red: 'blinking' }, 'blinking again once the client has gone');

    // A save without the form's CSRF token (another site posting with the cookie) is refused.
    const forged = await fetch(`${BASE}/setup`, { ...form({ mode: 'web', ssid: 'x' }), headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: session } });
    assert.equal(forged.status, 403);
    const anonymous = await fetch(`${BASE}/setup`, form({ mode: 'web', ssid: 'x' }));
    assert.equal(anonymous.status, 401);
    const huge = await fetch(`${BASE}/setup`, { ...form({ ssid: 'x'.repeat(300 * 1024) }), headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: session } }).catch((err: Error) => err);
    assert.ok(huge instanceof Error || huge.status === 413, 'a body over 256 KiB is refused');
    assert.equal(device.config.mode, 'setup');
  });

  it('after five wrong sign-ins the address waits, even with the right secrets, and the wait ends', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await fetch(`${BASE}/login`, form({ setupPassword: 'guess', applicationKey: `guess-${i}` }))).status, 401);
    const locked = await fetch(`${BASE}/login`, form({ setupPassword: label.setupPassword, applicationKey: label.applicationKey }));
    assert.equal(locked.status, 429);
    assert.ok(Number(locked.headers.get('retry-after')) > 0);
    clock.advance(31_000);
    const again = await fetch(`${BASE}/login`, form({ setupPassword: label.setupPassword, applicationKey: label.applicationKey }));
    assert.equal(again.status, 303);
  });

  it('web-server mode: activation takes the application key and nothing else; the LED blinks the last octet', async () => {
    const signedIn = await fetch(`${BASE}/login`, form({ setupPassword: label.setupPassword, applicationKey: label.applicationKey }));
    const session = (signedIn.headers.get('set-cookie') ?? '').split(';')[0]!;
    const csrf = /name="csrf" value="([\w-]+)"/.exec(await (await fetch(`${BASE}/`, { headers: { cookie: session } })).text())?.[1] ?? '';
    const saved = await fetch(`${BASE}/setup`, {
      ...form({ csrf, mode: 'web', ssid: 'shop-floor', wifiPassword: 'wpa2 passphrase', pulseMs: '800', softResetMs: '5000', factoryResetMs: '20000' }),
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: session },
    });
    assert.equal(saved.status, 200, await saved.text());
    const deadline = Date.now() + 10_000;
    while (device.web.mode !== 'web' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // The restart dropped every connection; give fetch's pool a moment to notice before reuse.
    await new Promise((r) => setTimeout(r, 200));
    const s = device.status();
    assert.equal(s.mode, 'web');
    assert.equal(s.network.ssid, 'shop-floor');
    assert.deepEqual(s.leds, { green: 'blinks 3', red: 'off' }, 'green blinks the last octet of 127.0.56.3');

    const activate = (auth?: string) => fetch(`${BASE}/api/commands/Activate`, { method: 'POST', headers: auth === undefined ? {} : { authorization: auth } });
    assert.equal((await activate()).status, 401);
    assert.equal((await activate(`Bearer ${label.setupPassword}`)).status, 401, 'the setup password is not the application key');
    assert.equal(device.relay.pulses, 0);
    const ok = await activate(`Bearer ${label.applicationKey}`);
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { relay: 'on', pulseMs: 800, pulses: 1 });
    clock.advance(799);
    assert.equal(device.relay.state, 'on');
    clock.advance(1);
    assert.equal(device.relay.state, 'off', 'the pulse lasts the configured 800 ms');

    // The page's form does the same with the key typed in.
    const page = await fetch(`${BASE}/control`, form({ applicationKey: label.applicationKey, action: 'On' }));
    assert.equal(page.status, 200);
    assert.match(await page.text(), /id="relay-state">on</);
    const wrong = await fetch(`${BASE}/control`, form({ applicationKey: 'nope', action: 'Off' }));
    assert.equal(wrong.status, 401);
    assert.equal(device.relay.state, 'on');
    assert.equal((await fetch(`${BASE}/api/commands/Open`, { method: 'POST', headers: { authorization: `Bearer ${label.applicationKey}` } })).status, 404);
    assert.equal((await fetch(`${BASE}/login`, form({ setupPassword: label.setupPassword, applicationKey: label.applicationKey }))).status, 404, 'no setup page in web-server mode');
    assert.equal(device.command('Activate', 'c2d').ok, false, 'hub commands do nothing in web-server mode');

    const all = logs.join('');
    for (const secret of [label.setupPassword, label.applicationKey, 'wpa2 passphrase']) assert.equal(all.includes(secret), false, 'no secret in the logs');
    assert.match(all, /application key refused/);
  });
});
