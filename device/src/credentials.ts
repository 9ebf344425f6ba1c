/**
 * The device's X.509 credential: what the factory line left on the device (its bundle), checks a
 * person gets clear messages from before a bad certificate is saved, and renewal over EST
 * (RFC 7030 simplereenroll: a new key and CSR, authenticated by the current certificate as the
 * TLS client certificate, so the hub needs no other secret to renew).
 */
import { createPrivateKey, X509Certificate, type webcrypto } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { isIP } from 'node:net';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(globalThis.crypto);

/** What `gatehouse factory run` wrote for this device (devices/<id>/ in its output). */
export interface FactoryBundle {
  registrationId: string;
  idScope: string;
  provisioningHost: string;
  enrollmentGroupId: string;
  chainPem: string;
  keyPem: string;
}

export function readFactoryBundle(dir: string): FactoryBundle {
  const file = join(dir, 'bundle.json');
  if (!existsSync(file)) throw new Error(`no factory bundle at ${file}`);
  const b = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  const need = (k: string): string => {
    const v = b[k];
    if (typeof v !== 'string' || v === '') throw new Error(`the factory bundle ${file} has no ${k}`);
    return v;
  };
  return {
    registrationId: need('registrationId'),
    idScope: need('idScope'),
    provisioningHost: need('provisioningHost'),
    enrollmentGroupId: need('enrollmentGroupId'),
    chainPem: readFileSync(join(dir, need('chain')), 'utf8'),
    keyPem: readFileSync(join(dir, need('key')), 'utf8'),
  };
}

export interface CertificateSummary {
  subject: string;
  commonName: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  thumbprint: string;
}

/** The leaf (first certificate) of a PEM chain, summarized for the page, the status and the twin. */
export function summarize(chainPem: string): CertificateSummary {
  const leaf = new X509Certificate(chainPem);
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(leaf.subject)?.[1] ?? '';
  return {
    subject: leaf.subject.replace(/\n/g, ', '),
    commonName: cn,
    issuer: leaf.issuer.replace(/\n/g, ', '),
    serial: leaf.serialNumber.toLowerCase(),
    notBefore: new Date(leaf.validFrom).toISOString(),
    notAfter: new Date(leaf.validTo).toISOString(),
    thumbprint: leaf.fingerprint256.replace(/:/g, ''),
  };
}

/**
 * Problems with an X.509 credential a person pasted or the factory left, in words they can act
 * on: not PEM, key not matching, expired, or a registration id that is not the certificate's CN
 * (DPS takes the registration id from the CN).
 */
export function checkX509(chainPem: string, keyPem: string, registrationId: string, now = Date.now()): Array<{ field: 'certPem' | 'keyPem' | 'registrationId'; message: string }> {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chainPem);
  } catch {
    return [{ field: 'certPem', message: 'the certificate chain is not a PEM certificate' }];
  }
  const problems: Array<{ field: 'certPem' | 'keyPem' | 'registrationId'; message: string }> = [];
  if (Date.parse(leaf.validTo) < now) problems.push({ field: 'certPem', message: `the certificate expired on ${new Date(leaf.validTo).toISOString()}` });
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) problems.push({ field: 'keyPem', message: 'the private key does not belong to the certificate' });
  } catch {
    problems.push({ field: 'keyPem', message: 'the private key is not a PEM private key' });
  }
  const cn = summarize(chainPem).commonName;
  if (registrationId !== '' && cn !== registrationId) problems.push({ field: 'registrationId', message: `the registration id must be the certificate's common name (${cn})` });
  return problems;
}

export class EstRenewalError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * simplereenroll: a fresh P-256 key and a CSR with the same subject, sent over TLS with the
 * current certificate as the client certificate. Returns the new chain (the new leaf followed by
 * the current chain's CA certificates) and the new key.
 */
export async function reenroll(opts: { url: string; group: string; chainPem: string; keyPem: string; ca?: string }): Promise<{ chainPem: string; keyPem: string }> {
  const cn = summarize(opts.chainPem).commonName;
  const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${cn}`, keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams });
  const body = Buffer.from(Buffer.from(csr.rawData).toString('base64'), 'ascii');
  const url = new URL(`/.well-known/est/${encodeURIComponent(opts.group)}/simplereenroll`, opts.url);
  if (url.protocol !== 'https:') throw new EstRenewalError(0, 'EST renewal needs an https:// URL');
  const text = await new Promise<string>((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port === '' ? 443 : Number(url.port),
        path: url.pathname,
        method: 'POST',
        ...(isIP(url.hostname) === 0 ? { servername: url.hostname } : {}),
        cert: opts.chainPem,
        key: opts.keyPem,
        ...(opts.ca === undefined ? {} : { ca: opts.ca }),
        headers: { 'content-type': 'application/pkcs10', 'content-transfer-encoding': 'base64', 'content-length': String(body.length), 'user-agent': 'gatehouse-gate-controller' },
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const t = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode === 200) resolve(t);
          else reject(new EstRenewalError(res.statusCode ?? 0, `EST simplereenroll answered ${res.statusCode}: ${t.slice(0, 300)}`));
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('EST simplereenroll timed out')));
    req.on('error', reject);
    req.end(body);
  });
  const certs = new x509.X509Certificates(Buffer.from(text.replace(/\s+/g, ''), 'base64'));
  const leaf = certs[0];
  if (leaf === undefined) throw new EstRenewalError(502, 'EST answered without a certificate');
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }).toString();
  const cas = splitPem(opts.chainPem).slice(1);
  return { chainPem: [`${leaf.toString('pem')}\n`, ...cas].join(''), keyPem };
}

export function splitPem(pem: string): string[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((c) => `${c}\n`);
}
