/**
 * Hub administration from the command line, over the hub's REST API:
 *
 *   gatehouse settings show | set [--disable-device-sas true ...] [--dry-run]
 *   gatehouse operator create|list|show|delete|enable|disable|revoke-tokens|token
 *   gatehouse role assignment list|create|delete   (in the shape of `az role assignment`)
 *   gatehouse role definition list
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { print } from '../output.js';
import { encodeId } from '../rest-client.js';
import { connectionOptions, parseJsonOption, withClient, type ConnOpts } from './common.js';
import { usage, withFlagHints } from '../errors.js';

/** The query switches of PATCH /settings, as this command's flags (for the hub's hints). */
const SETTINGS_FLAGS = { force: '--force', allowLegacyTls: '--allow-legacy-tls', dryRun: '--dry-run' } as const;

function bool(name: string) {
  return (v: string): boolean => {
    if (v === 'true' || v === 'on' || v === 'yes') return true;
    if (v === 'false' || v === 'off' || v === 'no') return false;
    throw new InvalidArgumentError(`${name} must be true or false`);
  };
}

interface SetOpts extends ConnOpts {
  disableLocalAuth?: boolean;
  disableDeviceSas?: boolean;
  disableModuleSas?: boolean;
  minTlsVersion?: string;
  ipFilterDefault?: string;
  addIpRule?: string[];
  removeIpRule?: string[];
  ipRules?: string;
  c2dTtl?: string;
  c2dMaxDeliveryCount?: string;
  fileUploadNotifications?: boolean;
  fileNotificationTtl?: string;
  fileNotificationMaxDeliveryCount?: string;
  fileUploadSasTtl?: string;
  auditLog?: boolean;
  lockout?: boolean;
  patch?: string;
  dryRun?: boolean;
  force?: boolean;
  allowLegacyTls?: boolean;
}

interface IpRule {
  filterName: string;
  action: string;
  ipMask: string;
}

/** `name:Accept:10.0.0.0/8` (IPv6 masks keep their colons: everything after the second colon). */
export function parseIpRule(text: string): IpRule {
  const first = text.indexOf(':');
  const second = text.indexOf(':', first + 1);
  if (first <= 0 || second <= first) throw usage(`--add-ip-rule '${text}' is not name:Accept|Reject:mask`);
  const action = text.slice(first + 1, second);
  const norm = action.toLowerCase() === 'accept' ? 'Accept' : action.toLowerCase() === 'reject' ? 'Reject' : undefined;
  if (norm === undefined) throw usage(`--add-ip-rule '${text}': action must be Accept or Reject`);
  return { filterName: text.slice(0, first), action: norm, ipMask: text.slice(second + 1) };
}

export function registerSecurity(program: Command): void {
  const settings = program.command('settings').description('hub settings: SAS switches, TLS minimum, IP filter, C2D defaults, file upload, audit log, lockout');
  connectionOptions(settings.command('show').description('show the current settings')).action(async (o: ConnOpts) => {
    await withClient(o, async (c) => print((await c.call('GET', '/settings')).body, 'json'));
  });
  connectionOptions(
    settings
      .command('set')
      .description('change settings at once (applied to every listener and the provisioning service); --dry-run shows what it would cut off')
      .option('--disable-local-auth <bool>', 'refuse shared access policy tokens (service and device)', bool('--disable-local-auth'))
      .option('--disable-device-sas <bool>', 'refuse device SAS keys (and symmetric-key provisioning)', bool('--disable-device-sas'))
      .option('--disable-module-sas <bool>', 'refuse module SAS keys', bool('--disable-module-sas'))
      .addOption(new Option('--min-tls-version <v>', 'minimum TLS version').choices(['1.0', '1.1', '1.2', '1.3']))
      .addOption(new Option('--ip-filter-default <action>', 'action for addresses no rule matches').choices(['Accept', 'Reject']))
      .option('--add-ip-rule <name:action:mask>', 'append an IP filter rule (repeatable; order decides)', (v: string, acc: string[] = []) => [...acc, v])
      .option('--remove-ip-rule <name>', 'remove an IP filter rule (repeatable)', (v: string, acc: string[] = []) => [...acc, v])
      .option('--ip-rules <json>', 'replace every IP filter rule with this JSON array')
      .option('--c2d-ttl <iso8601>', 'default C2D message TTL, e.g. PT1H')
      .option('--c2d-max-delivery-count <n>', 'C2D deliveries before dead-lettering')
      .option('--file-upload-notifications <bool>', 'send a notification to the service for each completed file upload', bool('--file-upload-notifications'))
      .option('--file-notification-ttl <iso8601>', 'how long a file upload notification waits for a receiver, e.g. PT1H')
      .option('--file-notification-max-delivery-count <n>', 'deliveries of a file upload notification before it is dropped')
      .option('--file-upload-sas-ttl <iso8601>', 'how long the SAS URI a device gets for an upload is valid, e.g. PT1H')
      .option('--audit-log <bool>', 'record authentication decisions in the audit log', bool('--audit-log'))
      .option('--lockout <bool>', 'lock out addresses, identities and credentials after repeated failures', bool('--lockout'))
      .option('--patch <json>', 'a raw JSON merge patch of the settings')
      .option('--dry-run', 'show what the change would cut off without applying it')
      .option('--force', 'apply even when it would lock administrators out')
      .option('--allow-legacy-tls', 'allow a TLS minimum below 1.2'),
  ).action(async (o: SetOpts) => {
    await withClient(o, async (c) => {
      const patch: Record<string, unknown> = (parseJsonOption(o.patch, '--patch') as Record<string, unknown> | undefined) ?? {};
      if (o.disableLocalAuth !== undefined) patch.disableLocalAuth = o.disableLocalAuth;
      if (o.disableDeviceSas !== undefined) patch.disableDeviceSAS = o.disableDeviceSas;
      if (o.disableModuleSas !== undefined) patch.disableModuleSAS = o.disableModuleSas;
      if (o.minTlsVersion !== undefined) patch.minTlsVersion = o.minTlsVersion;
      if (o.c2dTtl !== undefined || o.c2dMaxDeliveryCount !== undefined) {
        patch.c2d = {
          ...(o.c2dTtl === undefined ? {} : { defaultTtlAsIso8601: o.c2dTtl }),
          ...(o.c2dMaxDeliveryCount === undefined ? {} : { maxDeliveryCount: Number(o.c2dMaxDeliveryCount) }),
        };
      }
      const fileUpload = {
        ...(o.fileUploadNotifications === undefined ? {} : { notifications: o.fileUploadNotifications }),
        ...(o.fileNotificationTtl === undefined ? {} : { notificationTtlAsIso8601: o.fileNotificationTtl }),
        ...(o.fileNotificationMaxDeliveryCount === undefined ? {} : { notificationMaxDeliveryCount: Number(o.fileNotificationMaxDeliveryCount) }),
        ...(o.fileUploadSasTtl === undefined ? {} : { sasTtlAsIso8601: o.fileUploadSasTtl }),
      };
      if (Object.keys(fileUpload).length > 0) patch.fileUpload = fileUpload;
      if (o.auditLog !== undefined) patch.auditLog = { enabled: o.auditLog };
      if (o.lockout !== undefined) patch.lockout = { enabled: o.lockout };
      let etag: string | undefined;
      if (o.ipFilterDefault !== undefined || o.addIpRule !== undefined || o.removeIpRule !== undefined || o.ipRules !== undefined) {
        const current = (await c.call('GET', '/settings')).body as { etag: string; ipFilter: { defaultAction: string; rules: IpRule[] } };
        etag = current.etag;
        let rules = o.ipRules === undefined ? current.ipFilter.rules : (parseJsonOption(o.ipRules, '--ip-rules') as IpRule[]);
        const remove = new Set((o.removeIpRule ?? []).map((n) => n.toLowerCase()));
        for (const name of remove) if (!rules.some((r) => r.filterName.toLowerCase() === name)) throw usage(`--remove-ip-rule: no IP filter rule named ${name}`);
        rules = rules.filter((r) => !remove.has(r.filterName.toLowerCase()));
        rules = [...rules, ...(o.addIpRule ?? []).map(parseIpRule)];
        patch.ipFilter = { defaultAction: o.ipFilterDefault ?? current.ipFilter.defaultAction, rules };
      }
      if (Object.keys(patch).length === 0) throw usage('nothing to change: give at least one setting', 'ArgumentMissing');
      const q = [o.dryRun === true ? 'dryRun=true' : '', o.force === true ? 'force=true' : '', o.allowLegacyTls === true ? 'allowLegacyTls=true' : ''].filter((x) => x !== '').join('&');
      const res = await c
        .call('PATCH', `/settings${q === '' ? '' : `?${q}`}`, patch, etag === undefined ? {} : { 'if-match': `"${etag}"` })
        .catch((err: unknown) => {
          throw withFlagHints(err, SETTINGS_FLAGS);
        });
      const body = res.body as { dryRun: boolean; impact: { sessions: unknown[]; policies: string[]; enrollments: unknown[]; warnings: string[] } };
      for (const w of body.impact.warnings) process.stderr.write(`warning: ${w}\n`);
      if (o.output === 'table') {
        print(
          [
            ...body.impact.sessions.map((s) => ({ kind: 'session', ...(s as object) })),
            ...body.impact.policies.map((p) => ({ kind: 'policy', id: p, reason: 'shared access policies are disabled' })),
            ...body.impact.enrollments.map((e) => ({ kind: 'enrollment', ...(e as object) })),
          ],
          'table',
          ['kind', 'deviceId', 'id', 'remote', 'reason'],
        );
      } else print(body, 'json');
    });
  });

  const operator = program.command('operator').description('operators: identities with hub-signed bearer tokens, rights through role assignments');
  connectionOptions(operator.command('list').description('list operators and their roles')).action(async (o: ConnOpts) => {
    await withClient(o, async (c) => {
      const rows = ((await c.call('GET', '/operators')).body as { value: Array<Record<string, unknown>> }).value;
      print(rows.map((r) => ({ ...r, roles: (r.roles as string[]).join(', ') })), o.output, ['id', 'displayName', 'enabled', 'roles', 'createdAt']);
    });
  });
  connectionOptions(operator.command('show <id>').description('show one operator')).action(async (id: string, o: ConnOpts) => {
    await withClient(o, async (c) => print((await c.call('GET', `/operators/${encodeId(id)}`)).body, o.output));
  });
  connectionOptions(operator.command('create <id>').description('create an operator (it has no rights until a role is assigned)').option('--display-name <name>', 'a readable name')).action(
    async (id: string, o: ConnOpts & { displayName?: string }) => {
      await withClient(o, async (c) => print((await c.call('PUT', `/operators/${encodeId(id)}`, o.displayName === undefined ? {} : { displayName: o.displayName })).body, o.output));
    },
  );
  connectionOptions(operator.command('delete <id>').description('delete an operator, its role assignments and (at once) its tokens')).action(async (id: string, o: ConnOpts) => {
    await withClient(o, async (c) => {
      await c.call('DELETE', `/operators/${encodeId(id)}`);
    });
  });
  for (const [name, body, what] of [
    ['enable', { enabled: true }, 'let an operator use its tokens again'],
    ['disable', { enabled: false }, 'refuse every token of an operator until enabled'],
    ['revoke-tokens', { revokeTokens: true }, 'refuse every token issued to an operator so far'],
  ] as const) {
    connectionOptions(operator.command(`${name} <id>`).description(what)).action(async (id: string, o: ConnOpts) => {
      await withClient(o, async (c) => print((await c.call('PATCH', `/operators/${encodeId(id)}`, body)).body, o.output));
    });
  }
  connectionOptions(
    operator
      .command('token <id>')
      .description('mint a bearer token for an operator (printed once; use it with --token or GATEHOUSE_TOKEN, or in an Authorization: Bearer header)')
      .option('--expires-in <seconds>', 'lifetime in seconds (60 to 2592000)', '3600'),
  ).action(async (id: string, o: ConnOpts & { expiresIn: string }) => {
    await withClient(o, async (c) => {
      const t = (await c.call('POST', `/operators/${encodeId(id)}/tokens`, { expiresInSeconds: Number(o.expiresIn) })).body as { token: string; expiresAt: string };
      if (o.output === 'table') process.stdout.write(`${t.token}\n`);
      else print(t, 'json');
    });
  });

  const role = program.command('role').description('role-based access for operators');
  const assignment = role.command('assignment').description('role assignments (like az role assignment)');
  connectionOptions(assignment.command('list').description('list role assignments').option('--assignee <id>', 'only this operator').option('--role <name>', 'only this role')).action(
    async (o: ConnOpts & { assignee?: string; role?: string }) => {
      await withClient(o, async (c) => {
        const q = new URLSearchParams({ ...(o.assignee === undefined ? {} : { assignee: o.assignee }), ...(o.role === undefined ? {} : { role: o.role }) }).toString();
        const rows = ((await c.call('GET', `/roleAssignments${q === '' ? '' : `?${q}`}`)).body as { value: unknown[] }).value;
        print(rows, o.output, ['id', 'principalId', 'roleDefinitionName', 'scope', 'createdAt', 'createdBy']);
      });
    },
  );
  connectionOptions(
    assignment
      .command('create')
      .description('assign a role to an operator')
      .requiredOption('--assignee <id>', 'operator id')
      .requiredOption('--role <name>', "Owner, 'IoT Hub Data Contributor', 'IoT Hub Data Reader', 'IoT Hub Registry Contributor', 'IoT Hub Twin Contributor'")
      .option('--scope <scope>', 'the whole hub', '/'),
  ).action(async (o: ConnOpts & { assignee: string; role: string; scope: string }) => {
    await withClient(o, async (c) => print((await c.call('POST', '/roleAssignments', { assignee: o.assignee, role: o.role, scope: o.scope })).body, o.output));
  });
  connectionOptions(
    assignment.command('delete').description('delete role assignments by id, or by assignee (and role)').option('--ids <id>', 'assignment id').option('--assignee <id>', 'operator id').option('--role <name>', 'role name'),
  ).action(async (o: ConnOpts & { ids?: string; assignee?: string; role?: string }) => {
    await withClient(o, async (c) => {
      if (o.ids === undefined && o.assignee === undefined) throw usage('give --ids or --assignee', 'ArgumentMissing');
      const q = new URLSearchParams({ ...(o.assignee === undefined ? {} : { assignee: o.assignee }), ...(o.role === undefined ? {} : { role: o.role }) }).toString();
      const path = o.ids === undefined ? `/roleAssignments/-${q === '' ? '' : `?${q}`}` : `/roleAssignments/${encodeId(o.ids)}`;
      print(((await c.call('DELETE', path)).body as { value: unknown[] }).value, o.output, ['id', 'principalId', 'roleDefinitionName']);
    });
  });
  connectionOptions(role.command('definition').description('role definitions').command('list').description('list the built-in roles and their actions')).action(async (o: ConnOpts) => {
    await withClient(o, async (c) => {
      const rows = ((await c.call('GET', '/roleDefinitions')).body as { value: Array<{ roleName: string; description: string; actions: string[] }> }).value;
      print(o.output === 'table' ? rows.map((r) => ({ ...r, actions: r.actions.join(', ') })) : rows, o.output, ['roleName', 'description', 'actions']);
    });
  });
}
