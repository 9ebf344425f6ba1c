/**
 * The composition root: builds each manager once, wires them by constructor injection, and owns
 * the device's life: boot (read the settings, bring the network up, open the mode's services),
 * reboot, factory reset, and the status everything else shows (terminal, `--json`, the setup
 * page, the reported properties).
 */
import { join } from 'node:path';
import { ConfigurationStore, DEFAULT_CONFIG, validateConfig, type DeviceConfig, type LoadedConfig } from './configuration.js';
import { summarize, type FactoryBundle } from './credentials.js';
import { describeLed, indicate, PushButton, realScheduler, Relay, type ButtonAction, type RelayChange, type Scheduler } from './hardware.js';
import { HubManager, type Command, type HubStatus, type WritableAck } from './hub-manager.js';
import { storageKey, type DeviceLabel } from './label.js';
import type { Logger } from './log.js';
import { Network, type NetworkState } from './network.js';
import { formToConfig, initialValues } from './setup-form.js';
import { WebServer } from './web-server.js';

export const FIRMWARE = { name: 'gatehouse-gate-controller', version: '0.1.0' };

export interface GateControllerOptions {
  dataDir: string;
  label: DeviceLabel;
  /** The simulated radio's address: the setup and control pages listen here. */
  bind: string;
  port: number;
  /** What the factory line left on the device, if anything. */
  factoryBundle?: FactoryBundle;
  /** PEM the hub's TLS certificate chains to, beyond the system store. */
  ca?: string;
  renewBeforeMs?: number;
  wifiInRange?: ReadonlyMap<string, string>;
  log: Logger;
  scheduler?: Scheduler;
  onStatus?: (status: DeviceStatus) => void;
}

export interface DeviceStatus {
  serial: string;
  firmware: string;
  boots: number;
  mode: DeviceConfig['mode'];
  settings: { source: LoadedConfig['source']; reason: string | undefined };
  network: NetworkState;
  web: { open: 'setup' | 'web' | null; url: string | null; clientAttached: boolean };
  hub: HubStatus;
  relay: { state: string; pulses: number; pulseMs: number; history: RelayChange[] };
  button: { softResetMs: number; factoryResetMs: number };
  leds: { green: string; red: string };
  error: string | null;
}

/** Desired properties the device takes, and where each lives in its settings. */
const WRITABLE = {
  relayPulseMs: { get: (c: DeviceConfig) => c.relay.pulseMs, set: (c: DeviceConfig, v: number) => ({ ...c, relay: { ...c.relay, pulseMs: v } }) },
  softResetMs: { get: (c: DeviceConfig) => c.button.softResetMs, set: (c: DeviceConfig, v: number) => ({ ...c, button: { ...c.button, softResetMs: v } }) },
  factoryResetMs: { get: (c: DeviceConfig) => c.button.factoryResetMs, set: (c: DeviceConfig, v: number) => ({ ...c, button: { ...c.button, factoryResetMs: v } }) },
} as const;
type Writable = keyof typeof WRITABLE;

export class GateController {
  readonly relay: Relay;
  readonly button: PushButton;
  readonly network: Network;
  readonly web: WebServer;
  readonly hub: HubManager;
  readonly store: ConfigurationStore;
  readonly #scheduler: Scheduler;
  readonly #log: Logger;
  #loaded: LoadedConfig;
  #boots = 0;
  #history: RelayChange[] = [];
  #lastLeds = '';
  #joinRetry: unknown;
  #busy: Promise<void> = Promise.resolve();

  constructor(private readonly opts: GateControllerOptions) {
    this.#scheduler = opts.scheduler ?? realScheduler;
    this.#log = opts.log;
    this.store = new ConfigurationStore(join(opts.dataDir, 'settings.bin'), storageKey(opts.label));
    // Read for real at boot; until then, the defaults (the button is reconfigured at boot).
    this.#loaded = { config: structuredClone(DEFAULT_CONFIG), source: 'defaults' };
    this.relay = new Relay(this.#scheduler);
    this.button = new PushButton(this.#loaded.config.button, this.#scheduler);
    this.network = new Network({ serial: opts.label.serial, address: opts.bind, ...(opts.wifiInRange === undefined ? {} : { inRange: opts.wifiInRange }) });
    this.web = new WebServer(
      {
        label: opts.label,
        log: this.#log,
        scheduler: this.#scheduler,
        facts: () => this.#facts(),
        initialValues: () => initialValues(this.config, opts.factoryBundle),
        applySetup: (form) => {
          const r = formToConfig(form, opts.factoryBundle);
          if (!r.ok) return r;
          this.store.save(r.config);
          this.#log.info('settings saved from the setup page', { mode: r.config.mode });
          return { ok: true, mode: r.config.mode === 'hub' ? 'hub' : 'web' };
        },
        // A restart that fails (its web server cannot listen) is logged: unhandled, it ended the device.
        afterSaved: () => this.#logFailure(this.reboot('settings saved'), 'restart after the settings were saved'),
        command: (c, source) => this.command(c, source),
        relayState: () => this.relay.state,
        status: () => this.status(),
        onClientChange: () => this.#emit(),
      },
      { host: opts.bind, port: opts.port },
    );
    this.hub = new HubManager({
      log: this.#log,
      scheduler: this.#scheduler,
      ...(opts.ca === undefined ? {} : { ca: opts.ca }),
      ...(opts.renewBeforeMs === undefined ? {} : { renewBeforeMs: opts.renewBeforeMs }),
      onCommand: (c, source) => this.command(c, source),
      onDesired: (desired, version) => this.#applyDesired(desired, version),
      onRenewed: (certPem, keyPem) => this.#saveRenewed(certPem, keyPem),
      reported: () => this.#reported(),
      onStatus: () => this.#emit(),
    });
    this.relay.onChange((c) => {
      this.#history = [...this.#history.slice(-19), c];
      this.#log.info('relay', { state: c.state, cause: c.cause });
      this.hub.report({ relay: this.#relayReport() });
      this.#emit();
    });
    this.button.on('action', (action, held) => this.#logFailure(this.#onButton(action, held), `button ${action}`));
  }

  get config(): DeviceConfig {
    return this.#loaded.config;
  }

  /** Boots from the stored settings (factory defaults when they are missing or damaged). */
  boot(): Promise<void> {
    return this.#serial(() => this.#boot());
  }

  reboot(reason: string): Promise<void> {
    return this.#serial(async () => {
      this.#log.info('restarting', { reason });
      await this.#halt();
      await this.#boot();
    });
  }

  /** The settings are wiped; the device comes back in setup mode. */
  factoryReset(): Promise<void> {
    return this.#serial(async () => {
      this.#log.warn('factory reset: settings wiped');
      await this.#halt();
      this.store.wipe();
      await this.#boot();
    });
  }

  shutdown(): Promise<void> {
    return this.#serial(() => this.#halt());
  }

  /** For what an event starts and nobody waits for: its failure is logged, not an unhandled rejection. */
  #logFailure(p: Promise<void>, what: string): void {
    p.catch((err: unknown) => this.#log.error(`${what} failed`, { error: (err as Error).message }));
  }

  /** One lifecycle change at a time: a button press during a boot waits for it. */
  #serial(fn: () => Promise<void>): Promise<void> {
    const next = this.#busy.then(fn);
    this.#busy = next.catch(() => undefined);
    return next;
  }

  async #boot(): Promise<void> {
    this.#boots += 1;
    this.#loaded = this.store.load();
    const config = this.#loaded.config;
    if (this.#loaded.source === 'defaults') this.#log.warn('booting with factory defaults', { reason: this.#loaded.reason });
    this.button.configure(config.button);
    this.#log.info('boot', { boot: this.#boots, mode: config.mode, serial: this.opts.label.serial });
    if (config.mode === 'setup') {
      this.network.startAccessPoint();
      await this.web.open('setup');
    } else {
      this.#join();
      if (config.mode === 'web') await this.web.open('web');
      else if (config.hub !== undefined) this.hub.start(config.hub);
    }
    this.#emit();
  }

  /** Joins the configured network, retrying every 30 s while it is not there. */
  #join(): void {
    const net = this.config.network;
    if (net === undefined) return;
    const state = this.network.join(net.ssid, net.password);
    if (state.mode !== 'joined') {
      this.#log.warn('cannot join the network; retrying in 30 s', { ssid: net.ssid, error: state.error });
      this.#joinRetry = this.#scheduler.setTimeout(() => {
        this.#joinRetry = undefined;
        this.#join();
        this.#emit();
      }, 30_000);
    }
  }

  async #halt(): Promise<void> {
    if (this.#joinRetry !== undefined) this.#scheduler.clearTimeout(this.#joinRetry);
    this.#joinRetry = undefined;
    await this.hub.stop();
    await this.web.close();
    this.relay.off('power-down');
    this.network.stop();
  }

  async #onButton(action: ButtonAction, held: number): Promise<void> {
    this.#log.info('button', { action, heldMs: held });
    if (action === 'factory-reset') await this.factoryReset();
    else if (action === 'soft-reset') await this.reboot('button held');
  }

  /** On, Off or Activate, from the hub (C2D or a method) or the local control page. */
  command(command: Command, source: string): { ok: true; result: Record<string, unknown> } | { ok: false; message: string } {
    const mode = this.config.mode;
    if ((source === 'web' && mode !== 'web') || ((source === 'c2d' || source === 'method') && mode !== 'hub')) return { ok: false, message: `not in ${source === 'web' ? 'web server' : 'hub'} mode` };
    const cause = `${command} (${source})`;
    if (command === 'On') this.relay.on(cause);
    else if (command === 'Off') this.relay.off(cause);
    else this.relay.pulse(this.config.relay.pulseMs, cause);
    return { ok: true, result: { relay: this.relay.state, ...(command === 'Activate' ? { pulseMs: this.config.relay.pulseMs } : {}), pulses: this.relay.pulses } };
  }

  #applyDesired(desired: Record<string, unknown>, version: number): Record<string, WritableAck> {
    const keys = (Object.keys(WRITABLE) as Writable[]).filter((k) => k in desired);
    if (keys.length === 0) return {};
    let candidate = this.config;
    const acks: Record<string, WritableAck> = {};
    for (const k of keys) {
      const v = desired[k];
      if (typeof v === 'number') candidate = WRITABLE[k].set(candidate, v);
    }
    const v = validateWhole(candidate);
    for (const k of keys) {
      const value = desired[k];
      if (typeof value !== 'number') acks[k] = { value: WRITABLE[k].get(this.config), ac: 400, av: version, ad: `${k} must be a number of milliseconds` };
      else if (v !== undefined) acks[k] = { value: WRITABLE[k].get(this.config), ac: 400, av: version, ad: v };
      else acks[k] = { value, ac: 200, av: version, ad: 'applied' };
    }
    if (v === undefined && keys.some((k) => acks[k]?.ac === 200)) {
      const changed = JSON.stringify(candidate) !== JSON.stringify(this.config);
      if (changed) {
        this.store.save(candidate);
        this.#loaded = { config: candidate, source: 'stored' };
        this.button.configure(candidate.button);
        this.#log.info('timings set from desired properties', { version, relayPulseMs: candidate.relay.pulseMs, softResetMs: candidate.button.softResetMs, factoryResetMs: candidate.button.factoryResetMs });
        this.#emit();
      }
    } else {
      this.#log.warn('desired timings refused', { version, reason: v });
    }
    return acks;
  }

  #saveRenewed(certPem: string, keyPem: string): void {
    const hub = this.config.hub;
    if (hub?.kind !== 'dps' || hub.attestation.type !== 'x509') return;
    const next: DeviceConfig = { ...this.config, hub: { ...hub, attestation: { ...hub.attestation, certPem, keyPem } } };
    this.store.save(next);
    this.#loaded = { config: next, source: 'stored' };
    this.hub.report({ certificate: this.#certificateReport() });
  }

  #relayReport() {
    const last = this.#history.at(-1);
    return { state: this.relay.state, pulses: this.relay.pulses, lastCause: last?.cause ?? null, lastChange: last === undefined ? null : new Date(last.at).toISOString() };
  }

  #certificateReport() {
    const hub = this.config.hub;
    if (hub?.kind !== 'dps' || hub.attestation.type !== 'x509') return null;
    const c = summarize(hub.attestation.certPem);
    return { subject: c.subject, serial: c.serial, notAfter: c.notAfter, thumbprint: c.thumbprint };
  }

  #reported(): Record<string, unknown> {
    return { firmware: FIRMWARE, relay: this.#relayReport(), leds: this.status().leds, certificate: this.#certificateReport(), boot: { count: this.#boots, settings: this.#loaded.source } };
  }

  #error(): string | undefined {
    const net = this.network.state;
    if (net.error !== undefined) return net.error;
    const hub = this.hub.status;
    return hub.state === 'error' ? hub.error : undefined;
  }

  status(): DeviceStatus {
    const c = this.config;
    const net = this.network.state;
    const hub = this.hub.status;
    const error = this.#error();
    const leds = indicate({ mode: c.mode, setupClient: this.web.clientAttached, hubConnected: hub.state === 'connected', error, address: net.address });
    const open = this.web.mode ?? null;
    return {
      serial: this.opts.label.serial,
      firmware: FIRMWARE.version,
      boots: this.#boots,
      mode: c.mode,
      settings: { source: this.#loaded.source, reason: this.#loaded.reason },
      network: net,
      web: { open, url: open === null ? null : `http://${this.opts.bind}:${this.opts.port}/`, clientAttached: this.web.clientAttached },
      hub,
      relay: { state: this.relay.state, pulses: this.relay.pulses, pulseMs: c.relay.pulseMs, history: this.#history.slice(-10) },
      button: c.button,
      leds: { green: describeLed(leds.green), red: describeLed(leds.red) },
      error: error ?? null,
    };
  }

  #facts() {
    const s = this.status();
    const hub = this.config.hub;
    const chain = hub?.kind === 'dps' && hub.attestation.type === 'x509' ? hub.attestation.certPem : this.opts.factoryBundle?.chainPem;
    const registrationId = hub?.kind === 'dps' ? hub.registrationId : this.opts.factoryBundle?.registrationId;
    return {
      serial: s.serial,
      network: s.network.mode === 'access-point' ? `access point ${s.network.ssid ?? ''} at ${s.network.address ?? ''}` : `${s.network.mode} ${s.network.ssid ?? ''}`,
      settings: s.settings.source === 'stored' ? 'stored' : `factory defaults: ${s.settings.reason ?? ''}`,
      green: s.leds.green,
      red: s.leds.red,
      certificate: chain === undefined ? undefined : summarize(chain),
      registrationId,
    };
  }

  #emit(): void {
    const s = this.status();
    const leds = `${s.leds.green}/${s.leds.red}`;
    if (leds !== this.#lastLeds) {
      this.#lastLeds = leds;
      this.hub.report({ leds: s.leds });
    }
    this.opts.onStatus?.(s);
  }
}

/** Why a candidate configuration is refused, or undefined when it is fine. */
function validateWhole(c: DeviceConfig): string | undefined {
  const v = validateConfig(c);
  return v.ok ? undefined : v.problems.map((p) => p.message).join('; ');
}
