/**
 * The RabbitMQ exchange endpoint against the real broker at 127.0.0.1:5672 (guest/guest;
 * GATEHOUSE_TEST_AMQP_URL): each test its own exchange and queue (deleted afterwards), reached
 * through a TCP forwarder the test can cut. RabbitMQ does not dedupe: a redelivered batch arrives
 * again, each copy with the same message-id.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import amqp from 'amqplib';
import { createRabbitMqSink } from '../src/routing/endpoints/rabbitmq-sink.js';
import { EndpointConfigError } from '../src/routing/endpoints/sink.js';
import { CASE_HUB, deliveredFromHeaders, endpointSinkConformance, routedBatch, type Delivered } from '../src/routing/endpoints/sink.case.js';
import type { RabbitMqExchangeEndpoint } from '../src/routing/routing-config.js';
import { TcpProxy } from './support/tcp-proxy.js';

const AMQP_URL = new URL(process.env.GATEHOUSE_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672');

interface Target {
  conn: amqp.ChannelModel;
  channel: amqp.Channel;
  exchange: string;
  queue: string;
  proxy: TcpProxy;
  config: RabbitMqExchangeEndpoint;
  /** Every message the queue got so far (drained into this list). */
  drain(): Promise<amqp.GetMessage[]>;
  close(): Promise<void>;
}

async function target(opts: { type?: 'topic' | 'direct'; bind?: string | null; declare?: boolean } = {}): Promise<Target> {
  const id = randomBytes(6).toString('hex');
  const exchange = `gh-route-${id}`;
  const queue = `gh-route-${id}`;
  const conn = await amqp.connect(AMQP_URL.toString());
  const channel = await conn.createChannel();
  if (opts.declare !== false) {
    await channel.assertExchange(exchange, opts.type ?? 'topic', { durable: false, autoDelete: false });
    await channel.assertQueue(queue, { durable: true });
    if (opts.bind !== null) await channel.bindQueue(queue, exchange, opts.bind ?? '#');
  }
  const proxy = new TcpProxy(AMQP_URL.hostname, Number(AMQP_URL.port || 5672));
  await proxy.up();
  const via = new URL(AMQP_URL.toString());
  via.hostname = '127.0.0.1';
  via.port = String(proxy.port);
  const got: amqp.GetMessage[] = [];
  return {
    conn,
    channel,
    exchange,
    queue,
    proxy,
    config: { name: `rmq-${id}`, url: via.toString(), exchange, routingKey: 'telemetry.{deviceId}' },
    async drain() {
      for (;;) {
        const m = await channel.get(queue, { noAck: true });
        if (m === false) return got;
        got.push(m);
      }
    },
    async close() {
      await proxy.down();
      await channel.deleteQueue(queue).catch(() => undefined);
      await channel.deleteExchange(exchange).catch(() => undefined);
      await conn.close();
    },
  };
}

function delivered(m: amqp.GetMessage): Delivered {
  const headers = new Map(Object.entries((m.properties.headers ?? {}) as Record<string, unknown>).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString() : String(v)]));
  return deliveredFromHeaders(headers, m.content);
}

const deps = { hubName: CASE_HUB, timeoutMs: 3000 };

endpointSinkConformance('RabbitMQ exchange', async () => {
  const t = await target();
  return {
    open: (over) => createRabbitMqSink(t.config, { ...deps, ...over }),
    received: async () => (await t.drain()).map(delivered),
    dedupes: false,
    down: () => t.proxy.down(),
    up: () => t.proxy.up(),
    downReason: /ECONNREFUSED|closed|ECONNRESET|EPIPE|socket/i,
    endpointName: t.config.name,
    secrets: [AMQP_URL.password],
    close: () => t.close(),
  };
});

describe('RabbitMQ exchange endpoint', () => {
  it('publishes persistent messages with the record id, content type, timestamp and the routing key from the device', async () => {
    const t = await target();
    const sink = createRabbitMqSink(t.config, deps);
    try {
      await sink.deliver(routedBatch(4, 9, 1, 'thermo-1'));
      const [m] = await t.drain();
      assert.ok(m !== undefined);
      assert.equal(m.properties.deliveryMode, 2);
      assert.equal(m.properties.messageId, `${CASE_HUB}/4/9`);
      assert.equal(m.properties.appId, 'gatehouse');
      assert.equal(m.properties.contentType, 'application/json');
      assert.equal(m.properties.contentEncoding, 'utf-8');
      assert.equal(m.properties.timestamp, Math.floor(Date.parse(routedBatch(4, 9, 1)[0]!.record.enqueuedTime) / 1000));
      assert.equal(m.fields.routingKey, 'telemetry.thermo-1');
      const headers = m.properties.headers as Record<string, unknown>;
      assert.equal(headers.CC, undefined, "a device's CC property is not RabbitMQ's CC header");
      assert.equal(String(headers['iothub-app-CC']), 'other-queue');
    } finally {
      await sink.close();
      await t.close();
    }
  });

  it('rejects a batch the broker cannot route to any queue, and a missing exchange, with the reason', async () => {
    const t = await target({ type: 'direct', bind: 'telemetry.dev-1' });
    const sink = createRabbitMqSink(t.config, deps);
    try {
      await sink.deliver(routedBatch(0, 0, 2, 'dev-1'));
      await assert.rejects(sink.deliver(routedBatch(0, 2, 2, 'dev-2')), /2 message\(s\) unroutable: no queue is bound to exchange '.*' for routing key 'telemetry\.\{deviceId\}'/);
      assert.equal((await t.drain()).length, 2);
      await t.channel.deleteExchange(t.exchange);
      await assert.rejects(sink.deliver(routedBatch(0, 4, 1, 'dev-1')), /exchange 'gh-route-[0-9a-f]+' does not exist \(declare it and bind a queue\)/);
      // The channel closed on the 404: the next deliver opens another and goes through once the exchange is back.
      await t.channel.assertExchange(t.exchange, 'direct', { durable: false });
      await t.channel.bindQueue(t.queue, t.exchange, 'telemetry.dev-1');
      await sink.deliver(routedBatch(0, 4, 1, 'dev-1'));
      assert.deepEqual(
        (await t.drain()).map((m) => m.properties.messageId as string),
        [`${CASE_HUB}/0/0`, `${CASE_HUB}/0/1`, `${CASE_HUB}/0/4`],
      );
    } finally {
      await sink.close();
      await t.close();
    }
  });

  it('refuses bad configs with the reason', () => {
    const base: RabbitMqExchangeEndpoint = { name: 'r', url: 'amqp://127.0.0.1', exchange: 'x', routingKey: '{deviceId}' };
    const refused = (over: Record<string, unknown>, why: RegExp) =>
      assert.throws(
        () => createRabbitMqSink({ ...base, ...over } as RabbitMqExchangeEndpoint, deps),
        (e: unknown) => e instanceof EndpointConfigError && why.test(e.message),
      );
    refused({ url: 'http://127.0.0.1' }, /url: an amqp:\/\/ or amqps:\/\/ URL/);
    refused({ routingKey: 'a.{moduleId}' }, /routingKey may use \{deviceId\} only \(found \{moduleId\}\)/);
    refused({ exchange: 'amq.rabbitmq.trace' }, /reserved by the broker/);
    refused({ exchange: '' }, /exchange: /);
  });
});
