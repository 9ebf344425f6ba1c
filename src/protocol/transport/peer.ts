/** What a TLS peer presented, read the same way by every listener (MQTT, AMQP, HTTPS, DPS, EST). */
import { X509Certificate } from 'node:crypto';
import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';

/** The certificates the client presented, leaf first (as sent; verification happens later). */
export function peerChain(socket: TLSSocket): X509Certificate[] | undefined {
  const first = socket.getPeerCertificate(true) as DetailedPeerCertificate | Record<string, never>;
  if (first === null || !('raw' in first) || first.raw === undefined) return undefined;
  const chain: X509Certificate[] = [];
  let c: DetailedPeerCertificate | undefined = first as DetailedPeerCertificate;
  const seen = new Set<string>();
  while (c !== undefined && c.raw !== undefined && chain.length < 10) {
    const fp = c.fingerprint256;
    if (seen.has(fp)) break;
    seen.add(fp);
    try {
      chain.push(new X509Certificate(c.raw));
    } catch {
      break;
    }
    c = c.issuerCertificate;
  }
  return chain.length === 0 ? undefined : chain;
}
