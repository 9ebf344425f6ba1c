import { randomUUID } from 'node:crypto';
import { busConformance } from '../src/bus/bus.case.js';
import { LocalBus } from '../src/bus/local/local-bus.js';

busConformance('local (in-process)', {
  prefix: `t${randomUUID().slice(0, 8)}`,
  open: async (onHandlerError) => new LocalBus({ nodeId: 'node-a', onHandlerError }),
});
