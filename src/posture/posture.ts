/**
 * The posture audit (`gatehouse audit`, GET /posture): the checks operators run with `az` on a
 * hub (disableLocalAuth, disableDeviceSAS, disableModuleSAS, minTlsVersion, least-privilege
 * policies and roles) and those AWS Device Defender and Defender for IoT run on a fleet (SAS where
 * X.509 is possible, shared keys and certificates, expired and expiring certificates, revoked
 * certificates still registered, broad IP ranges, symmetric-key groups, audit logging off,
 * never-seen devices with live credentials, weak keys). Each finding names its severity, what was
 * found and the fix. Read-only: it reads the store, never the keys' values beyond comparing them.
 */
import { createHash, X509Certificate } from 'node:crypto';
import type { DeviceRecord, SharedAccessPolicy } from '../core/types.js';
import { OWNER_RIGHTS, isOwnerLevel } from '../auth/policies.js';
import type { EnrollmentGroup } from '../core/enrollments.js';
import type { CaCertificateRecord } from '../store/certificate-ports.js';
import type { IssuedCertificateRecord } from '../store/authority-ports.js';
import type { Operator, RoleAssignment } from '../access/operators.js';
import type { PolicyUsageDoc } from '../policies/policy-usage.js';
import { parseIpMask, tlsRank, type HubSettings } from '../core/settings.js';

export type Severity = 'high' | 'medium' | 'low';

export interface Finding {
  /** Stable id, e.g. `tls.minimum`, `devices.shared-key`. */
  id: string;
  severity: Severity;
  title: string;
  /** What was found: counts and up to ten names. */
  detail: string;
  fix: string;
  resources?: string[];
}

export interface PostureInput {
  now: number;
  settings: HubSettings;
  policies: SharedAccessPolicy[];
  /** Every device identity. */
  devices: DeviceRecord[];
  groups: EnrollmentGroup[];
  /** Registered CA certificates (and Gatehouse-held CAs, with `holdsKey`). */
  cas: Array<CaCertificateRecord & { holdsKey: boolean }>;
  issued: IssuedCertificateRecord[];
  operators: Operator[];
  assignments: RoleAssignment[];
  usage: PolicyUsageDoc | undefined;
  /** Days ahead that count as "expiring". */
  expiringDays: number;
  /** Where the event log lives (meta `log.store`; absent on a hub never started since it was recorded). */
  /** Where the event log lives, its JetStream replicas, and what an acknowledgement waits for (`fsync` or `os-cache`). */
  eventLog?: { store: string; replicas: number; durability?: string } | undefined;
}

const DAY = 86_400_000;

function names(list: string[], max = 10): string {
  return list.length <= max ? list.join(', ') : `${list.slice(0, max).join(', ')} and ${list.length - max} more`;
}

function keyStrength(pem: string): { weak: boolean; what: string } | undefined {
  try {
    const d = new X509Certificate(pem).publicKey.asymmetricKeyDetails;
    if (d?.modulusLength !== undefined) return { weak: d.modulusLength < 2048, what: `RSA-${d.modulusLength}` };
    if (d?.namedCurve !== undefined) return { weak: !['prime256v1', 'secp384r1', 'secp521r1'].includes(d.namedCurve), what: d.namedCurve };
    return undefined;
  } catch {
    return undefined;
  }
}

export function assessPosture(input: PostureInput): Finding[] {
  const f: Finding[] = [];
  const s = input.settings;
  const add = (x: Finding) => f.push(x);

  // ---- telemetry durability: an acknowledgement should mean on disk
  if (input.eventLog?.store === 'jetstream' && input.eventLog.replicas < 3) {
    add({
      id: 'telemetry.not-synced',
      severity: 'medium',
      title: 'Telemetry is acknowledged before it is on disk (event log on JetStream, one replica)',
      detail: `The partition streams have ${input.eventLog.replicas} replica(s); NATS syncs them to disk every sync_interval (2 minutes by default), so a device's acknowledged messages can be lost to a power cut or kernel crash.`,
      fix: 'Run NATS with sync_interval: always, or in a 3-node cluster with --event-log-replicas 3 (streams keep their replicas once created: recreate them, or start a new hub)',
    });
  }

  if (input.eventLog?.store === 'sql' && input.eventLog.durability === 'os-cache') {
    add({
      id: 'telemetry.os-cache',
      severity: 'medium',
      title: 'Telemetry is acknowledged before it is on disk (--telemetry-durability os-cache)',
      detail: 'The event log acknowledges a message once the operating system holds its commit, before a disk sync: a power cut or kernel crash can lose messages devices were told were received.',
      fix: 'Start the hub without --telemetry-durability (or with --telemetry-durability fsync)',
    });
  }

  // ---- hub settings (the az checks)
  if (tlsRank(s.minTlsVersion) < 1.2) {
    add({ id: 'tls.minimum', severity: 'high', title: `Minimum TLS version is ${s.minTlsVersion}`, detail: 'TLS 1.0 and 1.1 have known weaknesses and are deprecated.', fix: 'gatehouse settings set --min-tls-version 1.2' });
  }
  if (!s.auditLog.enabled) {
    add({ id: 'audit.disabled', severity: 'high', title: 'Audit logging of authentication decisions is off', detail: 'Failed and successful logins are not recorded; an attack leaves no trace.', fix: 'gatehouse settings set --audit-log true' });
  }
  if (!s.lockout.enabled) {
    add({ id: 'lockout.disabled', severity: 'medium', title: 'Brute-force lockout is off', detail: 'Credentials can be guessed without limit.', fix: 'gatehouse settings set --lockout true' });
  }
  if (!s.disableLocalAuth) {
    add({
      id: 'auth.local',
      severity: 'medium',
      title: 'Shared access policies are enabled (disableLocalAuth is false)',
      detail: `${input.policies.length} policies hold long-lived keys that sign any token their rights allow.`,
      fix: 'Create operators with roles, then: gatehouse settings set --disable-local-auth true',
    });
  }
  const sasDevices = input.devices.filter((d) => d.auth.type === 'sas');
  if (!s.disableDeviceSAS) {
    add({
      id: 'auth.device-sas',
      severity: 'medium',
      title: 'Device SAS keys are allowed (disableDeviceSAS is false)',
      detail: sasDevices.length === 0 ? 'No device uses SAS now, but new ones may.' : `${sasDevices.length} devices authenticate with SAS keys: ${names(sasDevices.map((d) => d.deviceId))}.`,
      fix: 'Move devices to X.509 (gatehouse factory run, EST), then: gatehouse settings set --disable-device-sas true',
      resources: sasDevices.map((d) => d.deviceId),
    });
  }
  if (!s.disableModuleSAS) {
    add({ id: 'auth.module-sas', severity: 'low', title: 'Module SAS keys are allowed (disableModuleSAS is false)', detail: 'Modules can authenticate with symmetric keys.', fix: 'gatehouse settings set --disable-module-sas true' });
  }

  // ---- network
  if (s.ipFilter.defaultAction === 'Accept') {
    add({
      id: 'network.ip-filter-default',
      severity: 'medium',
      title: 'The IP filter accepts addresses no rule matches',
      detail: `Default action Accept with ${s.ipFilter.rules.length} rules: any address may connect.`,
      fix: 'Accept your networks explicitly, then: gatehouse settings set --ip-filter-default Reject',
    });
  }
  const broad = s.ipFilter.rules.filter((r) => {
    const m = parseIpMask(r.ipMask);
    return r.action === 'Accept' && m !== undefined && (m.family === 'ipv4' ? m.prefix < 16 : m.prefix < 48);
  });
  if (broad.length > 0) {
    add({
      id: 'network.ip-filter-broad',
      severity: 'medium',
      title: 'IP filter rules accept ranges wider than /16',
      detail: broad.map((r) => `${r.filterName} (${r.ipMask})`).join(', '),
      fix: 'Narrow the Accept rules to the networks devices and operators use.',
      resources: broad.map((r) => r.filterName),
    });
  }

  // ---- shared secrets
  const byKey = new Map<string, string[]>();
  const byThumb = new Map<string, string[]>();
  for (const d of input.devices) {
    for (const k of [d.auth.primaryKey, d.auth.secondaryKey]) {
      if (d.auth.type !== 'sas' || k === null) continue;
      const h = createHash('sha256').update(k).digest('hex');
      const list = byKey.get(h) ?? [];
      if (!list.includes(d.deviceId)) list.push(d.deviceId);
      byKey.set(h, list);
    }
    for (const t of [d.auth.primaryThumbprint, d.auth.secondaryThumbprint]) {
      if (d.auth.type !== 'selfSigned' || t === null) continue;
      const list = byThumb.get(t.toUpperCase()) ?? [];
      if (!list.includes(d.deviceId)) list.push(d.deviceId);
      byThumb.set(t.toUpperCase(), list);
    }
  }
  const sharedKeys = [...byKey.values()].filter((l) => l.length > 1);
  if (sharedKeys.length > 0) {
    add({
      id: 'devices.shared-key',
      severity: 'high',
      title: 'Several devices share one symmetric key',
      detail: sharedKeys.map((l) => names(l, 5)).join('; '),
      fix: 'Give each device its own key: gatehouse device update <id> --auth-type sas (new keys), or move to X.509.',
      resources: sharedKeys.flat(),
    });
  }
  const sharedCerts = [...byThumb.values()].filter((l) => l.length > 1);
  if (sharedCerts.length > 0) {
    add({
      id: 'devices.shared-certificate',
      severity: 'high',
      title: 'Several devices are registered with the same certificate',
      detail: sharedCerts.map((l) => names(l, 5)).join('; '),
      fix: 'Issue one certificate per device (gatehouse factory run) and register each thumbprint once.',
      resources: sharedCerts.flat(),
    });
  }
  const shortKeys = sasDevices.filter((d) => [d.auth.primaryKey, d.auth.secondaryKey].some((k) => k !== null && Buffer.from(k, 'base64').length < 32));
  if (shortKeys.length > 0) {
    add({
      id: 'devices.weak-key',
      severity: 'medium',
      title: 'Device SAS keys shorter than 256 bits',
      detail: `${shortKeys.length} devices: ${names(shortKeys.map((d) => d.deviceId))}.`,
      fix: 'Regenerate the keys (Gatehouse generates 256-bit keys when none are given).',
      resources: shortKeys.map((d) => d.deviceId),
    });
  }

  // ---- certificates
  const registeredThumbs = new Map<string, string>();
  for (const [t, ids] of byThumb) for (const id of ids) registeredThumbs.set(t, id);
  const revokedRegistered = input.issued.filter((c) => c.revokedAt !== null && (registeredThumbs.has(c.thumbprintSha256.toUpperCase()) || registeredThumbs.has(c.thumbprintSha1.toUpperCase())));
  if (revokedRegistered.length > 0) {
    add({
      id: 'certificates.revoked-registered',
      severity: 'high',
      title: 'Revoked certificates are still registered on devices',
      detail: revokedRegistered.map((c) => `${c.deviceId} (serial ${c.serial}, ${c.revocationReason ?? 'revoked'})`).join(', '),
      fix: 'Replace the thumbprint on each device (or delete the device); Gatehouse refuses the revoked certificate, but the registration invites confusion.',
      resources: revokedRegistered.map((c) => c.deviceId),
    });
  }
  const live = input.issued.filter((c) => c.revokedAt === null);
  const expired = live.filter((c) => Date.parse(c.notAfter) <= input.now);
  const expiring = live.filter((c) => Date.parse(c.notAfter) > input.now && Date.parse(c.notAfter) <= input.now + input.expiringDays * DAY);
  if (expired.length > 0) {
    add({ id: 'certificates.expired', severity: 'medium', title: 'Issued device certificates have expired', detail: `${expired.length}: ${names(expired.map((c) => `${c.deviceId} (${c.notAfter})`))}.`, fix: 'Renew over EST (simplereenroll) within the grace period, or re-provision.', resources: expired.map((c) => c.deviceId) });
  }
  if (expiring.length > 0) {
    add({ id: 'certificates.expiring', severity: 'low', title: `Device certificates expire within ${input.expiringDays} days`, detail: `${expiring.length}: ${names(expiring.map((c) => `${c.deviceId} (${c.notAfter})`))}.`, fix: 'Make sure these devices renew over EST before expiry.', resources: expiring.map((c) => c.deviceId) });
  }
  for (const ca of input.cas) {
    const at = Date.parse(ca.expiry);
    if (at <= input.now) add({ id: 'ca.expired', severity: 'high', title: `CA certificate ${ca.name} has expired`, detail: `Expired ${ca.expiry}; devices chaining to it cannot connect or provision.`, fix: `Register a renewed CA and move devices to it; then: gatehouse ca delete ${ca.name}`, resources: [ca.name] });
    else if (at <= input.now + Math.max(input.expiringDays, 90) * DAY) add({ id: 'ca.expiring', severity: 'medium', title: `CA certificate ${ca.name} expires soon`, detail: `Expires ${ca.expiry}.`, fix: 'Create the next CA now and roll devices over before the old one expires.', resources: [ca.name] });
    const strength = keyStrength(ca.certificatePem);
    if (strength?.weak === true) add({ id: 'ca.weak-key', severity: 'high', title: `CA certificate ${ca.name} has a weak key (${strength.what})`, detail: 'A weak CA key can be broken, and with it every device identity it signs.', fix: 'Replace the CA with an RSA-2048+ or P-256/P-384 CA.', resources: [ca.name] });
    if (!ca.isVerified && !ca.holdsKey) add({ id: 'ca.unverified', severity: 'low', title: `CA certificate ${ca.name} is not verified`, detail: 'Unverified CAs are ignored for device authentication.', fix: `Prove possession (gatehouse ca verify) or delete it.`, resources: [ca.name] });
  }

  // ---- provisioning
  const symGroups = input.groups.filter((g) => g.attestation.type === 'symmetricKey');
  if (symGroups.length > 0) {
    add({
      id: 'dps.symmetric-key-group',
      severity: 'high',
      title: 'Symmetric-key enrollment groups',
      detail: `${names(symGroups.map((g) => g.enrollmentGroupId))}: one group key derives every device's key; whoever holds it can provision any registration id.`,
      fix: 'Use X.509 enrollment groups with a Gatehouse CA (EST for the factory line), then delete these groups.',
      resources: symGroups.map((g) => g.enrollmentGroupId),
    });
  }

  // ---- devices never seen
  const neverSeen = input.devices.filter((d) => d.status === 'enabled' && Date.parse(d.lastActivityTime) <= 0 && d.auth.type !== 'none');
  if (neverSeen.length > 0) {
    add({
      id: 'devices.never-seen',
      severity: 'low',
      title: 'Enabled devices that have never connected hold live credentials',
      detail: `${neverSeen.length}: ${names(neverSeen.map((d) => d.deviceId))}.`,
      fix: 'Disable identities until their devices are deployed (gatehouse device update <id> --status disabled).',
      resources: neverSeen.map((d) => d.deviceId),
    });
  }

  // ---- least privilege: policies and roles
  if (!s.disableLocalAuth) {
    const usage = input.usage;
    const since = usage === undefined ? undefined : Math.round((input.now - usage.since) / DAY);
    for (const p of input.policies) {
      const used = usage?.used[p.name.toLowerCase()] ?? {};
      const owner = isOwnerLevel(p.rights);
      // An owner-level policy keeps its owner rights in any suggestion: they are the hub's
      // administration path (the CLI's --data-dir signs with iothubowner). Fewer administrators is
      // policies.owner-like's and auth.local's business, where the caller decides who remains.
      const unused = p.rights.filter((r) => used[r] === undefined && !(owner && OWNER_RIGHTS.includes(r)));
      if (unused.length > 0 && p.rights.some((r) => used[r] !== undefined)) {
        add({
          id: 'policies.unused-rights',
          severity: 'low',
          title: `Policy ${p.name} holds rights it has not used`,
          detail: `${unused.join(', ')} unused${since === undefined ? '' : ` in the ${since} days tracked`}.`,
          fix: `gatehouse policy update ${p.name} --rights ${p.rights.filter((r) => !unused.includes(r)).join(',')}`,
          resources: [p.name],
        });
      }
      // Reported while the policy still holds the right: dropping it is the fix, and it then clears.
      if (used.DeviceConnect !== undefined && p.rights.includes('DeviceConnect')) {
        const rest = p.rights.filter((r) => r !== 'DeviceConnect');
        add({
          id: 'policies.device-connect-used',
          severity: 'high',
          title: `Devices connect with tokens signed by policy ${p.name}`,
          detail: 'A policy key signs tokens for every device: one leaked key impersonates the fleet.',
          fix: `Give each device its own credential, then: ${rest.length === 0 ? `gatehouse policy delete ${p.name}` : `gatehouse policy update ${p.name} --rights ${rest.join(',')}`}`,
          resources: [p.name],
        });
      }
    }
    const owners = input.policies.filter((p) => isOwnerLevel(p.rights));
    if (owners.length > 1) {
      add({
        id: 'policies.owner-like',
        severity: 'medium',
        title: 'Several policies are owner-level',
        detail: `${names(owners.map((p) => p.name))} hold ${OWNER_RIGHTS.join(', ')}: each key administers the hub.`,
        fix: 'Keep one owner-level policy (iothubowner: the CLI signs with it) or none, with Owner operators; give the others only the rights they use.',
        resources: owners.map((p) => p.name),
      });
    }
  }
  const ownerRoles = input.assignments.filter((a) => a.roleDefinitionName === 'Owner');
  if (ownerRoles.length > 3) {
    add({ id: 'roles.many-owners', severity: 'medium', title: `${ownerRoles.length} operators hold Owner`, detail: names(ownerRoles.map((a) => a.principalId)), fix: 'Give day-to-day operators a data-plane role (IoT Hub Data Contributor or narrower) and keep Owner for two or three.', resources: ownerRoles.map((a) => a.principalId) });
  }
  const assigned = new Set(input.assignments.map((a) => a.principalId.toLowerCase()));
  const idle = input.operators.filter((o) => o.enabled && !assigned.has(o.id.toLowerCase()));
  if (idle.length > 0) add({ id: 'operators.no-role', severity: 'low', title: 'Enabled operators without a role', detail: names(idle.map((o) => o.id)), fix: 'Delete or disable operators that need no access.', resources: idle.map((o) => o.id) });

  const order: Record<Severity, number> = { high: 0, medium: 1, low: 2 };
  return f.sort((a, b) => order[a.severity] - order[b.severity] || a.id.localeCompare(b.id));
}
