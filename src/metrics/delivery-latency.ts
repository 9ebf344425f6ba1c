/**
 * `gatehouse_routing_delivery_latency_seconds`: the delivery latencies the edges counted
 * (core/delivery-latency.ts) as a Prometheus histogram.
 */
import { DELIVERY_LATENCY_BUCKETS, type DeliveryLatency } from '../core/delivery-latency.js';

interface MetricValue {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

/**
 * The histogram as prom-client's registry reads a metric (`get()`), with cumulative buckets. A
 * node's primary sums the workers' values (`aggregator: 'sum'`, value by value).
 */
export function deliveryLatencyMetric(name: string, source: DeliveryLatency) {
  return {
    name,
    help: "Time from a device message's enqueue in the event log to its delivery on an endpoint (built-in: the transfer to an Event Hubs reader; custom: the endpoint's acknowledgement), by endpoint.",
    type: 'histogram' as const,
    aggregator: 'sum' as const,
    get(): Promise<{ name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: MetricValue[] }> {
      const values: MetricValue[] = [];
      for (const s of source.all()) {
        const labels = { endpoint: s.endpoint, endpoint_type: s.type };
        let acc = 0;
        DELIVERY_LATENCY_BUCKETS.forEach((le, i) => {
          acc += s.counts[i] as number;
          values.push({ metricName: `${name}_bucket`, labels: { ...labels, le }, value: acc });
        });
        values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: s.count });
        values.push({ metricName: `${name}_sum`, labels, value: s.sumMs / 1000 });
        values.push({ metricName: `${name}_count`, labels, value: s.count });
      }
      return Promise.resolve({ name, help: this.help, type: this.type, aggregator: this.aggregator, values });
    },
    /** The registry's resetMetrics(): the counts are the edges'; nothing to drop here. */
    reset(): void {},
  };
}
