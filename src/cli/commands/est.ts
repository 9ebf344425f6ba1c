/** `gatehouse est credential ...`: factory credentials, each scoped to one enrollment group. */
import type { Command } from 'commander';
import { readFileArg } from '../connection.js';
import { print } from '../output.js';
import { encodeId } from '../rest-client.js';
import { positiveInt } from './ca.js';
import { connectionOptions, withClient, type ConnOpts } from './common.js';

const COLUMNS = ['id', 'enrollmentGroupId', 'registrationIds', 'password', 'clientCertificateThumbprint', 'expiresAt'];

interface CreateOpts extends ConnOpts {
  group: string;
  registrationIds: string[];
  id?: string;
  validityDays?: number;
  clientCert?: string;
  password: boolean;
}

export function registerEst(program: Command): void {
  const est = program.command('est').description('EST (RFC 7030) enrollment: factory credentials');
  const credential = est.command('credential').description('factory credentials: who may enroll devices into an enrollment group over EST');

  connectionOptions(credential.command('create').description('create a factory credential; the password is shown once'))
    .requiredOption('--group <id>', 'the enrollment group it may enroll into (its EST label)')
    .requiredOption(
      '--registration-ids <patterns>',
      "the registration ids it may enroll: comma-separated ids or patterns, * for any run (e.g. 'line-a-*'); repeatable",
      (v: string, prev: string[] = []) => [...prev, ...v.split(',').map((x) => x.trim()).filter((x) => x !== '')],
    )
    .option('--id <id>', 'the credential id, the HTTP basic user name (default: generated)')
    .option('--validity-days <days>', 'days until it expires (default 30, at most 365)', positiveInt)
    .option('--client-cert <file>', "the factory station's TLS client certificate (PEM): it authenticates with it")
    .option('--no-password', 'no HTTP basic password (needs --client-cert)')
    .action(async (o: CreateOpts) => {
      const body: Record<string, unknown> = { enrollmentGroupId: o.group, registrationIds: o.registrationIds, password: o.password };
      if (o.id !== undefined) body.id = o.id;
      if (o.validityDays !== undefined) body.validityDays = o.validityDays;
      if (o.clientCert !== undefined) body.clientCertificate = readFileArg(o.clientCert, '--client-cert');
      const res = await withClient(o, (c) => c.call('POST', '/est/credentials', body));
      print(res.body as Record<string, unknown>, o.output, ['id', 'registrationIds', 'password', 'expiresAt']);
    });

  connectionOptions(credential.command('list').description('list factory credentials (never their passwords)'))
    .option('--group <id>', 'only this enrollment group')
    .action(async (o: ConnOpts & { group?: string }) => {
      const q = o.group === undefined ? '' : `?enrollmentGroupId=${encodeURIComponent(o.group)}`;
      const res = await withClient(o, (c) => c.call('GET', `/est/credentials${q}`));
      print((res.body as { value: Record<string, unknown>[] }).value, o.output, COLUMNS);
    });

  connectionOptions(credential.command('delete').description('delete a factory credential: it stops working at once'))
    .argument('<id>', 'the credential id')
    .action(async (id: string, o: ConnOpts) => {
      await withClient(o, (c) => c.call('DELETE', `/est/credentials/${encodeId(id)}`));
    });
}
