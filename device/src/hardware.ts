/**
 * The gate controller's hardware, each a small state model with one job, driven by an injectable
 * scheduler so tests (and the simulated board) decide when time passes:
 *
 * - Relay: on, off, and a pulse of configurable length for `Activate`.
 * - PushButton: a press shorter than the soft-reset time is a click; held past it, a soft reset;
 *   held past the factory-reset time, a factory reset.
 * - Indicator: the green and red LEDs as a function of the device's state (both blink in setup
 *   mode, steady while a setup client is attached; green steady when connected to the hub; red on
 *   error; in web-server mode green blinks the last octet of the address, digit by digit).
 */
import { EventEmitter } from 'node:events';

export interface Scheduler {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realScheduler: Scheduler = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export type RelayState = 'on' | 'off';

export interface RelayChange {
  state: RelayState;
  /** Why: `On`, `Off`, `Activate` (pulse start), `pulse-end`. */
  cause: string;
  at: number;
}

export class Relay {
  #state: RelayState = 'off';
  #pulse: unknown;
  #pulses = 0;
  readonly #listeners: Array<(c: RelayChange) => void> = [];

  constructor(private readonly scheduler: Scheduler = realScheduler) {}

  /** Every change, for the reported properties and the status line. */
  onChange(listener: (c: RelayChange) => void): void {
    this.#listeners.push(listener);
  }

  get state(): RelayState {
    return this.#state;
  }

  /** Pulses started so far (for the reported properties). */
  get pulses(): number {
    return this.#pulses;
  }

  on(cause = 'On'): void {
    this.#cancelPulse();
    this.#set('on', cause);
  }

  off(cause = 'Off'): void {
    this.#cancelPulse();
    this.#set('off', cause);
  }

  /** On now, off after `ms`; a new pulse restarts the timer. */
  pulse(ms: number, cause = 'Activate'): void {
    if (!(Number.isInteger(ms) && ms > 0)) throw new RangeError('a pulse lasts a positive whole number of milliseconds');
    this.#cancelPulse();
    this.#pulses += 1;
    this.#set('on', cause);
    this.#pulse = this.scheduler.setTimeout(() => {
      this.#pulse = undefined;
      this.#set('off', 'pulse-end');
    }, ms);
  }

  #cancelPulse(): void {
    if (this.#pulse !== undefined) this.scheduler.clearTimeout(this.#pulse);
    this.#pulse = undefined;
  }

  #set(state: RelayState, cause: string): void {
    const changed = state !== this.#state;
    this.#state = state;
    if (!changed && cause === 'pulse-end') return;
    const c: RelayChange = { state, cause, at: this.scheduler.now() };
    for (const l of this.#listeners) l(c);
  }
}

export type ButtonAction = 'click' | 'soft-reset' | 'factory-reset';

export class PushButton extends EventEmitter<{ action: [ButtonAction, number] }> {
  #pressedAt: number | undefined;

  constructor(
    private timings: { softResetMs: number; factoryResetMs: number },
    private readonly scheduler: Scheduler = realScheduler,
  ) {
    super();
  }

  configure(timings: { softResetMs: number; factoryResetMs: number }): void {
    this.timings = timings;
  }

  press(): void {
    this.#pressedAt ??= this.scheduler.now();
  }

  /** Decides what the press meant by how long it was held. */
  release(): ButtonAction | undefined {
    if (this.#pressedAt === undefined) return undefined;
    const held = this.scheduler.now() - this.#pressedAt;
    this.#pressedAt = undefined;
    return this.#decide(held);
  }

  /** A press of known length, decided at once (the control socket's `press 21000`). */
  simulate(heldMs: number): ButtonAction {
    if (!(Number.isFinite(heldMs) && heldMs >= 0)) throw new RangeError('a press lasts zero or more milliseconds');
    return this.#decide(heldMs);
  }

  #decide(held: number): ButtonAction {
    const action: ButtonAction = held >= this.timings.factoryResetMs ? 'factory-reset' : held >= this.timings.softResetMs ? 'soft-reset' : 'click';
    this.emit('action', action, held);
    return action;
  }

  /** A simulated press held for `ms` (the control socket's `press 21000`). */
  hold(ms: number): Promise<ButtonAction | undefined> {
    this.press();
    return new Promise((resolve) => this.scheduler.setTimeout(() => resolve(this.release()), ms));
  }
}

export type Led = { kind: 'off' } | { kind: 'on' } | { kind: 'blink' } | { kind: 'digits'; digits: number[] };

export interface IndicatorInput {
  mode: 'setup' | 'web' | 'hub';
  /** A browser is on the setup page. */
  setupClient: boolean;
  hubConnected: boolean;
  error: string | undefined;
  address: string | undefined;
}

/** The LEDs for a device state; pure, so the setup page and the terminal show the same thing. */
export function indicate(s: IndicatorInput): { green: Led; red: Led } {
  if (s.error !== undefined) return { green: s.hubConnected ? { kind: 'on' } : { kind: 'off' }, red: { kind: 'on' } };
  if (s.mode === 'setup') return s.setupClient ? { green: { kind: 'on' }, red: { kind: 'on' } } : { green: { kind: 'blink' }, red: { kind: 'blink' } };
  if (s.mode === 'hub') return { green: s.hubConnected ? { kind: 'on' } : { kind: 'blink' }, red: { kind: 'off' } };
  const octet = s.address?.split('.').at(-1);
  const digits = octet !== undefined && /^\d{1,3}$/.test(octet) ? [...octet].map(Number) : [];
  return { green: digits.length > 0 ? { kind: 'digits', digits } : { kind: 'blink' }, red: { kind: 'off' } };
}

export function describeLed(l: Led): string {
  return l.kind === 'digits' ? `blinks ${l.digits.join('-')}` : l.kind === 'blink' ? 'blinking' : l.kind;
}
