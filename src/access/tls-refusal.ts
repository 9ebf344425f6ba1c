/**
 * What a failed TLS handshake on a listener was, as a security event's reason: OpenSSL's own
 * words (`unsupported protocol`, `no shared cipher`, `wrong version number`, ...) and a bounded
 * code. A client that simply went away mid-handshake (a reset, a TCP health check) is not a
 * refusal and gives nothing.
 */
import type { AuthFailureCode } from '../core/security-events.js';

export interface TlsRefusal {
  reason: string;
  code: Extract<AuthFailureCode, 'tls_version' | 'tls_cipher' | 'tls_handshake'>;
}

/** The client offered only protocol versions the hub does not accept (minTlsVersion). */
const VERSION = new Set(['ERR_SSL_UNSUPPORTED_PROTOCOL', 'ERR_SSL_VERSION_TOO_LOW', 'ERR_SSL_NO_PROTOCOLS_AVAILABLE']);
/** The client and the hub have no cipher suite (or signature algorithm) in common. */
const CIPHER = new Set(['ERR_SSL_NO_SHARED_CIPHER', 'ERR_SSL_NO_CIPHERS_AVAILABLE', 'ERR_SSL_NO_SHARED_SIGNATURE_ALGORITHMS']);

export function tlsRefusal(err: Error & { code?: string; reason?: string }): TlsRefusal | undefined {
  const code = err.code ?? '';
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return { reason: 'TLS handshake refused: not completed in time', code: 'tls_handshake' };
  if (!code.startsWith('ERR_SSL_')) return undefined;
  const what = (typeof err.reason === 'string' && err.reason !== '' ? err.reason : code.slice('ERR_SSL_'.length).toLowerCase().replace(/_/g, ' ')).slice(0, 200);
  return { reason: `TLS handshake refused: ${what}`, code: VERSION.has(code) ? 'tls_version' : CIPHER.has(code) ? 'tls_cipher' : 'tls_handshake' };
}
