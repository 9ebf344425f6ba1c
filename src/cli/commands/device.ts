/** `gatehouse device ...`, in the manner of `az iot hub device-identity`. */
import { Option, type Command } from 'commander';
import { deviceConnectionString } from '../connection.js';
import { print } from '../output.js';
import { encodeId } from '../rest-client.js';
import { connectionOptions, withClient, type ConnOpts } from './common.js';
import { registerDeviceTransfer } from './device-transfer.js';

const COLUMNS = ['deviceId', 'status', 'connectionState', 'authType', 'etag'];

interface DeviceJson {
  deviceId: string;
  status: string;
  connectionState: string;
  etag: string;
  authentication: { type: string; symmetricKey: { primaryKey: string | null; secondaryKey: string | null } };
  [k: string]: unknown;
}

function row(d: DeviceJson): DeviceJson & { authType: string } {
  return { ...d, authType: d.authentication.type };
}

export const AUTH_METHODS: Record<string, string> = {
  shared_private_key: 'sas',
  x509_thumbprint: 'selfSigned',
  x509_ca: 'certificateAuthority',
};

export interface AuthOpts {
  authMethod?: string;
  primaryKey?: string;
  secondaryKey?: string;
  primaryThumbprint?: string;
  secondaryThumbprint?: string;
}

interface DeviceOpts extends ConnOpts {
  deviceId: string;
  authMethod?: string;
  primaryKey?: string;
  secondaryKey?: string;
  primaryThumbprint?: string;
  secondaryThumbprint?: string;
  status?: string;
  statusReason?: string;
  edgeEnabled?: boolean;
  etag?: string;
  top?: string;
  keyType?: string;
}

/** The authentication object of a device or module from az's flags (undefined: none given). */
export function authFrom(o: AuthOpts): Record<string, unknown> | undefined {
  if (o.authMethod === undefined && o.primaryKey === undefined && o.primaryThumbprint === undefined) return undefined;
  return {
    type: AUTH_METHODS[o.authMethod ?? (o.primaryThumbprint === undefined ? 'shared_private_key' : 'x509_thumbprint')],
    symmetricKey: { primaryKey: o.primaryKey ?? '', secondaryKey: o.secondaryKey ?? '' },
    x509Thumbprint: { primaryThumbprint: o.primaryThumbprint ?? null, secondaryThumbprint: o.secondaryThumbprint ?? null },
  };
}

function idOption(cmd: Command): Command {
  return cmd.requiredOption('-d, --device-id <id>', 'device id');
}

export function registerDevice(program: Command): void {
  const device = program.command('device').alias('device-identity').description('device identities in the registry (az iot hub device-identity)');

  connectionOptions(idOption(device.command('create').description('register a device')))
    .addOption(new Option('--am, --auth-method <method>', 'authentication').choices(Object.keys(AUTH_METHODS)))
    .option('--pk, --primary-key <key>', 'base64 key (generated when omitted)')
    .option('--sk, --secondary-key <key>', 'base64 key (generated when omitted)')
    .option('--ptp, --primary-thumbprint <hex>', 'X.509 thumbprint (SHA-1 or SHA-256)')
    .option('--stp, --secondary-thumbprint <hex>', 'X.509 thumbprint (SHA-1 or SHA-256)')
    .addOption(new Option('--status <status>').choices(['enabled', 'disabled']))
    .option('--status-reason <text>')
    .option('--ee, --edge-enabled', 'IoT Edge device')
    .action(async (o: DeviceOpts) => {
      const body: Record<string, unknown> = { deviceId: o.deviceId };
      const auth = authFrom(o);
      if (auth !== undefined) body.authentication = auth;
      if (o.status !== undefined) body.status = o.status;
      if (o.statusReason !== undefined) body.statusReason = o.statusReason;
      if (o.edgeEnabled === true) body.capabilities = { iotEdge: true };
      const res = await withClient(o, (c) => c.call('PUT', `/devices/${encodeId(o.deviceId)}`, body));
      print(row(res.body as DeviceJson), o.output, COLUMNS);
    });

  connectionOptions(idOption(device.command('show').description('show a device'))).action(async (o: DeviceOpts) => {
    const res = await withClient(o, (c) => c.call('GET', `/devices/${encodeId(o.deviceId)}`));
    print(row(res.body as DeviceJson), o.output, COLUMNS);
  });

  connectionOptions(device.command('list').description('list devices'))
    .option('--top <n>', 'at most this many (max 1000)')
    .action(async (o: DeviceOpts) => {
      const res = await withClient(o, (c) => c.call('GET', `/devices${o.top === undefined ? '' : `?top=${encodeURIComponent(o.top)}`}`));
      print((res.body as DeviceJson[]).map(row), o.output, COLUMNS);
    });

  connectionOptions(idOption(device.command('update').description('change status or credentials')))
    .addOption(new Option('--status <status>').choices(['enabled', 'disabled']))
    .option('--status-reason <text>')
    .addOption(new Option('--am, --auth-method <method>', 'authentication').choices(Object.keys(AUTH_METHODS)))
    .option('--pk, --primary-key <key>')
    .option('--sk, --secondary-key <key>')
    .option('--ptp, --primary-thumbprint <hex>')
    .option('--stp, --secondary-thumbprint <hex>')
    .option('-e, --etag <etag>', 'update only if the device still has this etag')
    .action(async (o: DeviceOpts) => {
      const res = await withClient(o, async (c) => {
        const current = (await c.call('GET', `/devices/${encodeId(o.deviceId)}`)).body as DeviceJson;
        const body: Record<string, unknown> = { ...current };
        if (o.status !== undefined) body.status = o.status;
        if (o.statusReason !== undefined) body.statusReason = o.statusReason;
        const auth = authFrom(o);
        if (auth !== undefined) body.authentication = auth;
        return c.call('PUT', `/devices/${encodeId(o.deviceId)}`, body, { 'if-match': `"${o.etag ?? current.etag}"` });
      });
      print(row(res.body as DeviceJson), o.output, COLUMNS);
    });

  connectionOptions(idOption(device.command('delete').description('delete a device')))
    .option('-e, --etag <etag>', 'delete only if the device still has this etag')
    .action(async (o: DeviceOpts) => {
      await withClient(o, (c) => c.call('DELETE', `/devices/${encodeId(o.deviceId)}`, undefined, { 'if-match': `"${o.etag ?? '*'}"` }));
    });

  connectionOptions(idOption(device.command('connection-string').description("print a device's connection string")))
    .addOption(new Option('--key-type <type>').choices(['primary', 'secondary']).default('primary'))
    .action(async (o: DeviceOpts) => {
      const line = await withClient(o, async (c, hostName) => {
        const d = (await c.call('GET', `/devices/${encodeId(o.deviceId)}`)).body as DeviceJson;
        const key = o.keyType === 'secondary' ? d.authentication.symmetricKey.secondaryKey : d.authentication.symmetricKey.primaryKey;
        return key === null ? `HostName=${hostName};DeviceId=${d.deviceId};x509=true` : deviceConnectionString(hostName, d.deviceId, key);
      });
      if (o.output === 'json') print({ connectionString: line }, 'json', []);
      else process.stdout.write(`${line}\n`);
    });
  registerDeviceTransfer(device);
}
