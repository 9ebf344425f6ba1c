/**
 * The RabbitMQ (AMQP 0-9-1) exchange endpoint, on amqplib (the AMQP 0-9-1 client most Node
 * programs use, maintained, no dependencies, its own type definitions, publisher confirms as a
 * ConfirmChannel).
 *
 * Each message is published to the exchange (which the user declares and binds: its type and
 * queues are theirs) with the routing key of the config (`{deviceId}` replaced), `persistent`
 * (delivery mode 2: a durable queue keeps it across a broker restart), `mandatory`, and the
 * record's identity: `messageId` `<hub>/<partition>/<sequenceNumber>` (the same on every
 * redelivery, for consumers that dedupe), `contentType`/`contentEncoding`/`correlationId` from
 * its system properties, `timestamp` its enqueued time, `appId` `gatehouse`, and its properties
 * as headers (envelope.ts `messageHeaders`; AMQP tables take any string, so no encoding).
 *
 * Deliver resolves when the broker has confirmed every message of the batch (publisher confirms:
 * persisted to disk for a durable queue). A message the broker returns as unroutable (no queue
 * bound for its key) rejects the deliver: it would otherwise be confirmed and dropped, and the
 * endpoint would report messages delivered that no one holds. A nack rejects too.
 *
 * Connection recovery: the connection and channel are made on the first deliver; when either
 * closes (broker restart, network, a channel error) they are dropped, and the next deliver opens
 * new ones (the dispatcher retries with backoff). Publishes of a batch are pipelined on the one
 * channel, which keeps their order.
 */
import { once } from 'node:events';
import amqp from 'amqplib';
import { rabbitMqExchangeEndpoint, type RabbitMqExchangeEndpoint } from '../routing-config.js';
import { configError, parseEndpointConfig } from './config-check.js';
import { messageHeaders, reasonOf, recordId, redact } from './envelope.js';
import type { EndpointSink, RoutedMessage } from './sink.js';
import { timeoutOf, withTimeout, type SinkDeps } from './sink-deps.js';

interface Open {
  conn: amqp.ChannelModel;
  channel: amqp.ConfirmChannel;
  /** Message ids the broker returned as unroutable since the channel opened. */
  returned: Set<string>;
  /** Why the channel or connection closed, once it did. */
  broken?: string;
}

function checkConfig(raw: RabbitMqExchangeEndpoint): { config: RabbitMqExchangeEndpoint; url: URL } {
  const config = parseEndpointConfig(rabbitMqExchangeEndpoint, raw, 'rabbitMqExchanges');
  const problem = (p: string) => configError('rabbitMqExchanges', config.name, p);
  let url: URL;
  try {
    url = new URL(config.url);
  } catch {
    throw problem('url is not a URL');
  }
  if (url.hostname === '') throw problem('url names no host');
  const unknown = config.routingKey.match(/\{[^}]*\}/g)?.filter((t) => t !== '{deviceId}') ?? [];
  if (unknown.length > 0) throw problem(`routingKey may use {deviceId} only (found ${unknown.join(', ')})`);
  if (config.exchange.startsWith('amq.') && config.exchange !== 'amq.topic' && config.exchange !== 'amq.direct' && config.exchange !== 'amq.fanout' && config.exchange !== 'amq.headers') {
    throw problem(`exchange '${config.exchange}' is reserved by the broker`);
  }
  return { config, url };
}

export function createRabbitMqSink(raw: RabbitMqExchangeEndpoint, deps: SinkDeps): EndpointSink {
  const { config, url } = checkConfig(raw);
  const where = `rabbitMqExchanges '${config.name}' (${url.protocol}//${url.host}${url.pathname === '' ? '/' : url.pathname}, exchange ${config.exchange})`;
  const secrets = [decodeURIComponent(url.password), url.password];
  const timeoutMs = timeoutOf(deps);
  let current: Open | undefined;
  let opening: Promise<Open> | undefined;
  let closed = false;

  const missing = `exchange '${config.exchange}' does not exist (declare it and bind a queue)`;
  const fail = (reason: string): Error => new Error(redact(`${where}: ${/\b404\b|NOT_FOUND - no exchange/.test(reason) ? missing : reason}`, secrets));

  async function connect(): Promise<Open> {
    const conn = await amqp.connect(config.url, { timeout: timeoutMs, clientProperties: { connection_name: `gatehouse-route-${config.name}` } });
    const state: Open = { conn, channel: undefined as unknown as amqp.ConfirmChannel, returned: new Set() };
    const drop = (why: string): void => {
      state.broken ??= why;
      if (current === state) current = undefined;
    };
    conn.on('error', (err: Error) => drop(`connection failed: ${reasonOf(err)}`));
    conn.on('close', () => drop('the connection closed'));
    try {
      state.channel = await conn.createConfirmChannel();
      state.channel.on('error', (err: Error) => drop(reasonOf(err)));
      state.channel.on('close', () => {
        drop('the channel closed');
        void conn.close().catch(() => undefined);
      });
      state.channel.on('return', (msg: amqp.Message) => {
        const id = msg.properties.messageId as unknown;
        if (typeof id === 'string') state.returned.add(id);
      });
      await state.channel.checkExchange(config.exchange);
    } catch (err) {
      await conn.close().catch(() => undefined);
      throw err;
    }
    return state;
  }

  async function open(): Promise<Open> {
    if (current !== undefined && current.broken === undefined) return current;
    if (opening !== undefined) return opening;
    const attempt = connect();
    // A connection that comes up after its deliver gave up is closed, not kept.
    const abandon = (): void => void attempt.then((late) => late.conn.close()).catch(() => undefined);
    opening = withTimeout(attempt, timeoutMs, 'connecting', abandon)
      .then(async (state) => {
        if (closed) {
          await state.conn.close().catch(() => undefined);
          throw new Error('closed');
        }
        current = state;
        return state;
      })
      .finally(() => {
        opening = undefined;
      });
    return opening;
  }

  async function publishAll(state: Open, batch: readonly RoutedMessage[]): Promise<void> {
    const confirms: Promise<void>[] = [];
    const ids: string[] = [];
    for (const m of batch) {
      const r = m.record;
      const id = recordId(deps.hubName, r);
      ids.push(id);
      const sys = r.systemProperties;
      const options: amqp.Options.Publish = {
        persistent: true,
        mandatory: true,
        messageId: id,
        appId: 'gatehouse',
        timestamp: Math.floor(Date.parse(r.enqueuedTime) / 1000),
        headers: Object.fromEntries(messageHeaders(m, deps.hubName)),
        ...(sys['content-type'] !== undefined ? { contentType: sys['content-type'] } : {}),
        ...(sys['content-encoding'] !== undefined ? { contentEncoding: sys['content-encoding'] } : {}),
        ...(sys['correlation-id'] !== undefined ? { correlationId: sys['correlation-id'] } : {}),
      };
      let more = true;
      confirms.push(
        new Promise<void>((resolve, reject) => {
          more = state.channel.publish(config.exchange, config.routingKey.replaceAll('{deviceId}', r.deviceId), r.body, options, (err: unknown) =>
            err === null || err === undefined ? resolve() : reject(new Error(`the broker refused message ${id} (${reasonOf(err)})`)),
          );
        }),
      );
      if (!more) await withTimeout(once(state.channel, 'drain'), timeoutMs, 'waiting for the channel to drain');
    }
    const results = await withTimeout(Promise.allSettled(confirms), timeoutMs, 'waiting for publisher confirms');
    const refused = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (refused !== undefined) throw refused.reason;
    const unroutable = ids.filter((id) => state.returned.has(id));
    for (const id of ids) state.returned.delete(id);
    if (unroutable.length > 0) {
      throw new Error(`${unroutable.length} message(s) unroutable: no queue is bound to exchange '${config.exchange}' for routing key '${config.routingKey}' (first: ${unroutable[0]})`);
    }
  }

  return {
    async deliver(batch: readonly RoutedMessage[]): Promise<void> {
      if (closed) throw new Error(`${where}: closed`);
      if (batch.length === 0) return;
      let state: Open;
      try {
        state = await open();
      } catch (err) {
        throw fail(reasonOf(err));
      }
      try {
        await publishAll(state, batch);
      } catch (err) {
        const reason = state.broken !== undefined && /closed|timed out/.test(reasonOf(err)) ? state.broken : reasonOf(err);
        if (/timed out/.test(reasonOf(err))) {
          // A broker that stopped answering: start afresh on the next deliver.
          state.broken ??= reason;
          if (current === state) current = undefined;
          void state.conn.close().catch(() => undefined);
        }
        throw fail(reason);
      }
    },
    async close(): Promise<void> {
      closed = true;
      const state = current;
      current = undefined;
      if (state !== undefined) await state.conn.close().catch(() => undefined);
    },
  };
}
