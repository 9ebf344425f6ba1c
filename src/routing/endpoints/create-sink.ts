/**
 * The one place that picks a sink for an endpoint type. Building a sink checks its config and
 * throws EndpointConfigError (synchronously, with every problem named) before anything connects;
 * a sink connects on its first deliver. `checkEndpoint` runs the same checks without building
 * one, for the REST and CLI edges to refuse a bad endpoint before it is saved.
 */
import { createFileSink } from './file-sink.js';
import { createNatsSink } from './nats-sink.js';
import { createPostgresSink } from './postgres-sink.js';
import { createRabbitMqSink } from './rabbitmq-sink.js';
import type { AnyEndpoint } from '../routing-config.js';
import type { EndpointSink } from './sink.js';
import type { SinkDeps } from './sink-deps.js';
import { createWebhookSink } from './webhook-sink.js';

export function createSink(endpoint: AnyEndpoint, deps: SinkDeps): EndpointSink {
  switch (endpoint.type) {
    case 'webhooks':
      return createWebhookSink(endpoint.config, deps);
    case 'natsJetStream':
      return createNatsSink(endpoint.config, deps);
    case 'postgresTables':
      return createPostgresSink(endpoint.config, deps);
    case 'rabbitMqExchanges':
      return createRabbitMqSink(endpoint.config, deps);
    case 'files':
      return createFileSink(endpoint.config, deps);
  }
}

/** Throws EndpointConfigError when createSink would; connects to nothing. */
export function checkEndpoint(endpoint: AnyEndpoint, hubName: string): void {
  // Building a sink opens nothing (connections wait for the first deliver), so this is the check itself.
  const sink = createSink(endpoint, { hubName });
  void sink.close();
}
