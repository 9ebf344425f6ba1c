/**
 * The NATS JetStream endpoint against the real server at 127.0.0.1:4222
 * (GATEHOUSE_TEST_NATS_URL): each test its own stream and subject (deleted afterwards), reached
 * through a TCP forwarder the test can cut, so "down" never stops the server others share.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { createNatsSink } from '../src/routing/endpoints/nats-sink.js';
import { EndpointConfigError } from '../src/routing/endpoints/sink.js';
import { CASE_HUB, deliveredFromHeaders, endpointSinkConformance, routedBatch, type Delivered } from '../src/routing/endpoints/sink.case.js';
import type { NatsJetStreamEndpoint } from '../src/routing/routing-config.js';
import { TcpProxy } from './support/tcp-proxy.js';

const NATS = new URL(process.env.GATEHOUSE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222');
const NATS_PORT = Number(NATS.port || 4222);

interface Target {
  nc: NatsConnection;
  jsm: JetStreamManager;
  stream: string;
  subject: string;
  proxy: TcpProxy;
  config: NatsJetStreamEndpoint;
  messages(): Promise<{ headers: Map<string, string>; body: Buffer }[]>;
  close(): Promise<void>;
}

async function target(withStream = true): Promise<Target> {
  const id = randomUUID().replace(/-/g, '').slice(0, 12);
  const stream = `gh-route-${id}`;
  const subject = `ghroute.${id}.out`;
  const nc = await connect({ servers: `${NATS.hostname}:${NATS_PORT}` });
  const jsm = await jetstreamManager(nc);
  if (withStream) await jsm.streams.add({ name: stream, subjects: [subject], duplicate_window: 120_000_000_000 });
  const proxy = new TcpProxy(NATS.hostname, NATS_PORT);
  await proxy.up();
  return {
    nc,
    jsm,
    stream,
    subject,
    proxy,
    config: { name: `nats-${id}`, servers: `nats://127.0.0.1:${proxy.port}`, subject },
    async messages() {
      const info = await jsm.streams.info(stream);
      const out: { headers: Map<string, string>; body: Buffer }[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
        const m = await jsm.streams.getMessage(stream, { seq });
        const headers = new Map<string, string>();
        for (const k of m?.header?.keys() ?? []) headers.set(decodeURIComponent(k), decodeURIComponent(m!.header.get(k)));
        out.push({ headers, body: Buffer.from(m!.data) });
      }
      return out;
    },
    async close() {
      await proxy.down();
      if (withStream) await jsm.streams.delete(stream).catch(() => undefined);
      await nc.close();
    },
  };
}

endpointSinkConformance('NATS JetStream', async () => {
  const t = await target();
  return {
    open: (deps) => createNatsSink(t.config, { hubName: CASE_HUB, timeoutMs: 3000, ...deps }),
    received: async (): Promise<Delivered[]> => (await t.messages()).map((m) => deliveredFromHeaders(m.headers, m.body)),
    dedupes: true,
    down: () => t.proxy.down(),
    up: () => t.proxy.up(),
    downReason: /ECONNREFUSED|CONNECTION_REFUSED|closed|disconnect/i,
    endpointName: t.config.name,
    secrets: [],
    close: () => t.close(),
  };
});

describe('NATS JetStream endpoint', () => {
  it('sets Nats-Msg-Id from (hub, partition, sequence number); a property cannot forge it', async () => {
    const t = await target();
    const sink = createNatsSink(t.config, { hubName: CASE_HUB, timeoutMs: 3000 });
    try {
      await sink.deliver(routedBatch(5, 7, 2));
      const got = await t.messages();
      assert.deepEqual(
        got.map((m) => m.headers.get('Nats-Msg-Id')),
        [`${CASE_HUB}/5/7`, `${CASE_HUB}/5/8`],
      );
      assert.equal(got[0]!.headers.get('iothub-app-Nats-Msg-Id'), 'forged', 'the property arrives under its prefixed name');
      // The stream counted the redelivery as duplicates.
      await sink.deliver(routedBatch(5, 7, 2));
      assert.equal((await t.jsm.streams.info(t.stream)).state.messages, 2);
    } finally {
      await sink.close();
      await t.close();
    }
  });

  it('rejects with the reason when no stream captures the subject', async () => {
    const t = await target(false);
    const sink = createNatsSink(t.config, { hubName: CASE_HUB, timeoutMs: 2000 });
    try {
      await assert.rejects(sink.deliver(routedBatch(0, 0, 1)), new RegExp(`natsJetStream '${t.config.name}' \\(subject ${t.subject.replace(/\./g, '\\.')}\\): no stream captures the subject`));
    } finally {
      await sink.close();
      await t.close();
    }
  });

  it('refuses bad configs with the reason', () => {
    const base: NatsJetStreamEndpoint = { name: 'n', servers: 'nats://127.0.0.1:4222', subject: 'a.b' };
    const refused = (over: Record<string, unknown>, why: RegExp) =>
      assert.throws(
        () => createNatsSink({ ...base, ...over } as NatsJetStreamEndpoint, { hubName: CASE_HUB }),
        (e: unknown) => e instanceof EndpointConfigError && why.test(e.message),
      );
    refused({ servers: 'nats://me:pw@127.0.0.1:4222' }, /credentials go in user\/password or token/);
    refused({ subject: 'a.*' }, /subject: a NATS subject without wildcards/);
    refused({ subject: '$JS.API.x' }, /reserved by NATS/);
    refused({ token: 'tok-123456', user: 'u', password: 'p' }, /a token or a user and password, not both/);
    refused({ user: 'u' }, /user and password go together/);
    refused({ servers: ' , ' }, /names no server/);
  });
});
