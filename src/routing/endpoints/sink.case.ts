/**
 * The endpoint sink contract (sink.ts), one suite for every endpoint type, each against its real
 * server: what arrives is what was routed (body bytes, properties with enrichments, system
 * properties, positions, order), a batch delivered again is not stored twice where the target can
 * dedupe, a target that is down makes deliver reject with the reason, and the next deliver after
 * it is back succeeds and loses nothing. Imported only by tests.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LogRecord } from '../../log/log-ports.js';
import type { EndpointSink, RoutedMessage } from './sink.js';
import type { SinkDeps } from './sink-deps.js';

export const CASE_HUB = 'case-hub';

/** A message as a target shows it, put back in the routed shape. */
export interface Delivered {
  partition: number;
  sequenceNumber: number;
  deviceId: string;
  body: Buffer;
  /** Application properties with the enrichments applied (an enrichment replaces a property). */
  properties: Record<string, string>;
  systemProperties: Record<string, string>;
}

export interface SinkHarness {
  /** A sink on the target; `deps` overrides the suite's (hub name `case-hub`, 3 s timeout). */
  open(deps?: Partial<SinkDeps>): EndpointSink;
  /** Everything the target holds, in the order it holds it. */
  received(): Promise<Delivered[]>;
  /** The target drops a record it already has (by its id), so a redelivery adds nothing. */
  dedupes: boolean;
  /** Stops the target (or the way to it); `up` brings it back at the same address. */
  down(): Promise<void>;
  up(): Promise<void>;
  /** What a rejection while down must say (besides the endpoint's name). */
  downReason: RegExp;
  /** The endpoint's name in the config (errors must name it). */
  endpointName: string;
  /** Secrets in the config, which no error may show. */
  secrets: string[];
  close(): Promise<void>;
}

export type OpenSinkHarness = () => Promise<SinkHarness>;

const utf8Json = (n: number): Buffer => Buffer.from(JSON.stringify({ temp: 21.5, n, text: 'é ü line1\nline2' }));

/** Routed messages of one partition from `from` on: JSON, binary (not UTF-8) and empty bodies, awkward property names and values. */
export function routedBatch(partition: number, from: number, count: number, deviceId = 'dev-1'): RoutedMessage[] {
  return Array.from({ length: count }, (_, k) => {
    const n = from + k;
    const body = n % 3 === 0 ? utf8Json(n) : n % 3 === 1 ? Buffer.from([0xff, 0x00, 0xfe, n & 0xff, 0x0a, 0x0d]) : Buffer.alloc(0);
    const record: LogRecord = {
      deviceId,
      moduleId: null,
      body,
      properties: { n: String(n), 'temp alert': 'yes', ünïcode: 'välue ✓', multi: 'a\r\nb', CC: 'other-queue', 'Nats-Msg-Id': 'forged', ' padded ': '  x  ' },
      systemProperties: {
        'message-id': `msg-${n}`,
        ...(n % 3 === 0 ? { 'content-type': 'application/json', 'content-encoding': 'utf-8' } : {}),
        'iothub-connection-device-id': deviceId,
        'iothub-enqueuedtime': new Date(1_790_000_000_000 + n).toISOString(),
        'iothub-message-source': 'Telemetry',
      },
      partition,
      sequenceNumber: n,
      offset: String(n * 100),
      enqueuedTime: new Date(1_790_000_000_000 + n).toISOString(),
    };
    return { record, enrichments: { site: 'plant-7', n: `enriched-${n}` } };
  });
}

function expected(m: RoutedMessage): Delivered {
  const r = m.record;
  return {
    partition: r.partition,
    sequenceNumber: r.sequenceNumber,
    deviceId: r.deviceId,
    body: r.body,
    properties: { ...r.properties, ...m.enrichments },
    systemProperties: r.systemProperties,
  };
}

/** Header maps (NATS, RabbitMQ, webhook raw) back to the routed shape (docs/routing-endpoints.md's naming). */
export function deliveredFromHeaders(h: Map<string, string>, body: Buffer): Delivered {
  const properties: Record<string, string> = {};
  const systemProperties: Record<string, string> = {};
  for (const [k, v] of h) {
    const key = k.toLowerCase();
    if (key.startsWith('iothub-app-')) properties[k.slice('iothub-app-'.length)] = v;
    else if (/^iothub-(connection-|enqueuedtime$|message-source$)/.test(key)) systemProperties[key] = v;
    else if (key.startsWith('iothub-')) systemProperties[key.slice('iothub-'.length)] = v;
  }
  return {
    partition: Number(h.get('x-gatehouse-partition')),
    sequenceNumber: Number(h.get('x-gatehouse-sequence-number')),
    deviceId: systemProperties['iothub-connection-device-id'] ?? '',
    body,
    properties,
    systemProperties,
  };
}

function ids(d: readonly Delivered[]): string[] {
  return d.map((x) => `${x.partition}/${x.sequenceNumber}`);
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  assert.fail('deliver resolved while the target was down');
}

export function endpointSinkConformance(kind: string, openHarness: OpenSinkHarness): void {
  describe(`endpoint sink contract: ${kind}`, () => {
    const withHarness = (fn: (h: SinkHarness) => Promise<void>) => async () => {
      const h = await openHarness();
      try {
        await fn(h);
      } finally {
        await h.close();
      }
    };

    it(
      'delivers body bytes, properties with enrichments, system properties and positions, in order',
      withHarness(async (h) => {
        const sink = h.open();
        try {
          const a = routedBatch(0, 0, 6);
          const b = routedBatch(0, 6, 3);
          await sink.deliver(a);
          await sink.deliver(b);
          const got = await h.received();
          assert.deepEqual(ids(got), ids([...a, ...b].map(expected)));
          for (const [i, m] of [...a, ...b].entries()) {
            const want = expected(m);
            const have = got[i]!;
            assert.ok(have.body.equals(want.body), `body of ${want.sequenceNumber}: ${have.body.toString('hex')} != ${want.body.toString('hex')}`);
            assert.deepEqual(have.properties, want.properties, `properties of ${want.sequenceNumber}`);
            assert.equal(have.deviceId, want.deviceId);
            for (const k of Object.keys(want.systemProperties)) assert.equal(have.systemProperties[k], want.systemProperties[k], `system property ${k}`);
          }
        } finally {
          await sink.close();
        }
      }),
    );

    it(
      'partitions delivered at once through one sink (the engine shares it among dispatchers) each keep their order',
      withHarness(async (h) => {
        const sink = h.open();
        try {
          const partitions = [4, 5, 6, 7];
          await Promise.all(
            partitions.map(async (p) => {
              for (let b = 0; b < 3; b++) await sink.deliver(routedBatch(p, b * 4, 4, `dev-${p}`));
            }),
          );
          const got = await h.received();
          for (const p of partitions) {
            assert.deepEqual(
              got.filter((d) => d.partition === p).map((d) => d.sequenceNumber),
              Array.from({ length: 12 }, (_, i) => i),
              `partition ${p} in order`,
            );
          }
          assert.equal(got.length, 48);
        } finally {
          await sink.close();
        }
      }),
    );

    it(
      'a batch delivered again is stored once where the target dedupes, else again in the same order',
      withHarness(async (h) => {
        const sink = h.open();
        try {
          const batch = routedBatch(1, 40, 4);
          await sink.deliver(batch);
          await sink.deliver(batch);
          // A second sink (a restart, another node) delivering it once more.
          const again = h.open();
          await again.deliver(batch);
          await again.close();
          const want = ids(batch.map(expected));
          assert.deepEqual(ids(await h.received()), h.dedupes ? want : [...want, ...want, ...want]);
        } finally {
          await sink.close();
        }
      }),
    );

    it(
      'rejects with the reason while the target is down, and the next deliver after it is back succeeds',
      withHarness(async (h) => {
        const sink = h.open();
        try {
          await sink.deliver(routedBatch(2, 0, 2));
          await h.down();
          const started = Date.now();
          const err = await rejection(sink.deliver(routedBatch(2, 2, 2)));
          assert.ok(Date.now() - started < 15_000, 'rejects within the timeout');
          assert.ok(err.message.includes(h.endpointName), `names the endpoint: ${err.message}`);
          assert.match(err.message, h.downReason);
          for (const s of h.secrets) assert.ok(!err.message.includes(s), `no secret in: ${err.message}`);
          await h.up();
          // The dispatcher retries the same batch until it goes through.
          let last: unknown;
          for (let i = 0; i < 20; i++) {
            try {
              await sink.deliver(routedBatch(2, 2, 2));
              last = undefined;
              break;
            } catch (e) {
              last = e;
              await new Promise((r) => setTimeout(r, 250));
            }
          }
          assert.equal(last, undefined, `delivers after the target is back: ${String(last)}`);
          await sink.deliver(routedBatch(2, 4, 1));
          const got = ids(await h.received());
          const want = ['2/0', '2/1', '2/2', '2/3', '2/4'];
          // At least once and in order: every record, each first seen in log order.
          assert.deepEqual([...new Set(got)], want);
        } finally {
          await sink.close();
        }
      }),
    );

    it(
      'after close, deliver rejects and close can be called again',
      withHarness(async (h) => {
        const sink = h.open();
        await sink.deliver(routedBatch(3, 0, 1));
        await sink.close();
        await assert.rejects(sink.deliver(routedBatch(3, 1, 1)), /closed/);
        await sink.close();
        assert.deepEqual(ids(await h.received()), ['3/0']);
      }),
    );
  });
}
