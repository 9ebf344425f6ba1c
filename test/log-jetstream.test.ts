/**
 * The event log conformance suite on NATS JetStream at 127.0.0.1:4222 (GATEHOUSE_TEST_NATS_URL):
 * each test its own hub id (so its own streams, deleted afterwards); the second instance has its
 * own connection, as another node would. Run twice: tails on an ordered consumer (the default),
 * and tails by direct-get reads woken by core NATS.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { eventLogConformance, type LogHarness, type LogOpenOptions } from '../src/log/log.case.js';
import { jetstream, jetstreamManager, JetStreamApiError, type JetStreamClient } from '@nats-io/jetstream';
import { errors as natsErrors } from '@nats-io/transport-node';
import { logStreamName, openJetStreamLog, type JetStreamEventLog } from '../src/log/jetstream/jetstream-log.js';
import { consumerTail } from '../src/log/jetstream/jetstream-tail.js';
import { LogConfigError } from '../src/log/log-ports.js';
import { DEFAULT_TEST_RETENTION } from './support/log-harness.js';

const NATS = new URL(process.env.GATEHOUSE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222');

function harness(tailWith: 'consumer' | 'reads') {
  return async (opts: LogOpenOptions = {}): Promise<LogHarness> => {
    const hubId = `t${randomUUID().replace(/-/g, '').slice(0, 16)}`;
    const conns: NatsConnection[] = [];
    const logs: JetStreamEventLog[] = [];
    const open = async (partitionCount: number | undefined): Promise<JetStreamEventLog> => {
      const nc = await connect({ servers: `${NATS.hostname}:${NATS.port || 4222}` });
      conns.push(nc);
      const log = await openJetStreamLog(nc, {
        hubId,
        prefix: hubId,
        ...(partitionCount === undefined ? {} : { partitionCount }),
        retention: { ...DEFAULT_TEST_RETENTION, ...opts.retention },
        pollMs: 60_000,
        tailWith,
      });
      logs.push(log);
      return log;
    };
    const close = async () => {
      for (const l of logs) await l.close();
      await logs[0]?.destroy();
      for (const nc of conns) await nc.close();
    };
    try {
      const log = await open(opts.partitionCount);
      return { log, openPeer: (peerOpts = {}) => open(peerOpts.partitionCount), elapse: (ms) => sleep(ms), close };
    } catch (err) {
      await close();
      throw err;
    }
  };
}

eventLogConformance('jetstream', harness('consumer'));
eventLogConformance('jetstream, tails by reads', harness('reads'));

describe('JetStream event log options', () => {
  it('refuses a hub id that cannot name a stream, before it touches the server', async () => {
    const nc = await connect({ servers: `${NATS.hostname}:${NATS.port || 4222}` });
    try {
      for (const hubId of ['a.b', 'a b', 'x>', '']) {
        await assert.rejects(openJetStreamLog(nc, { hubId, prefix: 'p', retention: DEFAULT_TEST_RETENTION }), LogConfigError, hubId);
      }
    } finally {
      await nc.close();
    }
  });
});

describe('JetStream event log: nodes creating one hub\'s log at once', () => {
  /** `n` logs of one new hub id opened at the same moment, each on its own connection, as the nodes of a cluster starting together. */
  async function openAtOnce(n: number, partitionCount: number | undefined): Promise<{ counts: Array<number | string>; streams: number }> {
    const hubId = `t${randomUUID().replace(/-/g, '').slice(0, 16)}`;
    const conns = await Promise.all(Array.from({ length: n }, () => connect({ servers: `${NATS.hostname}:${NATS.port || 4222}` })));
    const opened = await Promise.allSettled(
      conns.map((nc) => openJetStreamLog(nc, { hubId, prefix: hubId, ...(partitionCount === undefined ? {} : { partitionCount }), retention: DEFAULT_TEST_RETENTION })),
    );
    try {
      const jsm = await jetstreamManager(conns[0]!);
      let streams = 0;
      for await (const s of jsm.streams.list()) if (s.config.name.startsWith(`gatehouse-${hubId}-`)) streams++;
      return { counts: opened.map((o) => (o.status === 'fulfilled' ? o.value.partitionCount : String(o.reason))), streams };
    } finally {
      const log = opened.find((o) => o.status === 'fulfilled');
      for (const o of opened) if (o.status === 'fulfilled') await o.value.close();
      if (log?.status === 'fulfilled') await log.value.destroy();
      for (const nc of conns) await nc.close();
    }
  }

  it('every node gets the one partition count, with no count given (the default) and with one', async () => {
    // A node that counted the streams while another was still creating them took a part of the log for all of it:
    // its readers saw only those partitions and refused every other node's positions.
    for (const asked of [undefined, 12]) {
      for (let round = 0; round < 3; round++) {
        const { counts, streams } = await openAtOnce(6, asked);
        const want = asked ?? 4;
        assert.deepEqual(counts, new Array(6).fill(want), `asked for ${asked ?? 'no count'}, round ${round}`);
        assert.equal(streams, want);
      }
    }
  });

  it('a log made before the count was written down keeps the count of its streams, and is written down at its next open', async () => {
    const hubId = `t${randomUUID().replace(/-/g, '').slice(0, 16)}`;
    const nc = await connect({ servers: `${NATS.hostname}:${NATS.port || 4222}` });
    try {
      const jsm = await jetstreamManager(nc);
      // As the earlier code made them: no description.
      for (let p = 0; p < 3; p++) await jsm.streams.add({ name: logStreamName(hubId, p), subjects: [`${hubId}.log.${p}`], allow_direct: true });
      const log = await openJetStreamLog(nc, { hubId, prefix: hubId, retention: DEFAULT_TEST_RETENTION });
      assert.equal(log.partitionCount, 3);
      assert.match((await jsm.streams.info(logStreamName(hubId, 0))).config.description ?? '', / partition 0 of 3$/);
      await log.close();
      await log.destroy();
    } finally {
      await nc.close();
    }
  });

  it('a node asking for another count than the one being created is refused, and the log keeps its count', async () => {
    const hubId = `t${randomUUID().replace(/-/g, '').slice(0, 16)}`;
    const [a, b] = await Promise.all([0, 1].map(() => connect({ servers: `${NATS.hostname}:${NATS.port || 4222}` })));
    const first = await openJetStreamLog(a!, { hubId, prefix: hubId, partitionCount: 5, retention: DEFAULT_TEST_RETENTION });
    try {
      await assert.rejects(openJetStreamLog(b!, { hubId, prefix: hubId, partitionCount: 3, retention: DEFAULT_TEST_RETENTION }), LogConfigError);
      const again = await openJetStreamLog(b!, { hubId, prefix: hubId, retention: DEFAULT_TEST_RETENTION });
      assert.equal(again.partitionCount, 5);
      await again.close();
    } finally {
      await first.close();
      await first.destroy();
      await a!.close();
      await b!.close();
    }
  });
});

describe('JetStream tail faults', () => {
  /** A one-partition log with 3 records, and a JetStream client whose first `failures` consumer requests time out. */
  async function withFlakyClient(failures: number, fn: (js: JetStreamClient, stream: string, asked: () => number) => Promise<void>): Promise<void> {
    const hubId = `t${randomUUID().replace(/-/g, '').slice(0, 16)}`;
    const nc = await connect({ servers: `${NATS.hostname}:${NATS.port || 4222}` });
    const log = await openJetStreamLog(nc, { hubId, prefix: hubId, partitionCount: 1, retention: DEFAULT_TEST_RETENTION });
    try {
      await log.append([0, 1, 2].map((i) => ({ deviceId: 'd1', moduleId: null, body: Buffer.from(`m${i}`), properties: {}, systemProperties: {} })));
      const real = jetstream(nc);
      let asked = 0;
      const js = {
        consumers: {
          get: (...args: Parameters<JetStreamClient['consumers']['get']>) => {
            asked++;
            return asked <= failures ? Promise.reject(new natsErrors.TimeoutError()) : real.consumers.get(...args);
          },
        },
      } as unknown as JetStreamClient;
      await fn(js, logStreamName(hubId, 0), () => asked);
    } finally {
      await log.destroy();
      await nc.close();
    }
  }

  it('a consumer request that times out is asked again: the reader gets every record instead of ending', async () => {
    await withFlakyClient(2, async (js, stream, asked) => {
      const stop = new AbortController();
      const got: string[] = [];
      for await (const batch of consumerTail(js, stream, 0, 0, new AbortController().signal, { signal: stop.signal })) {
        got.push(...batch.map((r) => Buffer.from(r.body).toString()));
        if (got.length >= 3) stop.abort();
      }
      assert.deepEqual(got, ['m0', 'm1', 'm2']);
      assert.equal(asked(), 3, 'two timed-out requests, then the one that made the consumer');
    });
  });

  it('a stream the server says is gone fails the tail at once, without asking again', async () => {
    await withFlakyClient(0, async (js, stream, asked) => {
      const started = Date.now();
      const tail = consumerTail(js, `${stream}-none`, 0, 0, new AbortController().signal);
      await assert.rejects(tail.next(), JetStreamApiError);
      assert.equal(asked(), 1);
      assert.ok(Date.now() - started < 5_000, 'no backoff for a refusal');
    });
  });

  it('a tail stopped while it waits to ask again ends without a record or an error', async () => {
    await withFlakyClient(100, async (js, stream, asked) => {
      const stop = new AbortController();
      setTimeout(() => stop.abort(), 600);
      const batches: unknown[] = [];
      for await (const batch of consumerTail(js, stream, 0, 0, new AbortController().signal, { signal: stop.signal })) batches.push(batch);
      assert.deepEqual(batches, []);
      assert.ok(asked() >= 2 && asked() < 8, `asked ${asked()} times before the stop`);
    });
  });
});
