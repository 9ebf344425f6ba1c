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
function groupFlags(o: EnrollmentOpts & { groupId?: string; caName?: string; secondaryCaName?: string }): EnrollmentFlags {
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

function registerIndividual(dps: Command): void {
  const enrollment = dps.command('enrollment').description('individual enrollments: one device, its own key or certificate');
  const base = '/enrollments';

  shapeOptions(idOption(dpsCommand(enrollment, 'create', 'create an individual enrollment'), 'individual'), 'individual', false)
    .addOption(new Option('--at, --attestation-type <type>', ATTESTATION_TYPES.join(', ')).argParser(choice(ATTESTATION_TYPES, '--attestation-type')))
    .action(async (o: EnrollmentOpts) => {
      const id = required(o.enrollmentId, '--enrollment-id');
      const body = individualCreateBody(id, flags(o));
      const existing = await dpsCall(o, async (c) => {
        try {
          await c.call('GET', `${base}/${encodeId(id)}`);
          return true;
        } catch (err) {
          if (err instanceof CliError && err.code === 'EnrollmentNotFound') return false;
          throw err;
        }
      });
      // PUT without If-Match overwrites; create must not.
      if (existing) throw new CliError('EnrollmentAlreadyExists', `an individual enrollment ${id} already exists; change it with gatehouse dps enrollment update`);
      show((await dpsCall(o, (c) => c.call('PUT', `${base}/${encodeId(id)}`, body))).body, o, INDIVIDUAL_COLUMNS);
    });

  idOption(dpsCommand(enrollment, 'show', 'show an individual enrollment'), 'individual')
    .option('--keys, --show-keys', 'include the symmetric keys')
    .action(async (o: EnrollmentOpts) => {
      const id = required(o.enrollmentId, '--enrollment-id');
      show(await dpsCall(o, (c) => showRecord(c, `${base}/${encodeId(id)}`, o.showKeys)), o, INDIVIDUAL_COLUMNS);
    });

  dpsCommand(enrollment, 'list', 'list individual enrollments (keys hidden)')
    .option('--top <n>', 'at most this many', intInRange(1, 1_000_000))
    .action(async (o: EnrollmentOpts) => {
      const list = await dpsCall(o, (c) => c.query(`${base}/query`, { query: '*' }, o.top));
      show(list.map(maskKeys), o, INDIVIDUAL_COLUMNS);
    });

  shapeOptions(idOption(dpsCommand(enrollment, 'update', 'change an individual enrollment: only what is given'), 'individual'), 'individual', true).action(async (o: EnrollmentOpts) => {
    const id = required(o.enrollmentId, '--enrollment-id');
    const f = flags(o);
    const res = await dpsCall(o, async (c) => {
      const current = await showRecord(c, `${base}/${encodeId(id)}`, true);
      return c.call('PUT', `${base}/${encodeId(id)}`, individualUpdateBody(current, f), ifMatch(o.etag ?? (current.etag as string | undefined)));
    });
    show(res.body, o, INDIVIDUAL_COLUMNS);
  });

  etagOption(idOption(dpsCommand(enrollment, 'delete', 'delete an individual enrollment (its device stays on the hub)'), 'individual')).action(async (o: EnrollmentOpts) => {
    const id = required(o.enrollmentId, '--enrollment-id');
    await dpsCall(o, (c) => c.call('DELETE', `${base}/${encodeId(id)}`, undefined, ifMatch(o.etag)));
  });

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

type GroupOpts = EnrollmentOpts & { groupId?: string; caName?: string; secondaryCaName?: string };

function registerGroup(dps: Command): void {
  const group = dps.command('enrollment-group').description('enrollment groups: many devices, a group key or a signing CA');
  const base = '/enrollmentGroups';

  shapeOptions(idOption(dpsCommand(group, 'create', 'create an enrollment group: symmetric key (default), --certificate-path or --ca-name'), 'group'), 'group', false).action(
    async (o: GroupOpts) => {
      const id = required(o.groupId, '--group-id');
      const body = groupCreateBody(id, groupFlags(o));
      const existing = await dpsCall(o, async (c) => {
        try {
          await c.call('GET', `${base}/${encodeId(id)}`);
          return true;
        } catch (err) {
          if (err instanceof CliError && err.code === 'EnrollmentNotFound') return false;
          throw err;
        }
      });
      if (existing) throw new CliError('EnrollmentAlreadyExists', `an enrollment group ${id} already exists; change it with gatehouse dps enrollment-group update`);
      show((await dpsCall(o, (c) => c.call('PUT', `${base}/${encodeId(id)}`, body))).body, o, GROUP_COLUMNS);
    },
  );

  idOption(dpsCommand(group, 'show', 'show an enrollment group'), 'group')
    .option('--keys, --show-keys', 'include the group keys')
    .action(async (o: GroupOpts) => {
      const id = required(o.groupId, '--group-id');
      show(await dpsCall(o, (c) => showRecord(c, `${base}/${encodeId(id)}`, o.showKeys)), o, GROUP_COLUMNS);
    });

  dpsCommand(group, 'list', 'list enrollment groups (keys hidden)')
    .option('--top <n>', 'at most this many', intInRange(1, 1_000_000))
    .action(async (o: GroupOpts) => {
      const list = await dpsCall(o, (c) => c.query(`${base}/query`, { query: '*' }, o.top));
      show(list.map(maskKeys), o, GROUP_COLUMNS);
    });

  shapeOptions(idOption(dpsCommand(group, 'update', 'change an enrollment group: only what is given'), 'group'), 'group', true).action(async (o: GroupOpts) => {
    const id = required(o.groupId, '--group-id');
    const f = groupFlags(o);
    const res = await dpsCall(o, async (c) => {
      const current = await showRecord(c, `${base}/${encodeId(id)}`, true);
      return c.call('PUT', `${base}/${encodeId(id)}`, groupUpdateBody(current, f), ifMatch(o.etag ?? (current.etag as string | undefined)));
    });
    show(res.body, o, GROUP_COLUMNS);
  });

  etagOption(idOption(dpsCommand(group, 'delete', 'delete an enrollment group (its devices stay on the hub)'), 'group')).action(async (o: GroupOpts) => {
    const id = required(o.groupId, '--group-id');
    await dpsCall(o, (c) => c.call('DELETE', `${base}/${encodeId(id)}`, undefined, ifMatch(o.etag)));
  });

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
