/**
 * The provisioning service from the command line, in the manner of `az iot dps`:
 *
 *   gatehouse dps enrollment create|show|list|update|delete [registration show|delete]
 *   gatehouse dps enrollment-group create|show|list|update|delete|compute-device-key [registration list|show|delete]
 *   gatehouse dps registration list|show|delete
 *
 * with az's flag names. They call the DPS service REST API (wire doc §6.9) with the
 * `provisioningserviceowner` policy of a data-dir hub, or the DPS connection string given.
 */
import { Option, type Command } from 'commander';
import { deriveDeviceKey } from '../../dps/registration-service.js';
import {
  ALLOCATION_POLICIES,
  ATTESTATION_TYPES,
  choice,
  groupCreateBody,
  groupUpdateBody,
  individualCreateBody,
  individualUpdateBody,
  maskKeys,
  PROVISIONING_STATUSES,
  REPROVISION_POLICIES,
  type EnrollmentFlags,
} from '../dps-body.js';
import { CliError, usage } from '../errors.js';
import { print } from '../output.js';
import { encodeId, type RestClient } from '../rest-client.js';
import { alias, boolFlag, connectionOptions, intInRange, jsonObjectOption, withClient, type ConnOpts } from './common.js';

export const DPS_POLICY = 'provisioningserviceowner';

type Json = Record<string, unknown>;

interface EnrollmentOpts extends ConnOpts, Omit<EnrollmentFlags, 'initialTwinTags' | 'initialTwinProperties'> {
  enrollmentId?: string;
  registrationId?: string;
  initialTwinTags?: string;
  initialTwinProperties?: string;
  etag?: string;
  showKeys?: boolean;
  top?: number;
  symmetricKey?: string;
}

const INDIVIDUAL_COLUMNS = ['registrationId', 'deviceId', 'attestationType', 'provisioningStatus', 'allocationPolicy', 'iotHubs', 'etag'];
const GROUP_COLUMNS = ['enrollmentGroupId', 'attestationType', 'provisioningStatus', 'allocationPolicy', 'iotHubs', 'etag'];
const REGISTRATION_COLUMNS = ['registrationId', 'deviceId', 'status', 'substatus', 'assignedHub', 'lastUpdatedDateTimeUtc', 'etag'];

/** Records as the service returns them; the table gets the attestation type as a column. */
function show(value: unknown, o: ConnOpts, columns: string[]): void {
  if (o.output !== 'table') return print(value, 'json');
  const row = (r: Json) => ({ ...r, attestationType: (r.attestation as Json | undefined)?.type });
  print(Array.isArray(value) ? (value as Json[]).map(row) : row(value as Json), 'table', columns);
}

function dpsCall<T>(o: ConnOpts, fn: (c: RestClient) => Promise<T>): Promise<T> {
  return withClient(o, (c) => fn(c), DPS_POLICY);
}

function ifMatch(etag: string | undefined): Record<string, string> {
  return { 'if-match': etag === undefined ? '*' : `"${etag.replace(/^"|"$/g, '')}"` };
}

function flags(o: EnrollmentOpts): EnrollmentFlags {
  const { initialTwinTags, initialTwinProperties, ...rest } = o;
  const tags = jsonObjectOption(initialTwinTags, '--initial-twin-tags');
  const props = jsonObjectOption(initialTwinProperties, '--initial-twin-properties');
  return { ...rest, ...(tags === undefined ? {} : { initialTwinTags: tags }), ...(props === undefined ? {} : { initialTwinProperties: props }) };
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw usage(`required option '${flag}' not specified`, 'ArgumentMissing');
  return value;
}

/** The options every DPS command takes, named as az names them. */
function dpsCommand(parent: Command, name: string, description: string): Command {
  return connectionOptions(parent.command(name).description(description), DPS_POLICY);
}

function idOption(cmd: Command, kind: 'individual' | 'group'): Command {
  if (kind === 'individual') return cmd.option('--eid, --enrollment-id <id>', 'individual enrollment id (its registration id)');
  cmd.option('--gid, --group-id <id>', 'enrollment group id (also --enrollment-id, --eid)');
  alias(cmd, '--eid <id>', 'groupId');
  alias(cmd, '--enrollment-id <id>', 'groupId');
  return cmd;
}

function etagOption(cmd: Command): Command {
  return cmd.option('-e, --etag <etag>', "apply only if the record still has this etag (default '*')");
}

/** What create and update share. */
function shapeOptions(cmd: Command, kind: 'individual' | 'group', update: boolean): Command {
  cmd
    .option('--pk, --primary-key <key>', 'symmetric key, base64 (generated when omitted)')
    .option('--sk, --secondary-key <key>', 'symmetric key, base64 (generated when omitted)')
    .option('--cp, --certificate-path <file>', kind === 'individual' ? "the device's certificate (PEM or DER)" : 'a signing (intermediate) certificate of the group (PEM or DER)')
    .option('--scp, --secondary-certificate-path <file>', 'the secondary certificate (PEM or DER)')
    .option('--tags, --initial-twin-tags <json>', 'initial twin tags, JSON or a file')
    .option('--props, --initial-twin-properties <json>', 'initial desired properties, JSON or a file')
    .addOption(new Option('--ps, --provisioning-status <status>', 'enabled or disabled').argParser(choice(PROVISIONING_STATUSES, '--provisioning-status')))
    .addOption(new Option('--rp, --reprovision-policy <policy>', REPROVISION_POLICIES.join(', ')).argParser(choice(REPROVISION_POLICIES, '--reprovision-policy')))
    .addOption(new Option('--ap, --allocation-policy <policy>', ALLOCATION_POLICIES.join(', ')).argParser(choice(ALLOCATION_POLICIES, '--allocation-policy')))
    .option('--ih, --iot-hubs <host...>', 'host names of the hubs the allocation policy chooses from (space-separated)')
    .option('--wh, --webhook-url <url>', 'the webhook of the custom allocation policy')
    .option('--av, --api-version <version>', 'the API version sent to the custom allocation webhook')
    .option('--ee, --edge-enabled [bool]', 'an IoT Edge device', boolFlag);
  if (kind === 'group') {
    cmd.option('--cn, --ca-name <name>', 'a CA registered on the hub (gatehouse ca) that signs the devices (also --root-ca-name)');
    cmd.option('--scn, --secondary-ca-name <name>', 'a secondary CA (also --secondary-root-ca-name)');
    alias(cmd, '--root-ca-name <name>', 'caName');
    alias(cmd, '--secondary-root-ca-name <name>', 'secondaryCaName');
  } else {
    cmd.option('-d, --device-id <id>', 'the device id on the hub (default: the registration id)');
    cmd.option('--ek, --endorsement-key <key>', 'TPM endorsement key, base64');
  }
  if (update) {
    cmd.option('--rc, --remove-certificate [bool]', 'remove the primary certificate', boolFlag);
    cmd.option('--rsc, --remove-secondary-certificate [bool]', 'remove the secondary certificate (or CA)', boolFlag);
    etagOption(cmd);
  }
  return cmd;
}

/** The group options stored under their az names in EnrollmentFlags. */
function groupFlags(o: GroupOpts): EnrollmentFlags {
  const f = flags(o);
  if (o.caName !== undefined) f.rootCaName = o.caName;
  if (o.secondaryCaName !== undefined) f.secondaryRootCaName = o.secondaryCaName;
  return f;
}

async function showRecord(c: RestClient, path: string, showKeys: boolean | undefined): Promise<Json> {
  const record = (await c.call('GET', path)).body as Json;
  if (showKeys !== true) return maskKeys(record);
  const attestation = (record.attestation as Json | undefined)?.type === 'symmetricKey' ? (await c.call('POST', `${path}/attestationmechanism`)).body : record.attestation;
  return { ...record, attestation };
}

type GroupOpts = EnrollmentOpts & { groupId?: string; caName?: string; secondaryCaName?: string };

/** What differs between the individual enrollment and the enrollment group commands. */
interface RecordKind {
  kind: 'individual' | 'group';
  /** The REST collection. */
  base: string;
  /** 'an individual enrollment', 'an enrollment group'. */
  what: string;
  /** The command that changes one: named in create's refusal. */
  command: string;
  columns: string[];
  /** What show --keys adds. */
  keys: string;
  /** What a delete leaves. */
  deleteNote: string;
  id(o: GroupOpts): string;
  createBody(id: string, o: GroupOpts): Json;
  updateBody(current: Json, o: GroupOpts): Json;
}

const INDIVIDUAL: RecordKind = {
  kind: 'individual',
  base: '/enrollments',
  what: 'an individual enrollment',
  command: 'enrollment',
  columns: INDIVIDUAL_COLUMNS,
  keys: 'the symmetric keys',
  deleteNote: 'its device stays on the hub',
  id: (o) => required(o.enrollmentId, '--enrollment-id'),
  createBody: (id, o) => individualCreateBody(id, flags(o)),
  updateBody: (current, o) => individualUpdateBody(current, flags(o)),
};

const GROUP: RecordKind = {
  kind: 'group',
  base: '/enrollmentGroups',
  what: 'an enrollment group',
  command: 'enrollment-group',
  columns: GROUP_COLUMNS,
  keys: 'the group keys',
  deleteNote: 'its devices stay on the hub',
  id: (o) => required(o.groupId, '--group-id'),
  createBody: (id, o) => groupCreateBody(id, groupFlags(o)),
  updateBody: (current, o) => groupUpdateBody(current, groupFlags(o)),
};

/** create, show, list, update and delete of one kind of enrollment record. */
function registerRecords(parent: Command, k: RecordKind, createDescription: string, listDescription: string): void {
  const path = (id: string) => `${k.base}/${encodeId(id)}`;
  const create = shapeOptions(idOption(dpsCommand(parent, 'create', createDescription), k.kind), k.kind, false);
  if (k.kind === 'individual') create.addOption(new Option('--at, --attestation-type <type>', ATTESTATION_TYPES.join(', ')).argParser(choice(ATTESTATION_TYPES, '--attestation-type')));
  create.action(async (o: GroupOpts) => {
    const id = k.id(o);
    const body = k.createBody(id, o);
    const existing = await dpsCall(o, async (c) => {
      try {
        await c.call('GET', path(id));
        return true;
      } catch (err) {
        if (err instanceof CliError && err.code === 'EnrollmentNotFound') return false;
        throw err;
      }
    });
    // PUT without If-Match overwrites; create must not.
    if (existing) throw new CliError('EnrollmentAlreadyExists', `${k.what} ${id} already exists; change it with gatehouse dps ${k.command} update`);
    show((await dpsCall(o, (c) => c.call('PUT', path(id), body))).body, o, k.columns);
  });

  idOption(dpsCommand(parent, 'show', `show ${k.what}`), k.kind)
    .option('--keys, --show-keys', `include ${k.keys}`)
    .action(async (o: GroupOpts) => {
      const id = k.id(o);
      show(await dpsCall(o, (c) => showRecord(c, path(id), o.showKeys)), o, k.columns);
    });

  dpsCommand(parent, 'list', listDescription)
    .option('--top <n>', 'at most this many', intInRange(1, 1_000_000))
    .action(async (o: GroupOpts) => {
      const list = await dpsCall(o, (c) => c.query(`${k.base}/query`, { query: '*' }, o.top));
      show(list.map(maskKeys), o, k.columns);
    });

  shapeOptions(idOption(dpsCommand(parent, 'update', `change ${k.what}: only what is given`), k.kind), k.kind, true).action(async (o: GroupOpts) => {
    const id = k.id(o);
    const res = await dpsCall(o, async (c) => {
      const current = await showRecord(c, path(id), true);
      return c.call('PUT', path(id), k.updateBody(current, o), ifMatch(o.etag ?? (current.etag as string | undefined)));
    });
    show(res.body, o, k.columns);
  });

  etagOption(idOption(dpsCommand(parent, 'delete', `delete ${k.what} (${k.deleteNote})`), k.kind)).action(async (o: GroupOpts) => {
    const id = k.id(o);
    await dpsCall(o, (c) => c.call('DELETE', path(id), undefined, ifMatch(o.etag)));
  });
}

function registerIndividual(dps: Command): void {
  const enrollment = dps.command('enrollment').description('individual enrollments: one device, its own key or certificate');
  registerRecords(enrollment, INDIVIDUAL, 'create an individual enrollment', 'list individual enrollments (keys hidden)');

  const registration = enrollment.command('registration').description('the registration state of an individual enrollment');
  idOption(dpsCommand(registration, 'show', 'show the registration state'), 'individual').action(async (o: EnrollmentOpts) => {
    const id = required(o.enrollmentId, '--enrollment-id');
    print((await dpsCall(o, (c) => c.call('GET', `/registrations/${encodeId(id)}`))).body, o.output, REGISTRATION_COLUMNS);
  });
  etagOption(idOption(dpsCommand(registration, 'delete', 'delete the registration state (the device registers afresh)'), 'individual')).action(async (o: EnrollmentOpts) => {
    const id = required(o.enrollmentId, '--enrollment-id');
    await dpsCall(o, (c) => c.call('DELETE', `/registrations/${encodeId(id)}`, undefined, ifMatch(o.etag)));
  });
}

function registerGroup(dps: Command): void {
  const group = dps.command('enrollment-group').description('enrollment groups: many devices, a group key or a signing CA');
  registerRecords(group, GROUP, 'create an enrollment group: symmetric key (default), --certificate-path or --ca-name', 'list enrollment groups (keys hidden)');
  registerComputeDeviceKey(group);
  registerRegistrations(group.command('registration').description('registration states of the devices of an enrollment group'));
}

/** `compute-device-key`: the key a group member signs with, base64(HMAC-SHA256(group key, registration id)). */
function registerComputeDeviceKey(parent: Command): void {
  const cmd = idOption(dpsCommand(parent, 'compute-device-key', "a group member's symmetric key: from the group on the hub, or offline from --symmetric-key"), 'group')
    .option('--rid, --registration-id <id>', "the device's registration id")
    .option('--key, --symmetric-key <key>', 'the group key: computed offline, the hub is not asked');
  cmd.action(async (o: GroupOpts) => {
    const rid = required(o.registrationId, '--registration-id');
    let key = o.symmetricKey;
    if (key === undefined) {
      const id = o.groupId;
      if (id === undefined) throw usage('give --group-id (the key is read from the hub) or --symmetric-key', 'ArgumentMissing');
      const attestation = (await dpsCall(o, (c) => c.call('POST', `/enrollmentGroups/${encodeId(id)}/attestationmechanism`))).body as Json;
      if (attestation.type !== 'symmetricKey') throw new CliError('InvalidOperation', `enrollment group ${id} attests with ${String(attestation.type)}; compute-device-key needs a symmetric-key group`);
      key = String((attestation.symmetricKey as Json).primaryKey);
    }
    const deviceKey = deriveDeviceKey(key, rid);
    if (o.output === 'table') process.stdout.write(`${deviceKey}\n`);
    else print(deviceKey, 'json');
  });
}

function registerRegistrations(parent: Command): void {
  const list = idOption(dpsCommand(parent, 'list', 'list the registration states of an enrollment group'), 'group').option('--top <n>', 'at most this many', intInRange(1, 1_000_000));
  list.action(async (o: GroupOpts) => {
    const id = required(o.groupId, '--group-id');
    print(await dpsCall(o, (c) => c.query(`/registrations/${encodeId(id)}/query`, undefined, o.top)), o.output, REGISTRATION_COLUMNS);
  });
  dpsCommand(parent, 'show', 'show the registration state of a device')
    .option('--rid, --registration-id <id>', "the device's registration id")
    .action(async (o: GroupOpts) => {
      const rid = required(o.registrationId, '--registration-id');
      print((await dpsCall(o, (c) => c.call('GET', `/registrations/${encodeId(rid)}`))).body, o.output, REGISTRATION_COLUMNS);
    });
  etagOption(dpsCommand(parent, 'delete', 'delete the registration state of a device (it registers afresh)').option('--rid, --registration-id <id>', "the device's registration id")).action(
    async (o: GroupOpts) => {
      const rid = required(o.registrationId, '--registration-id');
      await dpsCall(o, (c) => c.call('DELETE', `/registrations/${encodeId(rid)}`, undefined, ifMatch(o.etag)));
    },
  );
}

export function registerDpsEnrollments(dps: Command): void {
  registerIndividual(dps);
  registerGroup(dps);
  registerRegistrations(dps.command('registration').description('device registration states (az iot dps registration)'));
  registerComputeDeviceKey(dps);
}
