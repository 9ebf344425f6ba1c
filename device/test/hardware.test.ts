/**
 * The gate controller's hardware models on a manual clock: the relay's pulse and its cancel, the
 * push button's click / soft reset / factory reset boundaries, and the LED states.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeLed, indicate, PushButton, Relay, type RelayChange } from '../src/hardware.js';
import { ManualClock } from './support/manual-clock.js';

describe('relay', () => {
  it('pulses for the configured time, and a new command cancels the pulse', () => {
    const clock = new ManualClock();
    const relay = new Relay(clock);
    const changes: RelayChange[] = [];
    relay.onChange((c) => changes.push(c));
    relay.pulse(750);
    assert.equal(relay.state, 'on');
    clock.advance(749);
    assert.equal(relay.state, 'on');
    clock.advance(1);
    assert.equal(relay.state, 'off');
    assert.deepEqual(changes.map((c) => [c.state, c.cause, c.at]), [
      ['on', 'Activate', 0],
      ['off', 'pulse-end', 750],
    ]);
    relay.pulse(1000);
    clock.advance(200);
    relay.on();
    clock.advance(2000);
    assert.equal(relay.state, 'on', 'On during a pulse keeps the relay on');
    relay.off();
    assert.equal(relay.state, 'off');
    assert.equal(relay.pulses, 2);
    assert.throws(() => relay.pulse(0), /positive/);
  });
});

describe('push button', () => {
  it('click below 5 s, soft reset from 5 s, factory reset from 20 s', () => {
    const clock = new ManualClock();
    const button = new PushButton({ softResetMs: 5000, factoryResetMs: 20_000 }, clock);
    const hold = (ms: number) => {
      button.press();
      clock.advance(ms);
      return button.release();
    };
    assert.equal(hold(4999), 'click');
    assert.equal(hold(5000), 'soft-reset');
    assert.equal(hold(19_999), 'soft-reset');
    assert.equal(hold(21_000), 'factory-reset');
    assert.equal(button.release(), undefined, 'a release without a press is nothing');
    button.configure({ softResetMs: 2000, factoryResetMs: 8000 });
    assert.equal(hold(8000), 'factory-reset');
  });
});

describe('indicator', () => {
  it('shows setup, a setup client, the hub connection, errors and the address', () => {
    const base = { setupClient: false, hubConnected: false, error: undefined, address: undefined };
    const show = (s: Parameters<typeof indicate>[0]) => {
      const l = indicate(s);
      return `${describeLed(l.green)}/${describeLed(l.red)}`;
    };
    assert.equal(show({ ...base, mode: 'setup' }), 'blinking/blinking');
    assert.equal(show({ ...base, mode: 'setup', setupClient: true }), 'on/on');
    assert.equal(show({ ...base, mode: 'hub' }), 'blinking/off');
    assert.equal(show({ ...base, mode: 'hub', hubConnected: true }), 'on/off');
    assert.equal(show({ ...base, mode: 'hub', error: 'provisioning refused' }), 'off/on');
    assert.equal(show({ ...base, mode: 'web', address: '192.168.1.37' }), 'blinks 3-7/off');
  });
});
