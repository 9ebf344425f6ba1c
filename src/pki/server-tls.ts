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
  /** A new certificate from the same CA for a service of the hub's on 127.0.0.1 (the embedded blob store). */
  issueLoopback(): Promise<{ certPem: string; keyPem: string }>;
}

/** The CA as one sealed record, so a reader never pairs one node's certificate with another's key. */
const CA_RECORD = 'tls.ca';
/** The server certificate for one host name, one sealed record (chain, certificate and key together). */
const serverRecord = (hostname: string) => `tls.server:${hostname.toLowerCase()}`;
/** Where databases from before version 0.1's cluster work keep them (one key per part). */
const LEGACY_CA_CERT = 'tls.ca.cert';
const LEGACY_CA_KEY = 'tls.ca.key';
const LEGACY_SERVER_CERT = 'tls.server.cert';
const LEGACY_SERVER_CHAIN = 'tls.server.chain';
const LEGACY_SERVER_KEY = 'tls.server.key';
/** The folder of the data dir the CA and server certificates are written to. */
export const TLS_DIR = 'tls';

interface ServerRecord {
  certPem: string;
  chainPem: string;
  keyPem: string;
}

function parseRecord<T>(text: string | undefined, fields: readonly (keyof T & string)[]): T | undefined {
  if (text === undefined) return undefined;
  const v = JSON.parse(text) as Record<string, unknown>;
  for (const f of fields) if (typeof v[f] !== 'string') throw new Error('the stored TLS material is damaged');
  return v as T;
}

/**
 * The CA: the operator's (--tls-ca-cert/--tls-ca-key, stored when it differs), the stored one, or
 * a new development CA. Several nodes starting together on an empty database each make one and
 * insert it only where there is none; every node then uses the one that was kept.
 */
async function ensureCa(meta: MetaStore, opts: { hostname: string; caCertFile?: string; caKeyFile?: string }, actions: string[]): Promise<CaMaterial> {
  let stored = parseRecord<CaMaterial>(await meta.getSecretMeta(CA_RECORD), ['certPem', 'keyPem']);
  if (stored === undefined) {
    const cert = await meta.getMeta(LEGACY_CA_CERT);
    if (cert !== undefined) {
      const key = await meta.getSecretMeta(LEGACY_CA_KEY);
      if (key === undefined) throw new Error('the stored TLS CA has no key; the database is damaged');
      stored = { certPem: cert, keyPem: key };
    }
  }
  if (opts.caCertFile !== undefined && opts.caKeyFile !== undefined) {
    const given = loadCaMaterial(readFileSync(opts.caCertFile, 'utf8'), readFileSync(opts.caKeyFile, 'utf8'));
    if (stored?.certPem.trim() !== given.certPem.trim()) {
      await meta.setSecretMeta(CA_RECORD, JSON.stringify({ certPem: given.certPem, keyPem: given.keyPem }));
      actions.push(`imported the server-issuing CA from ${opts.caCertFile}`);
    }
    return given;
  }
  if (stored !== undefined) return stored;
  const made = await createDevRootCa({ commonName: `Gatehouse Development CA ${opts.hostname}` });
  const kept = parseRecord<CaMaterial>(await meta.insertSecretMetaIfAbsent(CA_RECORD, JSON.stringify({ certPem: made.certPem, keyPem: made.keyPem })), ['certPem', 'keyPem']);
  if (kept === undefined) throw new Error('the stored TLS CA vanished');
  if (kept.certPem === made.certPem) actions.push('created a development root CA');
  return kept;
}

export async function ensureServerTls(
  meta: MetaStore,
  opts: { dataDir: string; hostname: string; renewDays: number; caCertFile?: string; caKeyFile?: string },
): Promise<ServerTls> {
  const actions: string[] = [];
  const ca = await ensureCa(meta, opts, actions);
  const names = [opts.hostname, 'localhost', '127.0.0.1'];
  const covers = (r: ServerRecord | undefined): r is ServerRecord => r !== undefined && serverCertificateCovers(r.certPem, names, opts.renewDays, ca.certPem);

  const key = serverRecord(opts.hostname);
  const current = parseRecord<ServerRecord>(await meta.getSecretMeta(key), ['certPem', 'chainPem', 'keyPem']);
  let server: ServerRecord | undefined = covers(current) ? current : undefined;
  if (server === undefined && current === undefined) {
    const cert = await meta.getMeta(LEGACY_SERVER_CERT);
    const chain = await meta.getMeta(LEGACY_SERVER_CHAIN);
    const legacyKey = await meta.getSecretMeta(LEGACY_SERVER_KEY);
    const legacy = cert === undefined || chain === undefined || legacyKey === undefined ? undefined : { certPem: cert, chainPem: chain, keyPem: legacyKey };
    if (covers(legacy)) server = legacy;
  }
  if (server === undefined) {
    const issued = await issueServerCertificate(ca, { hostname: opts.hostname });
    const mine: ServerRecord = { certPem: issued.certPem, chainPem: issued.chainPem, keyPem: issued.keyPem };
    if (current === undefined) {
      // First start of this host name: the certificate a node starting beside us kept, if it did.
      const kept = parseRecord<ServerRecord>(await meta.insertSecretMetaIfAbsent(key, JSON.stringify(mine)), ['certPem', 'chainPem', 'keyPem']);
      server = covers(kept) ? kept : mine;
    } else {
      // Renewal: one whole record written; a node renewing at the same moment writes its own, both valid.
      await meta.setSecretMeta(key, JSON.stringify(mine));
      server = mine;
    }
    if (server === mine) actions.push(`issued a server certificate for ${opts.hostname}`);
  }
  const { chainPem, keyPem } = server;

  const dir = join(opts.dataDir, TLS_DIR);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caFile = join(dir, 'ca.pem');
  writeFileSync(caFile, ca.certPem, { mode: 0o600 });
  writeFileSync(join(dir, 'server.pem'), chainPem, { mode: 0o600 });
  return {
    keyPem,
    chainPem: withoutRoots(chainPem),
    caPem: ca.certPem,
    caFile,
    actions,
    issueLoopback: async () => {
      const issued = await issueServerCertificate(ca, { hostname: '127.0.0.1', validityDays: 30 });
      return { certPem: withoutRoots(issued.chainPem), keyPem: issued.keyPem };
    },
  };
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
