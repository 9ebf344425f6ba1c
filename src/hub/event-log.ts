/**
 * The hub's partitioned event log (issue 17), opened on the store's database: the partition count
 * from --partitions when the hub is created (kept after; a different count refuses the start, as
 * moving devices between partitions would reorder their messages), retention from the event
 * stream's flags: --event-retention-hours for age, and --event-max-count turned into a byte budget
 * per partition at 1 KiB a message (1,000,000 messages on 4 partitions: 256 MiB each).
 *
 * `--event-log jetstream` puts it on NATS JetStream instead (a stream per partition, named by the
 * hub id, on its own NATS connection so telemetry never queues behind bus traffic). The server then
 * applies retention, and an acknowledgement means the stream stored the record: on disk only as
 * often as the server's sync_interval says (2 minutes by default) unless the streams have replicas,
 * which the start warns about and `gatehouse audit` reports.
 */
import type { Logger } from 'pino';
import type { HubBus } from '../bus/subjects.js';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../bus/nats/nats-bus.js';
import { LOG_DURABILITY_META, LOG_REPLICAS_META, LOG_STORE_META, LogConfigError, type EventLog, type LogRetention } from '../log/log-ports.js';
import { openJetStreamLog } from '../log/jetstream/jetstream-log.js';
import { dirname, join } from 'node:path';
import { openSqlEventLog, type SqlEventLogOptions } from '../log/sql/sql-log.js';
import { LOG_FILE, openSqliteLog } from '../log/sqlite/open-sqlite-log.js';
import { SqliteDriver } from '../store/sqlite/sqlite-driver.js';
import type { SqlStore } from '../store/sql/sql-store.js';
import { StartupError } from './startup.js';
import { LogWriter } from './telemetry/log-writer.js';

const BYTES_PER_MESSAGE_BUDGET = 1024;
/** Telemetry batches the SQLite log's writer thread may hold at once (LogWriter's inFlight). */
const SQLITE_BATCHES_IN_FLIGHT = 8;

export interface EventLogConfig {
  partitions?: number | undefined;
  eventRetentionHours: number;
  eventMaxCount: number;
  eventLog: 'sql' | 'jetstream';
  eventLogReplicas: number;
  telemetryDurability: 'fsync' | 'os-cache';
  natsUrl?: string | undefined;
  natsCreds?: string | undefined;
  natsCa?: string | undefined;
}

export async function openHubEventLog(store: SqlStore, config: Omit<EventLogConfig, 'eventLog' | 'eventLogReplicas' | 'telemetryDurability'> & Partial<EventLogConfig>, bus: HubBus, logger: Logger): Promise<LogWriter> {
  try {
    // The budget per partition depends on the count, known once the log is open; the SQL log reads
    // this object at each retention pass (JetStream streams are created with it: set before).
    const retention = { maxAgeMs: config.eventRetentionHours * 3600_000, maxBytesPerPartition: Number.MAX_SAFE_INTEGER };
    const partitionCount = config.partitions === undefined ? {} : { partitionCount: config.partitions };
    await fixLogStore(store, config.eventLog ?? 'sql', config.eventLogReplicas ?? 1);
    const sync = await recordDurability(store, config, logger);
    let log: EventLog;
    let inFlight = 1;
    if (config.eventLog === 'jetstream') log = await openOnJetStream(store, { ...config, eventLog: 'jetstream', eventLogReplicas: config.eventLogReplicas ?? 1, telemetryDurability: config.telemetryDurability ?? 'fsync' }, bus, retention, logger);
    else if (store.sqlDriver instanceof SqliteDriver && store.sqlDriver.file !== ':memory:') {
      log = await openOnSqlite(store.sqlDriver, { ...partitionCount, retention, bus, sync }, logger);
      // Its writer thread commits what waits together, in the order sent: hand batches over as they form.
      inFlight = SQLITE_BATCHES_IN_FLIGHT;
    } else log = await openSqlEventLog(store.sqlDriver, { ...partitionCount, retention, bus, sync });
    const perPartition = perPartitionBudget(config, log.partitionCount);
    retention.maxBytesPerPartition = perPartition;
    logger.info({ event: 'log.opened', store: config.eventLog ?? 'sql', partitions: log.partitionCount, retentionHours: config.eventRetentionHours, maxBytesPerPartition: perPartition }, 'event log opened');
    return new LogWriter(log, logger, { inFlight });
  } catch (err) {
    if (err instanceof LogConfigError) throw new StartupError(`${err.message}: start without --partitions, or with the count the hub was created with`);
    throw err;
  }
}

/**
 * The first start records where the log lives; a later start asking for the other store is refused,
 * as readers would lose the history (and the Event Hubs offsets) without a word.
 */
async function fixLogStore(store: SqlStore, wanted: 'sql' | 'jetstream', replicas: number): Promise<void> {
  const fixed = await store.insertMetaIfAbsent(LOG_STORE_META, wanted);
  if (fixed !== wanted) throw new StartupError(`this hub's event log is on ${fixed === 'jetstream' ? 'JetStream' : 'its database'}; start with --event-log ${fixed}`);
  await store.setMeta(LOG_REPLICAS_META, String(wanted === 'jetstream' ? replicas : 0));
}

/**
 * What an acknowledgement waits for, recorded for `gatehouse audit` and warned about when relaxed
 * (the SQL log; JetStream's is the server's sync_interval, warned about where it opens). Returns
 * whether appends sync.
 */
async function recordDurability(store: SqlStore, config: { eventLog?: 'sql' | 'jetstream' | undefined; telemetryDurability?: 'fsync' | 'os-cache' | undefined }, logger: Logger): Promise<boolean> {
  const mode = config.telemetryDurability ?? 'fsync';
  await store.setMeta(LOG_DURABILITY_META, mode);
  if (mode === 'os-cache' && config.eventLog !== 'jetstream') {
    logger.warn(
      { event: 'log.durability', store: 'sql', durability: mode },
      'telemetry is acknowledged once the operating system has it, before a disk sync (--telemetry-durability os-cache): a power cut or kernel crash can lose acknowledged messages',
    );
  }
  return mode === 'fsync';
}

/**
 * SQLite: the log in its own file beside the store's, written by a worker thread (decision 0008); a log kept in the
 * store's file by an older version moves there at the first start.
 */
function openOnSqlite(storeDriver: SqliteDriver, opts: Omit<SqlEventLogOptions, 'writer'>, logger: Logger): Promise<EventLog> {
  return openSqliteLog({
    ...opts,
    file: join(dirname(storeDriver.file), LOG_FILE),
    store: { driver: storeDriver, file: storeDriver.file },
    onMoved: (records) => logger.info({ event: 'log.moved', records, file: LOG_FILE }, 'moved the event log out of the store database into its own file'),
    onWriterFailure: (err) => logger.error({ err, event: 'log.writer-failed' }, 'the event log writer thread stopped: appends waiting for it failed (ServiceUnavailable); the next append starts a new one'),
  });
}

function perPartitionBudget(config: { eventMaxCount: number }, partitionCount: number): number {
  return Math.ceil(config.eventMaxCount / partitionCount) * BYTES_PER_MESSAGE_BUDGET;
}

/** The JetStream log on a connection of its own, closed with the log. */
async function openOnJetStream(store: SqlStore, config: EventLogConfig, bus: HubBus, retention: LogRetention, logger: Logger): Promise<EventLog> {
  if (config.natsUrl === undefined) throw new StartupError('the JetStream event log needs NATS (--nats-url)');
  const hubId = await store.getMeta('hub.id');
  if (hubId === undefined) throw new Error('the hub has no id yet: the event log opens after the hub is initialized');
  const nc: NatsConnection = await connectNats({ url: config.natsUrl, credsFile: config.natsCreds, caFile: config.natsCa, name: `gatehouse:${bus.nodeId}:log` }).catch((err: Error) => {
    throw new StartupError(err.message);
  });
  try {
    // Streams are created with their limits: the byte budget needs the count, which an existing
    // hub's streams fix, so a new hub's count is the flag's (or the default).
    const count = config.partitions ?? 4;
    const log = await openJetStreamLog(nc, {
      hubId,
      prefix: bus.prefix,
      ...(config.partitions === undefined ? {} : { partitionCount: config.partitions }),
      retention: { maxAgeMs: retention.maxAgeMs, maxBytesPerPartition: perPartitionBudget(config, count) },
      replicas: config.eventLogReplicas,
      ownsConnection: true,
    });
    if (config.eventLogReplicas < 3) {
      logger.warn(
        { event: 'log.durability', store: 'jetstream', replicas: config.eventLogReplicas },
        'the JetStream event log acknowledges telemetry once NATS stored it, before a disk sync (the server syncs every sync_interval, 2 minutes by default): an acknowledged message can be lost to a power cut; run NATS with sync_interval: always, or 3 replicas (--event-log-replicas 3)',
      );
    }
    return log;
  } catch (err) {
    await nc.close();
    throw err;
  }
}
