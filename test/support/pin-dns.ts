/**
 * Preload for cluster tests (`node --import`): every node of a test cluster has the same hostname,
 * as nodes behind a load balancer do, and this resolves that name to one node's address, as a load
 * balancer that sent this client to that node would. The SDKs, TLS (SNI, certificate name) and SAS
 * audiences all see the cluster's name; only the socket goes to the pinned node.
 *
 *   GATEHOUSE_TEST_PIN=hub.cluster.test=127.0.30.2
 */
import dns from 'node:dns';

const pin = process.env.GATEHOUSE_TEST_PIN;
if (pin !== undefined && pin.includes('=')) {
  const [name, address] = pin.split('=') as [string, string];
  const original = dns.lookup.bind(dns);
  const pinned = ((hostname: string, options: unknown, callback?: unknown) => {
    const cb = (typeof options === 'function' ? options : callback) as (...args: unknown[]) => void;
    const opts = (typeof options === 'object' && options !== null ? options : {}) as dns.LookupOptions;
    if (hostname.toLowerCase() !== name) return (original as (...a: unknown[]) => void)(hostname, options, callback);
    process.nextTick(() => (opts.all === true ? cb(null, [{ address, family: 4 }]) : cb(null, address, 4)));
  }) as typeof dns.lookup;
  dns.lookup = pinned;
}
