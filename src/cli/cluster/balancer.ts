/**
 * A TCP load balancer for a local cluster (`gatehouse cluster`): what HAProxy's `mode tcp` or a
 * cloud network load balancer does in front of real nodes, small enough for a developer's machine
 * and for tests. TLS passes through untouched (each node terminates it, so X.509 client
 * certificates reach the hub that checks them). Each new connection goes to the next node in turn;
 * a node that refuses is skipped and left out for a few seconds, so when a node dies its devices'
 * reconnects land on the others.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface BalancerOptions {
  /** The address clients connect to. */
  address: string;
  ports: number[];
  /** Node addresses; each listens on the same ports. */
  backends: string[];
  /** How long a node that refused a connection is skipped (default 3 s). */
  downMs?: number;
  /** How long a connect to a node may take (default 2 s). */
  connectTimeoutMs?: number;
}

export class TcpBalancer {
  readonly #servers: Server[] = [];
  readonly #sockets = new Set<Socket>();
  readonly #downUntil = new Map<string, number>();
  #next = 0;

  constructor(readonly opts: BalancerOptions) {}

  async listen(): Promise<void> {
    for (const port of this.opts.ports) {
      const server = createServer((client) => this.#accept(client, port));
      this.#servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, this.opts.address, () => {
          server.off('error', reject);
          resolve();
        });
      });
    }
  }

  /** Stops listening and cuts every proxied connection. */
  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await Promise.all(this.#servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  /** Nodes in the order this connection tries them: the next in turn first, nodes marked down last. */
  #order(): string[] {
    const n = this.opts.backends.length;
    const start = this.#next++ % n;
    const turn = Array.from({ length: n }, (_, i) => this.opts.backends[(start + i) % n]!);
    const now = Date.now();
    const up = turn.filter((b) => (this.#downUntil.get(b) ?? 0) <= now);
    return [...up, ...turn.filter((b) => !up.includes(b))];
  }

  #accept(client: Socket, port: number): void {
    this.#track(client);
    client.pause();
    client.on('error', () => client.destroy());
    const candidates = this.#order();
    const attempt = (i: number) => {
      const host = candidates[i];
      if (host === undefined || client.destroyed) {
        client.destroy();
        return;
      }
      const upstream = connect({ host, port, timeout: this.opts.connectTimeoutMs ?? 2000 });
      const fail = () => {
        upstream.destroy();
        this.#downUntil.set(host, Date.now() + (this.opts.downMs ?? 3000));
        attempt(i + 1);
      };
      upstream.once('timeout', fail);
      upstream.once('error', fail);
      upstream.once('connect', () => {
        upstream.off('timeout', fail);
        upstream.off('error', fail);
        upstream.setTimeout(0);
        this.#track(upstream);
        upstream.on('error', () => client.destroy());
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    attempt(0);
  }

  #track(s: Socket): void {
    this.#sockets.add(s);
    s.once('close', () => this.#sockets.delete(s));
  }
}
