/** `gatehouse cert ...`: device certificates signed by a hub-held CA (the device CA, `ca create`). */
import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { print } from '../output.js';
import { encodeId } from '../rest-client.js';
import { positiveInt } from './ca.js';
import { connectionOptions, withClient, type ConnOpts } from './common.js';
import { usage } from '../errors.js';

const COLUMNS = ['serial', 'caName', 'deviceId', 'notAfter', 'thumbprint', 'revokedAt'];

interface SignOpts extends ConnOpts {
  ca: string;
  csr: string;
  device: string;
  validityDays?: number;
  out?: string;
}

interface ListOpts extends ConnOpts {
  ca?: string;
  device?: string;
}

interface RevokeOpts extends ConnOpts {
  ca?: string;
  serial?: string;
  device?: string;
  reason?: string;
}

interface SignResult {
  serial: string;
  certificate: string;
  chain: string;
  notAfter: string;
  thumbprint: string;
}

export function registerCert(program: Command): void {
  const cert = program.command('cert').description('device certificates signed by a CA the hub holds');

  connectionOptions(cert.command('sign').description('sign a device CSR (PEM); the CSR subject CN must be the device id'))
    .requiredOption('--ca <name>', 'the hub-held CA to sign with')
    .requiredOption('--csr <file>', 'PKCS#10 certificate request, PEM')
    .requiredOption('--device <id>', 'the device id (the certificate subject CN)')
    .option('--validity-days <days>', 'validity in days (default 365, capped at the CA)', positiveInt)
    .option('--out <file>', 'write the chain (leaf first, up to the root) to this file instead of printing it')
    .action(async (o: SignOpts) => {
      let csr: string;
      try {
        csr = readFileSync(o.csr, 'utf8');
      } catch (err) {
        throw usage(`--csr ${o.csr}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'FileUnreadable');
      }
      const body: Record<string, unknown> = { csr, deviceId: o.device };
      if (o.validityDays !== undefined) body.validityDays = o.validityDays;
      const res = await withClient(o, (c) => c.call('POST', `/certificateAuthorities/${encodeId(o.ca)}/sign`, body));
      const issued = res.body as SignResult;
      if (o.out !== undefined) {
        writeFileSync(o.out, issued.chain);
        print({ serial: issued.serial, notAfter: issued.notAfter, thumbprint: issued.thumbprint, file: o.out }, o.output, ['serial', 'notAfter', 'thumbprint', 'file']);
        return;
      }
      print(issued as unknown as Record<string, unknown>, o.output, ['serial', 'notAfter', 'thumbprint']);
    });

  connectionOptions(cert.command('list').description('list issued device certificates'))
    .option('--ca <name>', 'only this CA (default: every hub-held CA)')
    .option('--device <id>', 'only this device')
    .action(async (o: ListOpts) => {
      const query = o.device === undefined ? '' : `?deviceId=${encodeURIComponent(o.device)}`;
      const rows = await withClient(o, async (c) => {
        let names: string[];
        if (o.ca !== undefined) names = [o.ca];
        else {
          const all = await c.call('GET', '/certificates');
          names = (all.body as { value: Array<{ name: string }> }).value.map((x) => x.name);
        }
        const out: Record<string, unknown>[] = [];
        for (const name of names) {
          const res = await c.call('GET', `/certificateAuthorities/${encodeId(name)}/issued${query}`);
          out.push(...(res.body as { value: Record<string, unknown>[] }).value);
        }
        return out;
      });
      print(rows, o.output, COLUMNS);
    });

  connectionOptions(cert.command('revoke').description('revoke an issued certificate by serial, or every unrevoked certificate of a device'))
    .option('--serial <hex>', 'the certificate serial (hex)')
    .option('--device <id>', "revoke all of this device's unrevoked certificates")
    .option('--reason <reason>', 'unspecified, keyCompromise, cACompromise, affiliationChanged, superseded or cessationOfOperation', 'unspecified')
    .option('--ca <name>', 'the issuing CA (default: every hub-held CA)')
    .action(async (o: RevokeOpts) => {
      if ((o.serial === undefined) === (o.device === undefined)) throw usage('give exactly one of --serial or --device');
      const body: Record<string, unknown> = o.serial !== undefined ? { serial: o.serial, reason: o.reason } : { deviceId: o.device, reason: o.reason };
      const rows = await withClient(o, async (c) => {
        let names: string[];
        if (o.ca !== undefined) names = [o.ca];
        else {
          const all = await c.call('GET', '/certificates');
          names = (all.body as { value: Array<{ name: string }> }).value.map((x) => x.name);
        }
        const out: Record<string, unknown>[] = [];
        let lastError: unknown;
        for (const name of names) {
          try {
            const res = await c.call('POST', `/certificateAuthorities/${encodeId(name)}/revoke`, body);
            out.push(...(res.body as { value: Record<string, unknown>[] }).value);
          } catch (err) {
            // Without --ca, a serial belongs to one CA only; the others do not know it.
            if (o.ca !== undefined) throw err;
            lastError = err;
          }
        }
        if (o.serial !== undefined && out.length === 0 && lastError !== undefined) throw lastError;
        return out;
      });
      print(rows, o.output, COLUMNS);
    });
}
