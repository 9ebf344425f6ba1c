/**
 * The hub's own TLS identity: the CA that issues its server certificate (a generated development
 * CA, or the operator's via --tls-ca-cert/--tls-ca-key) and the server certificate for the
 * hostname. Kept in the store (keys sealed under the master key) so every node of a cluster
 * serves the same identity; the CA's public certificate is written to <data-dir>/tls/ca.pem for
 * clients to trust. Like everything in the data dir it is the hub user's alone (dir 0700, files
 * 0600): hand a copy to the clients that need it.
 */
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MetaStore } from '../store/ports.js';
import { createDevRootCa, issueServerCertificate, loadCaMaterial, serverCertificateCovers, type CaMaterial } from './dev-ca.js';

export interface ServerTls {
  keyPem: string;
  /**
   * What the listeners send: the leaf and any intermediate CA, never a self-signed root. A client
   * must already trust the root; sending it only changes an untrusting client's error from
   * UNABLE_TO_VERIFY_LEAF_SIGNATURE (what Azure's hubs give) to SELF_SIGNED_CERT_IN_CHAIN.
   */
  chainPem: string;
  caPem: string;
  caFile: string;
  /** What happened at this start, for the log. */
  actions: string[];
}

const CA_CERT = 'tls.ca.cert';
const CA_KEY = 'tls.ca.key';
const SERVER_CERT = 'tls.server.cert';
const SERVER_CHAIN = 'tls.server.chain';
const SERVER_KEY = 'tls.server.key';
/** The folder of the data dir the CA and server certificates are written to. */
export const TLS_DIR = 'tls';

export async function ensureServerTls(
  meta: MetaStore,
  opts: { dataDir: string; hostname: string; renewDays: number; caCertFile?: string; caKeyFile?: string },
): Promise<ServerTls> {
  const actions: string[] = [];
  let ca: CaMaterial | undefined;
  const storedCert = await meta.getMeta(CA_CERT);
  if (opts.caCertFile !== undefined && opts.caKeyFile !== undefined) {
    const given = loadCaMaterial(readFileSync(opts.caCertFile, 'utf8'), readFileSync(opts.caKeyFile, 'utf8'));
    if (storedCert?.trim() !== given.certPem.trim()) {
      await meta.setMeta(CA_CERT, given.certPem);
      await meta.setSecretMeta(CA_KEY, given.keyPem);
      actions.push(`imported the server-issuing CA from ${opts.caCertFile}`);
    }
    ca = given;
  } else if (storedCert !== undefined) {
    const key = await meta.getSecretMeta(CA_KEY);
    if (key === undefined) throw new Error('the stored TLS CA has no key; the database is damaged');
    ca = { certPem: storedCert, keyPem: key };
  } else {
    ca = await createDevRootCa({ commonName: `Gatehouse Development CA ${opts.hostname}` });
    await meta.setMeta(CA_CERT, ca.certPem);
    await meta.setSecretMeta(CA_KEY, ca.keyPem);
    actions.push('created a development root CA');
  }

  let certPem = await meta.getMeta(SERVER_CERT);
  let chainPem = await meta.getMeta(SERVER_CHAIN);
  let keyPem = await meta.getSecretMeta(SERVER_KEY);
  if (
    certPem === undefined ||
    chainPem === undefined ||
    keyPem === undefined ||
    !serverCertificateCovers(certPem, [opts.hostname, 'localhost', '127.0.0.1'], opts.renewDays, ca.certPem)
  ) {
    const issued = await issueServerCertificate(ca, { hostname: opts.hostname });
    certPem = issued.certPem;
    chainPem = issued.chainPem;
    keyPem = issued.keyPem;
    await meta.setMeta(SERVER_CERT, certPem);
    await meta.setMeta(SERVER_CHAIN, chainPem);
    await meta.setSecretMeta(SERVER_KEY, keyPem);
    actions.push(`issued a server certificate for ${opts.hostname}`);
  }

  const dir = join(opts.dataDir, TLS_DIR);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, ca.certPem, { mode: 0o600 });
  writeFileSync(join(dir, 'server.pem'), chainPem, { mode: 0o600 });
  return { keyPem, chainPem: withoutRoots(chainPem), caPem: ca.certPem, caFile, actions };
}

/** The PEM certificates of a chain, less every self-signed one (RFC 8446 4.4.2: the root MAY be omitted). */
export function withoutRoots(chainPem: string): string {
  const pems = chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const kept = pems.filter((pem) => {
    const c = new X509Certificate(pem);
    return !(c.checkIssued(c) && c.verify(c.publicKey));
  });
  return kept.map((p) => `${p}\n`).join('');
}
