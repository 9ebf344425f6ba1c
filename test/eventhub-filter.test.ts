/**
 * The Event Hubs endpoint's reading of a receiver's source filter (issue 17), on filters as they
 * arrive: made by each client's own helper, encoded by rhea and decoded as the hub decodes an attach.
 * A selector filter is known by its descriptor; its name in the filter set is the client's choice.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import rhea from 'rhea';
import { echoedSource, positionFromFilter } from '../src/protocol/amqp/eventhub-message.js';

const require = createRequire(import.meta.url);
const types = require('rhea/lib/types.js') as { Writer: new () => { write(v: unknown): void; toBuffer(): Buffer }; Reader: new (b: Buffer) => { read(): unknown } };
const terminus = require('rhea/lib/terminus.js') as { source(f: unknown): { described(): unknown }; unwrap(v: unknown): { filter?: unknown } };

/** The filter as the hub sees it after decoding the attach. */
function overTheWire(filter: Record<string, unknown>): unknown {
  const w = new types.Writer();
  w.write(terminus.source({ address: 'hub/ConsumerGroups/$Default/Partitions/0', filter }).described());
  return terminus.unwrap(new types.Reader(w.toBuffer()).read()).filter;
}

const SELECTOR = 0x468c00000004;
const expr = "amqp.annotation.x-opt-sequence-number > '41'";

describe('the selector filter of an Event Hubs receiver', () => {
  for (const [client, filter] of [
    ['@azure/event-hubs (named after the descriptor)', { 'apache.org:selector-filter:string': rhea.types.wrap_described(expr, SELECTOR) }],
    ["rhea's filter.selector and Qpid JMS (named jms-selector)", rhea.filter.selector(expr)],
    ['any name, the descriptor as a symbol', { mine: rhea.types.wrap_described(expr, 'apache.org:selector-filter:string') }],
  ] as const) {
    it(`is read from ${client}`, () => {
      const seen = overTheWire(filter as Record<string, unknown>);
      assert.deepEqual(positionFromFilter(seen), { sequenceNumber: 41, inclusive: false });
      // Echoed under the client's name, with the numeric descriptor.
      const echoed = echoedSource('a', seen).filter ?? {};
      const [name] = Object.keys(filter);
      assert.deepEqual(Object.keys(echoed), [name]);
      assert.deepEqual(positionFromFilter(overTheWire(echoed)), { sequenceNumber: 41, inclusive: false });
    });
  }

  it('is the start of the partition when there is none, and the end with @latest', () => {
    assert.equal(positionFromFilter(undefined), 'earliest');
    assert.equal(positionFromFilter(overTheWire({ other: rhea.types.wrap_described('x', 0x1234) })), 'earliest');
    assert.equal(positionFromFilter(overTheWire(rhea.filter.selector("amqp.annotation.x-opt-offset > '@latest'"))), 'latest');
  });

  it('refuses an expression it cannot follow', () => {
    assert.throws(() => positionFromFilter(overTheWire(rhea.filter.selector("color = 'red'"))), /unsupported selector filter/);
  });
});
