/**
 * The setup form as data: what the page posts, turned into a candidate configuration and checked,
 * with every problem named by the form field a person fixes. Pure, so the page, the tests and
 * any future front end agree on the rules.
 */
import { validateConfig, type DeviceConfig } from './configuration.js';
import { checkX509, type FactoryBundle } from './credentials.js';

/** Form fields, by input name. Secrets are read from a post but never rendered back. */
export const FIELDS = [
  'ssid',
  'wifiPassword',
  'mode',
  'hubKind',
  'connectionString',
  'provisioningHost',
  'idScope',
  'registrationId',
  'attestation',
  'symmetricKey',
  'certPem',
  'keyPem',
  'estGroup',
  'pulseMs',
  'softResetMs',
  'factoryResetMs',
] as const;
export type Field = (typeof FIELDS)[number];
export const SECRET_FIELDS: ReadonlySet<Field> = new Set(['wifiPassword', 'connectionString', 'symmetricKey', 'keyPem']);

export type FormValues = Partial<Record<Field, string>>;
export interface Problem {
  field: Field;
  message: string;
}

/** Configuration paths (as the schema names them) to the field that sets them. */
const PATH_TO_FIELD: Record<string, Field> = {
  mode: 'mode',
  network: 'ssid',
  'network.ssid': 'ssid',
  'network.password': 'wifiPassword',
  hub: 'hubKind',
  'hub.kind': 'hubKind',
  'hub.connectionString': 'connectionString',
  'hub.provisioningHost': 'provisioningHost',
  'hub.idScope': 'idScope',
  'hub.registrationId': 'registrationId',
  'hub.attestation': 'attestation',
  'hub.attestation.type': 'attestation',
  'hub.attestation.key': 'symmetricKey',
  'hub.attestation.certPem': 'certPem',
  'hub.attestation.keyPem': 'keyPem',
  'hub.est': 'estGroup',
  'hub.est.url': 'provisioningHost',
  'hub.est.group': 'estGroup',
  'relay.pulseMs': 'pulseMs',
  'button.softResetMs': 'softResetMs',
  'button.factoryResetMs': 'factoryResetMs',
};

export function fieldFor(path: string): Field {
  return PATH_TO_FIELD[path] ?? 'mode';
}

/** The form's starting values: the stored settings, else the factory bundle's, else defaults. */
export function initialValues(config: DeviceConfig, bundle: FactoryBundle | undefined): FormValues {
  const v: FormValues = {
    ssid: config.network?.ssid ?? '',
    mode: config.mode === 'setup' ? '' : config.mode,
    pulseMs: String(config.relay.pulseMs),
    softResetMs: String(config.button.softResetMs),
    factoryResetMs: String(config.button.factoryResetMs),
    hubKind: 'dps',
    attestation: bundle === undefined ? 'symmetricKey' : 'x509',
  };
  const hub = config.hub;
  if (hub?.kind === 'dps') {
    Object.assign(v, { hubKind: 'dps', provisioningHost: hub.provisioningHost, idScope: hub.idScope, registrationId: hub.registrationId, attestation: hub.attestation.type, estGroup: hub.est?.group ?? '' });
    if (hub.attestation.type === 'x509') v.certPem = hub.attestation.certPem;
  } else if (hub?.kind === 'connectionString') {
    v.hubKind = 'connectionString';
  } else if (bundle !== undefined) {
    Object.assign(v, { provisioningHost: bundle.provisioningHost, idScope: bundle.idScope, registrationId: bundle.registrationId, certPem: bundle.chainPem, estGroup: bundle.enrollmentGroupId });
  }
  return v;
}

const number = (s: string | undefined): number => (s === undefined || s.trim() === '' ? Number.NaN : Number(s.trim()));
const text = (s: string | undefined): string => (s ?? '').replace(/\r\n/g, '\n').trim();

/**
 * A posted form as a configuration, or every problem with it. An empty private key with the
 * factory certificate keeps the key the factory left on the device.
 */
export function formToConfig(form: FormValues, bundle: FactoryBundle | undefined, now = Date.now()): { ok: true; config: DeviceConfig } | { ok: false; problems: Problem[] } {
  const problems: Problem[] = [];
  const mode = form.mode;
  if (mode !== 'web' && mode !== 'hub') problems.push({ field: 'mode', message: 'choose web server or hub mode' });
  const candidate: Record<string, unknown> = {
    mode: mode === 'web' || mode === 'hub' ? mode : 'setup',
    network: { ssid: text(form.ssid), password: form.wifiPassword ?? '' },
    relay: { pulseMs: number(form.pulseMs) },
    button: { softResetMs: number(form.softResetMs), factoryResetMs: number(form.factoryResetMs) },
  };
  if (mode === 'hub') {
    if (form.hubKind === 'connectionString') {
      const cs = text(form.connectionString);
      candidate.hub = { kind: 'connectionString', connectionString: cs };
      if (cs !== '' && !/(^|;)HostName=[^;]+/.test(cs)) problems.push({ field: 'connectionString', message: 'the connection string has no HostName=' });
      else if (cs !== '' && !/(^|;)DeviceId=[^;]+/.test(cs)) problems.push({ field: 'connectionString', message: 'the connection string has no DeviceId=' });
      else if (cs !== '' && !/(^|;)SharedAccessKey=[^;]+/.test(cs)) problems.push({ field: 'connectionString', message: 'the connection string has no SharedAccessKey= (for X.509, use DPS with the factory bundle)' });
    } else if (form.hubKind === 'dps') {
      const registrationId = text(form.registrationId);
      const provisioningHost = text(form.provisioningHost);
      let attestation: Record<string, unknown>;
      if (form.attestation === 'x509') {
        const certPem = text(form.certPem);
        let keyPem = text(form.keyPem);
        if (keyPem === '' && bundle !== undefined && certPem === text(bundle.chainPem)) keyPem = bundle.keyPem;
        attestation = { type: 'x509', certPem: certPem === '' ? '' : `${certPem}\n`, keyPem: keyPem === '' ? '' : `${keyPem}\n` };
        if (certPem.includes('BEGIN CERTIFICATE') && keyPem.includes('PRIVATE KEY')) problems.push(...checkX509(certPem, keyPem, registrationId, now));
      } else if (form.attestation === 'symmetricKey') {
        attestation = { type: 'symmetricKey', key: text(form.symmetricKey) };
        if (text(form.symmetricKey) !== '' && Buffer.from(text(form.symmetricKey), 'base64').length < 16) problems.push({ field: 'symmetricKey', message: 'the symmetric key is base64 of at least 16 bytes' });
      } else {
        attestation = { type: 'none' };
      }
      const estGroup = text(form.estGroup);
      candidate.hub = {
        kind: 'dps',
        provisioningHost,
        idScope: text(form.idScope),
        registrationId,
        attestation,
        ...(form.attestation === 'x509' && estGroup !== '' && provisioningHost !== '' ? { est: { url: `https://${provisioningHost}`, group: estGroup } } : {}),
      };
    } else {
      problems.push({ field: 'hubKind', message: 'choose DPS or a connection string' });
    }
  }
  const v = validateConfig(candidate);
  if (!v.ok) {
    for (const p of v.problems) {
      const field = p.field === 'hub.attestation.type' || p.field === 'hub.attestation' ? 'attestation' : fieldFor(p.field);
      const message = field === 'attestation' ? 'choose an X.509 certificate or a symmetric key' : p.message;
      if (!problems.some((q) => q.field === field)) problems.push({ field, message });
    }
  }
  if (problems.length > 0) return { ok: false, problems: order(problems) };
  return v.ok ? { ok: true, config: v.config } : { ok: false, problems };
}

/** Problems in the order the fields appear on the page. */
function order(problems: Problem[]): Problem[] {
  return [...problems].sort((a, b) => FIELDS.indexOf(a.field) - FIELDS.indexOf(b.field));
}
