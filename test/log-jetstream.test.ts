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
import { openJetStreamLog, type JetStreamEventLog } from '../src/log/jetstream/jetstream-log.js';
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
