/** What a TLS peer presented, read the same way by every listener (MQTT, AMQP, HTTPS, DPS, EST). */
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';

/**
 * The certificates the client presented, leaf first (as sent; verification happens later).
 * Read as X509Certificate objects straight from the socket (their `issuerCertificate` links the
 * chain): `getPeerCertificate(true)` parsed every certificate into a plain object first, which we
 * parsed again, about 50 µs of each X.509 connect (issue 19, item 4).
 */
export function peerChain(socket: TLSSocket): X509Certificate[] | undefined {
  const chain: X509Certificate[] = [];
  const seen = new Set<string>();
  let c: X509Certificate | undefined = socket.getPeerX509Certificate();
  while (c !== undefined && chain.length < 10) {
    const fp = c.fingerprint256;
    if (seen.has(fp)) break;
    seen.add(fp);
    chain.push(c);
    c = c.issuerCertificate;
  }
  return chain.length === 0 ? undefined : chain;
}
