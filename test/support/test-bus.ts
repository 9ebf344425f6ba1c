/** An in-process bus for tests that build services by hand (the hub builds its own). */
import { LocalBus } from '../../src/bus/local/local-bus.js';
import { HubBus } from '../../src/bus/subjects.js';

export function testBus(nodeId = 'test-node'): HubBus {
  return new HubBus(
    new LocalBus({
      nodeId,
      onHandlerError: (err) => {
        throw err;
      },
    }),
    'test',
  );
}
