/**
 * HubManager: the device's one way to the hub, on the unmodified Azure IoT device SDKs.
 *
 * With DPS it registers first (X.509 from the factory line, or a symmetric key), then connects to
 * the hub DPS assigned; with a connection string it connects directly. Connected, it listens only
 * to the hub: C2D messages and the direct methods `On`, `Off`, `Activate` become commands; desired
 * properties set the timings (each acknowledged in the reported properties, Plug and Play style:
 * value, ac, av, ad); the relay and LED state are reported. An X.509 device renews its
 * certificate over EST before it expires and reconnects with the new one. A lost connection is
 * retried with jittered, doubling backoff; nothing here ever exits the process.
 */
import deviceSdk from 'azure-iot-device';
import deviceMqtt from 'azure-iot-device-mqtt';
import provDevice from 'azure-iot-provisioning-device';
import provMqtt from 'azure-iot-provisioning-device-mqtt';
import symmetricKeySecurity from 'azure-iot-security-symmetric-key';
import x509Security from 'azure-iot-security-x509';
import type { DeviceConfig } from './configuration.js';
import { reenroll, summarize, type CertificateSummary } from './credentials.js';
import type { Scheduler } from './hardware.js';
import type { Logger } from './log.js';

export type Command = 'On' | 'Off' | 'Activate';
export const COMMANDS: readonly Command[] = ['On', 'Off', 'Activate'];

export type HubConnectionState = 'disabled' | 'provisioning' | 'connecting' | 'connected' | 'renewing' | 'error';

export interface HubStatus {
  state: HubConnectionState;
  deviceId: string | undefined;
  assignedHub: string | undefined;
  error: string | undefined;
  /** The certificate the device authenticates with (X.509 only). */
  certificate: CertificateSummary | undefined;
  renewals: number;
  connects: number;
}

/** A writable property's acknowledgement (IoT Plug and Play convention). */
export interface WritableAck {
  value: unknown;
  ac: number;
  av: number;
  ad: string;
}

export interface HubManagerDeps {
  log: Logger;
  scheduler: Scheduler;
  /** PEM the hub's and DPS's TLS certificates chain to, beyond the system store. */
  ca?: string;
  /** Renew this long before expiry; default a third of the certificate's lifetime. */
  renewBeforeMs?: number;
  /** Runs a command from the hub; a refusal says why. */
  onCommand(command: Command, source: 'c2d' | 'method'): { ok: true; result: Record<string, unknown> } | { ok: false; message: string };
  /** Applies (and persists) desired properties; answers one acknowledgement per property. */
  onDesired(desired: Record<string, unknown>, version: number): Record<string, WritableAck>;
  /** Persists a renewed certificate and key. */
  onRenewed(chainPem: string, keyPem: string): void;
  /** Everything the device reports on connect. */
  reported(): Record<string, unknown>;
  onStatus(status: HubStatus): void;
}

type HubSettings = NonNullable<DeviceConfig['hub']>;
type Client = InstanceType<typeof deviceSdk.Client>;
type Twin = Awaited<ReturnType<Client['getTwin']>>;

const MIN_RENEWAL_INTERVAL_MS = 3_600_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

export function parseCommand(text: string): Command | undefined {
  const t = text.trim();
  let name = t;
  if (t.startsWith('{')) {
    try {
      const v = JSON.parse(t) as { command?: unknown };
      name = typeof v.command === 'string' ? v.command : '';
    } catch {
      return undefined;
    }
  }
  return COMMANDS.find((c) => c.toLowerCase() === name.toLowerCase());
}

export class HubManager {
  #settings: HubSettings | undefined;
  #client: Client | undefined;
  #twin: Twin | undefined;
  /** Bumped by start and stop: work begun for an earlier start gives up instead of connecting. */
  #generation = 0;
  /** Where DPS assigned this device, this start; a failure forgets it, so DPS is asked again. */
  #assignment: { hostName: string; deviceId: string } | undefined;
  #retry: unknown;
  #renewTimer: unknown;
  #attempt = 0;
  #lastRenewalAt = 0;
  #reportChain: Promise<void> = Promise.resolve();
  #status: HubStatus = { state: 'disabled', deviceId: undefined, assignedHub: undefined, error: undefined, certificate: undefined, renewals: 0, connects: 0 };

  constructor(private readonly deps: HubManagerDeps) {}

  get status(): HubStatus {
    return { ...this.#status };
  }

  /** Starts provisioning and connecting in the background; progress shows in the status. */
  start(settings: HubSettings): void {
    this.#settings = settings;
    this.#generation += 1;
    this.#assignment = undefined;
    const x509 = settings.kind === 'dps' && settings.attestation.type === 'x509' ? settings.attestation.certPem : undefined;
    this.#set({ deviceId: undefined, assignedHub: undefined, error: undefined, certificate: x509 === undefined ? undefined : summarize(x509) });
    void this.#run();
  }

  async stop(): Promise<void> {
    this.#settings = undefined;
    this.#generation += 1;
    if (this.#retry !== undefined) this.deps.scheduler.clearTimeout(this.#retry);
    if (this.#renewTimer !== undefined) this.deps.scheduler.clearTimeout(this.#renewTimer);
    this.#retry = undefined;
    this.#renewTimer = undefined;
    await this.#closeClient();
    this.#set({ state: 'disabled' });
  }

  /** Reported properties, in order; dropped while disconnected (a connect reports everything). */
  report(patch: Record<string, unknown>): void {
    const twin = this.#twin;
    if (twin === undefined || this.#status.state !== 'connected') return;
    this.#reportChain = this.#reportChain.then(
      () =>
        new Promise<void>((resolve) =>
          twin.properties.reported.update(patch, (err?: Error) => {
            if (err !== undefined && err !== null) this.deps.log.warn('reported properties not sent', { error: err.message });
            resolve();
          }),
        ),
    );
  }

  #set(patch: Partial<HubStatus>): void {
    this.#status = { ...this.#status, ...patch };
    this.deps.onStatus(this.status);
  }

  async #run(): Promise<void> {
    const settings = this.#settings;
    const generation = this.#generation;
    const current = () => generation === this.#generation;
    if (settings === undefined || !current()) return;
    try {
      const target = await this.#locate(settings);
      if (!current()) return;
      this.#set({ state: 'connecting', deviceId: target.deviceId, assignedHub: target.hostName, error: undefined });
      await this.#connect(target);
      if (!current()) return void (await this.#closeClient());
      this.#attempt = 0;
      this.#set({ state: 'connected', error: undefined, connects: this.#status.connects + 1 });
      this.deps.log.info('connected to the hub', { hub: target.hostName, deviceId: target.deviceId });
      this.report(this.deps.reported());
      this.#scheduleRenewal();
    } catch (err) {
      if (!current()) return;
      await this.#closeClient();
      this.#assignment = undefined;
      const message = (err as Error).message ?? String(err);
      this.#set({ state: 'error', error: message });
      this.deps.log.warn('hub connection failed; retrying', { error: message, attempt: this.#attempt + 1 });
      this.#retryLater();
    }
  }

  #retryLater(): void {
    const base = Math.min(60_000, 1000 * 2 ** Math.min(this.#attempt, 6));
    const generation = this.#generation;
    this.#attempt += 1;
    this.#retry = this.deps.scheduler.setTimeout(() => {
      this.#retry = undefined;
      if (generation === this.#generation) void this.#run();
    }, base / 2 + Math.random() * (base / 2));
  }

  /** Where to connect and as whom: DPS registration, or the connection string. */
  async #locate(settings: HubSettings): Promise<{ hostName: string; deviceId: string; connectionString: string; x509?: { cert: string; key: string } }> {
    if (settings.kind === 'connectionString') {
      const fields = new Map(settings.connectionString.split(';').map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)] as const));
      return { hostName: fields.get('HostName') ?? '', deviceId: fields.get('DeviceId') ?? '', connectionString: settings.connectionString };
    }
    if (this.#assignment !== undefined) {
      // Registered since this start (a reconnect or a renewal): no second registration.
      return this.#target(this.#assignment.hostName, this.#assignment.deviceId, settings);
    }
    this.#set({ state: 'provisioning', error: undefined });
    const a = settings.attestation;
    const security = a.type === 'x509' ? new x509Security.X509Security(settings.registrationId, { cert: a.certPem, key: a.keyPem }) : new symmetricKeySecurity.SymmetricKeySecurityClient(settings.registrationId, a.key);
    const transport = new provMqtt.Mqtt();
    const client = provDevice.ProvisioningDeviceClient.create(settings.provisioningHost, settings.idScope, transport, security as never);
    const result = (await client.register()) as unknown as { assignedHub?: string; deviceId?: string; status?: string };
    if (result.assignedHub === undefined || result.deviceId === undefined) throw new Error(`provisioning ended without an assignment (status ${result.status ?? 'unknown'})`);
    this.deps.log.info('provisioned', { registrationId: settings.registrationId, assignedHub: result.assignedHub, deviceId: result.deviceId });
    this.#assignment = { hostName: result.assignedHub, deviceId: result.deviceId };
    return this.#target(result.assignedHub, result.deviceId, settings);
  }

  #target(hostName: string, deviceId: string, settings: Extract<HubSettings, { kind: 'dps' }>) {
    const a = settings.attestation;
    if (a.type === 'x509') return { hostName, deviceId, connectionString: `HostName=${hostName};DeviceId=${deviceId};x509=true`, x509: { cert: a.certPem, key: a.keyPem } };
    return { hostName, deviceId, connectionString: `HostName=${hostName};DeviceId=${deviceId};SharedAccessKey=${a.key}` };
  }

  async #connect(target: { connectionString: string; x509?: { cert: string; key: string } }): Promise<void> {
    const client = deviceSdk.Client.fromConnectionString(target.connectionString, deviceMqtt.Mqtt);
    this.#client = client;
    await client.setOptions({ ...(this.deps.ca === undefined ? {} : { ca: this.deps.ca }), ...(target.x509 ?? {}) });
    client.on('error', (err: Error) => this.deps.log.warn('hub client error', { error: err.message }));
    client.on('disconnect', () => {
      if (this.#client !== client) return; // closed on purpose (stop, renewal)
      const generation = this.#generation;
      this.deps.log.warn('disconnected from the hub; reconnecting');
      this.#set({ state: 'connecting' });
      void this.#closeClient().then(() => {
        if (generation === this.#generation) this.#retryLater();
      });
    });
    client.on('message', (msg) => this.#onMessage(client, msg));
    for (const name of COMMANDS) {
      client.onDeviceMethod(name, (req, res) => {
        const r = this.deps.onCommand(name, 'method');
        void res.send(r.ok ? 200 : 409, r.ok ? r.result : { error: r.message }).catch((err: Error) => this.deps.log.warn('method response not sent', { method: req.methodName, error: err.message }));
      });
    }
    await client.open();
    const twin = await client.getTwin();
    this.#twin = twin;
    twin.on('properties.desired', (desired: Record<string, unknown>) => {
      const version = typeof desired.$version === 'number' ? desired.$version : 0;
      const acks = this.deps.onDesired(desired, version);
      if (Object.keys(acks).length > 0) this.report(acks);
    });
  }

  #onMessage(client: Client, msg: InstanceType<typeof deviceSdk.Message>): void {
    const command = parseCommand(msg.getData().toString());
    const r = command === undefined ? ({ ok: false, message: 'not a command (On, Off, Activate)' } as const) : this.deps.onCommand(command, 'c2d');
    if (!r.ok) {
      // Over MQTT a device cannot reject: the hub settles a message when the device acknowledges
      // receipt, so the sender's feedback says Success. The refusal goes to the log and the twin.
      this.deps.log.warn('C2D message refused', { messageId: msg.messageId, reason: r.message });
      this.report({ lastRefusedMessage: { messageId: msg.messageId ?? null, reason: r.message, at: new Date().toISOString() } });
    }
    client.complete(msg).catch((err: Error) => this.deps.log.warn('C2D message not settled', { messageId: msg.messageId, error: err.message }));
  }

  async #closeClient(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    this.#twin = undefined;
    if (client === undefined) return;
    client.removeAllListeners();
    client.on('error', () => undefined);
    await client.close().catch(() => undefined);
  }

  // ------------------------------------------------------------ certificate renewal

  /** When the certificate is due for renewal (EST only), a timer; due now, at once. */
  #scheduleRenewal(): void {
    const s = this.#settings;
    if (this.#renewTimer !== undefined) this.deps.scheduler.clearTimeout(this.#renewTimer);
    this.#renewTimer = undefined;
    if (s?.kind !== 'dps' || s.attestation.type !== 'x509' || s.est === undefined) return;
    const cert = summarize(s.attestation.certPem);
    const notBefore = Date.parse(cert.notBefore);
    const notAfter = Date.parse(cert.notAfter);
    const before = this.deps.renewBeforeMs ?? (notAfter - notBefore) / 3;
    const now = this.deps.scheduler.now();
    const due = Math.max(notAfter - before, this.#lastRenewalAt + MIN_RENEWAL_INTERVAL_MS);
    const wait = Math.max(0, Math.min(due - now, MAX_TIMER_MS));
    this.#renewTimer = this.deps.scheduler.setTimeout(() => {
      this.#renewTimer = undefined;
      if (this.deps.scheduler.now() < due) return this.#scheduleRenewal();
      void this.#renew();
    }, wait);
  }

  async #renew(): Promise<void> {
    const s = this.#settings;
    if (s?.kind !== 'dps' || s.attestation.type !== 'x509' || s.est === undefined) return;
    this.#lastRenewalAt = this.deps.scheduler.now();
    const generation = this.#generation;
    const old = summarize(s.attestation.certPem);
    this.#set({ state: 'renewing' });
    try {
      const renewed = await reenroll({ url: s.est.url, group: s.est.group, chainPem: s.attestation.certPem, keyPem: s.attestation.keyPem, ...(this.deps.ca === undefined ? {} : { ca: this.deps.ca }) });
      if (generation !== this.#generation) return; // stopped (or restarted) meanwhile: its settings rule
      this.deps.onRenewed(renewed.chainPem, renewed.keyPem);
      this.#settings = { ...s, attestation: { ...s.attestation, certPem: renewed.chainPem, keyPem: renewed.keyPem } };
      const cert = summarize(renewed.chainPem);
      this.deps.log.info('certificate renewed over EST', { oldSerial: old.serial, serial: cert.serial, notAfter: cert.notAfter });
      this.#set({ certificate: cert, renewals: this.#status.renewals + 1 });
      // The MQTT session authenticated with the old certificate: reconnect with the new one.
      await this.#closeClient();
      if (generation === this.#generation) await this.#run();
    } catch (err) {
      if (generation !== this.#generation) return;
      this.deps.log.warn('certificate renewal failed; the current certificate stays in use', { error: (err as Error).message, notAfter: old.notAfter });
      this.#set({ state: this.#client === undefined ? 'error' : 'connected', error: `renewal failed: ${(err as Error).message}` });
      this.#scheduleRenewal();
    }
  }
}
