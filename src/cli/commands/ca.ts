/** `gatehouse ca ...`: X.509 CA certificates and proof of possession, like `az iot hub certificate`. */
import { readFileSync, writeFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { print } from '../output.js';
import { encodeId } from '../rest-client.js';
import { connectionOptions, withClient, type ConnOpts } from './common.js';
import { usage } from '../errors.js';

const COLUMNS = ['name', 'subject', 'thumbprint', 'isVerified', 'expiry'];

interface CertificateJson {
  name: string;
  etag: string;
  properties: Record<string, unknown>;
}

interface CaOpts extends ConnOpts {
  name: string;
  cert?: string;
  verified?: boolean;
  etag?: string;
}

interface CreateOpts extends CaOpts {
  parent?: string;
  alg?: string;
  validityDays?: number;
  commonName?: string;
}

/** Commander parser for a whole positive number. */
export function positiveInt(v: string): number {
  if (!/^[1-9]\d{0,5}$/.test(v)) throw new InvalidArgumentError('expected a positive whole number');
  return Number(v);
}

/** One flat row: name, etag and the properties. */
function row(c: CertificateJson): Record<string, unknown> {
  return { name: c.name, etag: c.etag, ...c.properties };
}

function readCert(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw usage(`${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'FileUnreadable');
  }
}

function nameOption(cmd: Command): Command {
  return cmd.requiredOption('-n, --name <name>', 'certificate name (1-64 of A-Z a-z 0-9 _ . -)');
}

function ifMatch(o: CaOpts): Record<string, string> {
  return o.etag === undefined ? {} : { 'if-match': `"${o.etag}"` };
}

const path = (name: string, suffix = ''): string => `/certificates/${encodeId(name)}${suffix}`;

export function registerCa(program: Command): void {
  const ca = program.command('ca').description('X.509 CA certificates for CA-signed devices');

  connectionOptions(nameOption(ca.command('add').description('upload a CA certificate (public part only)')))
    .requiredOption('--cert <file>', 'PEM or base64 DER certificate file')
    .option('--verified', 'mark it verified on upload, skipping proof of possession (the operator vouches)')
    .action(async (o: CaOpts) => {
      const properties: Record<string, unknown> = { certificate: readCert(o.cert ?? '') };
      if (o.verified === true) properties.isVerified = true;
      const res = await withClient(o, (c) => c.call('PUT', path(o.name), { properties }));
      print(row(res.body as CertificateJson), o.output, COLUMNS);
    });

  connectionOptions(nameOption(ca.command('verification-code').description('generate a proof-of-possession code')))
    .option('--etag <etag>', 'only if the certificate still has this etag')
    .action(async (o: CaOpts) => {
      const res = await withClient(o, (c) => c.call('POST', path(o.name, '/generateVerificationCode'), undefined, ifMatch(o)));
      print(row(res.body as CertificateJson), o.output, ['name', 'verificationCode', 'etag']);
    });

  connectionOptions(nameOption(ca.command('verify').description('verify with a certificate whose CN is the code, signed by the CA key')))
    .requiredOption('--cert <file>', 'the verification certificate (PEM)')
    .option('--etag <etag>', 'only if the certificate still has this etag')
    .action(async (o: CaOpts) => {
      const body = { certificate: readCert(o.cert ?? '') };
      const res = await withClient(o, (c) => c.call('POST', path(o.name, '/verify'), body, ifMatch(o)));
      print(row(res.body as CertificateJson), o.output, COLUMNS);
    });

  connectionOptions(nameOption(ca.command('create').description('create a CA whose key the hub holds (root, or intermediate with --parent); registered verified')))
    .option('--parent <name>', 'a hub-held CA to sign this one (an intermediate); default: a self-signed root')
    .addOption(new Option('--alg <alg>', 'key algorithm').choices(['p256', 'p384', 'rsa2048', 'rsa3072', 'rsa4096']))
    .option('--validity-days <days>', 'validity in days (default 3650 for a root, 1825 for an intermediate)', positiveInt)
    .option('--common-name <cn>', 'subject CN (default: the name)')
    .action(async (o: CreateOpts) => {
      const body: Record<string, unknown> = { name: o.name };
      if (o.parent !== undefined) body.parent = o.parent;
      if (o.alg !== undefined) body.alg = o.alg;
      if (o.validityDays !== undefined) body.validityDays = o.validityDays;
      if (o.commonName !== undefined) body.commonName = o.commonName;
      const res = await withClient(o, (c) => c.call('POST', '/certificateAuthorities', body));
      print(row(res.body as CertificateJson), o.output, COLUMNS);
    });

  connectionOptions(nameOption(ca.command('export-key').description('export the private key of a hub-held CA (PKCS#8 PEM); logged as a warning')))
    .requiredOption('--out <file>', 'where to write the key (created with mode 0600, never overwritten)')
    .requiredOption('--yes-export-private-key', 'confirm: the key leaves the hub and anyone holding the file can sign devices')
    .action(async (o: CaOpts & { out: string }) => {
      const res = await withClient(o, (c) => c.call('POST', path(o.name).replace('/certificates/', '/certificateAuthorities/') + '/exportKey', { confirm: o.name }));
      writeFileSync(o.out, (res.body as { privateKey: string }).privateKey, { mode: 0o600, flag: 'wx' });
      print({ name: o.name, file: o.out }, o.output, ['name', 'file']);
    });

  connectionOptions(ca.command('list').description('list the CA certificates')).action(async (o: CaOpts) => {
    const res = await withClient(o, (c) => c.call('GET', '/certificates'));
    print((res.body as { value: CertificateJson[] }).value.map(row), o.output, COLUMNS);
  });

  connectionOptions(nameOption(ca.command('show').description('show a CA certificate'))).action(async (o: CaOpts) => {
    const res = await withClient(o, (c) => c.call('GET', path(o.name)));
    print(row(res.body as CertificateJson), o.output, COLUMNS);
  });

  connectionOptions(nameOption(ca.command('delete').description('delete a CA certificate')))
    .option('--etag <etag>', 'only if the certificate still has this etag')
    .action(async (o: CaOpts) => {
      await withClient(o, (c) => c.call('DELETE', path(o.name), undefined, { 'if-match': `"${o.etag ?? '*'}"` }));
    });
}
