/**
 * `--nats-url` into connection options: `nats://[user:password@|token@]host[:port]`, or `tls://...`
 * for TLS (with `--nats-ca` when the server's certificate is not from a public CA); `--nats-creds`
 * names a NATS credentials file (JWT + NKey seed). Secrets leave the URL here, so `server` (what
 * the log shows) never carries them.
 */
import { readFileSync } from 'node:fs';

export interface NatsTarget {
  /** host:port, no credentials: safe to log. */
  server: string;
  tls: boolean;
  user?: string;
  pass?: string;
  token?: string;
}

export class NatsUrlError extends Error {}

/** Checks and splits a NATS URL; the thrown message never repeats a credential. */
export function parseNatsUrl(raw: string): NatsTarget {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new NatsUrlError('nats-url is not a URL (nats://host:4222 or tls://host:4222)');
  }
  const scheme = u.protocol.replace(/:$/, '');
  if (scheme !== 'nats' && scheme !== 'tls') throw new NatsUrlError(`nats-url must start with nats:// or tls:// (not ${scheme}://)`);
  if (u.hostname === '') throw new NatsUrlError('nats-url has no host');
  if ((u.pathname !== '' && u.pathname !== '/') || u.search !== '' || u.hash !== '') throw new NatsUrlError('nats-url takes no path, query or fragment');
  const port = u.port === '' ? 4222 : Number(u.port);
  const out: NatsTarget = { server: `${u.hostname}:${port}`, tls: scheme === 'tls' };
  const user = decodeURIComponent(u.username);
  const pass = decodeURIComponent(u.password);
  if (user !== '' && pass !== '') {
    out.user = user;
    out.pass = pass;
  } else if (user !== '') {
    out.token = user;
  } else if (pass !== '') {
    throw new NatsUrlError('nats-url has a password but no user');
  }
  return out;
}

/** The URL with any user, password or token removed, for logs and state files. */
export function redactNatsUrl(raw: string): string {
  try {
    const t = parseNatsUrl(raw);
    return `${t.tls ? 'tls' : 'nats'}://${t.server}`;
  } catch {
    return '(invalid nats-url)';
  }
}

/** Reads a creds file, or says clearly why not (without its content). */
export function readCredsFile(file: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new NatsUrlError(`nats-creds ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!text.includes('-----BEGIN NATS USER JWT-----') || !text.includes('-----BEGIN USER NKEY SEED-----')) {
    throw new NatsUrlError(`nats-creds ${file} is not a NATS credentials file (a user JWT and an NKey seed)`);
  }
  return new TextEncoder().encode(text);
}
