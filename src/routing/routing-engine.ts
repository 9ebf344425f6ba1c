/**
 * Message routing, assembled (decision 0006): the routing document (RoutingService), evaluation at
 * ingestion (Router, with the twin cache), enrichments (Enricher) and delivery (Dispatch). A routing change on any node
 * reaches each of them here: the router recompiles, the dispatchers follow.
 */
import type { Logger } from 'pino';
import type { HubBus } from '../bus/subjects.js';
import type { Clock } from '../core/clock.js';
import type { EventLog } from '../log/log-ports.js';
import type { DeliveryLatency } from '../core/delivery-latency.js';
import type { CounterStore } from '../store/counter-ports.js';
import type { MetaStore } from '../store/ports.js';
import { Dispatch, type EndpointHealth, type SinkFactory } from './dispatch.js';
import type { DispatchTiming } from './dispatcher.js';
import { Enricher } from './enricher.js';
import { Router, TwinCache, type TwinLookup } from './router.js';
import type { Sealer } from './routing-secrets.js';
import { RoutingService } from './routing-service.js';

export interface RoutingDeps {
  meta: MetaStore;
  box: Sealer;
  bus: HubBus;
  clock: Clock;
  logger: Logger;
  log: EventLog;
  counters: CounterStore;
  twin: TwinLookup;
  sinks: SinkFactory;
  hubName: string;
  /** Where the dispatchers report how long delivery took (gatehouse_routing_delivery_latency_seconds). */
  deliveries?: DeliveryLatency;
  timing?: Partial<DispatchTiming>;
}

export class RoutingEngine {
  readonly service: RoutingService;
  readonly router: Router;
  readonly twins: TwinCache;
  /** Every endpoint's enrichments: the dispatchers' and, through the composition root, the built-in endpoint's readers'. */
  readonly enricher: Enricher;
  readonly dispatch: Dispatch;

  private constructor(d: RoutingDeps) {
    this.service = new RoutingService(d.meta, d.box, d.bus, d.clock, d.logger);
    this.twins = new TwinCache(d.twin, d.bus);
    this.router = new Router(this.service.current.routing, this.twins);
    this.enricher = new Enricher(this.service.current.routing, this.twins, d.hubName);
    this.dispatch = new Dispatch({
      log: d.log,
      counters: d.counters,
      enricher: this.enricher,
      sinks: d.sinks,
      hubName: d.hubName,
      nodeId: d.bus.nodeId,
      now: () => d.clock.now(),
      logger: d.logger,
      ...(d.deliveries === undefined ? {} : { deliveries: d.deliveries }),
      ...(d.timing === undefined ? {} : { timing: d.timing }),
    });
    this.service.onChange((state) => {
      this.router.update(state.routing);
      this.enricher.update(state.routing);
      void this.dispatch.apply(state.routing, state.endpointsSince);
    });
  }

  /** Reads the routing in effect; routes apply to ingestion from now on (delivery waits for start). */
  static async open(d: RoutingDeps): Promise<RoutingEngine> {
    const engine = new RoutingEngine(d);
    const state = await engine.service.load();
    engine.router.update(state.routing);
    engine.enricher.update(state.routing);
    return engine;
  }

  /** Starts delivery to the custom endpoints. */
  start(): Promise<void> {
    return this.dispatch.start(this.service.current.routing, this.service.current.endpointsSince);
  }

  stop(): Promise<void> {
    return this.dispatch.stop();
  }

  health(): Promise<EndpointHealth[]> {
    return this.dispatch.health();
  }
}
