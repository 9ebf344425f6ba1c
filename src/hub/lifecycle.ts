/**
 * Where a node is in its life, for a load balancer's readiness probe (`GET /health/ready`):
 * `starting` until every listener is open, `ready`, then `draining` from the moment it is asked to
 * stop (it takes no new work; the balancer should send new devices elsewhere), and `stopped`.
 */
export type Phase = 'starting' | 'ready' | 'draining' | 'stopped';

export class Lifecycle {
  #phase: Phase = 'starting';

  get phase(): Phase {
    return this.#phase;
  }

  /** Moves forward only: a draining node never becomes ready again. */
  advance(to: Phase): void {
    const order: Phase[] = ['starting', 'ready', 'draining', 'stopped'];
    if (order.indexOf(to) > order.indexOf(this.#phase)) this.#phase = to;
  }
}
