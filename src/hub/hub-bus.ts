/** The hub's bus, opened at start: NATS when --nats-url is set, else in-process. */
import { resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Store } from '../store/ports.js';
import { subjectToken, type Bus } from '../bus/bus.js';
import { HubBus, SUBJECTS } from '../bus/subjects.js';
import { LocalBus } from '../bus/local/local-bus.js';
import { connectNatsBus } from '../bus/nats/nats-bus.js';
import { redactNatsUrl } from '../bus/nats/nats-options.js';
import { resolveNodeId, StartupError } from './startup.js';

/** The bus: NATS when --nats-url is set, else in-process. Subjects live under the hub's id. */
export async function openHubBus(config: { dataDir: string; nodeId?: string | undefined; natsUrl?: string | undefined; natsCreds?: string | undefined; natsCa?: string | undefined }, store: Store, logger: Logger): Promise<HubBus> {
  const nodeId = resolveNodeId(resolve(config.dataDir), config.nodeId);
  const log = logger.child({ component: 'bus' });
  const onHandlerError = (err: unknown, subject: string) => log.error({ err, event: 'bus.handler-failed', subject }, 'a bus handler failed');
  let bus: Bus;
  let hubBus: HubBus | undefined;
  if (config.natsUrl === undefined) bus = new LocalBus({ nodeId, onHandlerError });
  else {
    // Back on NATS: every node reads again what it may have missed (SUBJECTS.busResync).
    const onReconnect = () => hubBus?.publish(SUBJECTS.busResync, { reason: 'reconnected' });
    const nats = { nodeId, url: config.natsUrl, credsFile: config.natsCreds, caFile: config.natsCa, onHandlerError, onReconnect, log: (f: object, m: string) => log.warn(f, m) };
    bus = await connectNatsBus(nats).catch((err: Error) => {
      throw new StartupError(err.message);
    });
  }
  log.info({ event: 'bus.opened', kind: bus.kind, node: nodeId, ...(config.natsUrl === undefined ? {} : { server: redactNatsUrl(config.natsUrl) }) }, 'bus opened');
  hubBus = new HubBus(bus, `gatehouse.${subjectToken((await store.getMeta('hub.id')) ?? 'hub')}`);
  return hubBus;
}

