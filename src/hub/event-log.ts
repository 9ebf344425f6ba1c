/**
 * The hub's partitioned event log (issue 17), opened on the store's database: the partition count
 * from --partitions when the hub is created (kept after; a different count refuses the start, as
 * moving devices between partitions would reorder their messages), retention from the event
 * stream's flags: --event-retention-hours for age, and --event-max-count turned into a byte budget
 * per partition at 1 KiB a message (1,000,000 messages on 4 partitions: 256 MiB each).
 */
import type { Logger } from 'pino';
import type { HubBus } from '../bus/subjects.js';
import { LogConfigError } from '../log/log-ports.js';
import { openSqlEventLog } from '../log/sql/sql-log.js';
import type { SqlStore } from '../store/sql/sql-store.js';
import { StartupError } from './startup.js';
import { LogWriter } from './telemetry/log-writer.js';

const BYTES_PER_MESSAGE_BUDGET = 1024;

export async function openHubEventLog(store: SqlStore, config: { partitions?: number | undefined; eventRetentionHours: number; eventMaxCount: number }, bus: HubBus, logger: Logger): Promise<LogWriter> {
  try {
    // The budget per partition depends on the count, known once the log is open; the log reads
    // this object at each retention pass.
    const retention = { maxAgeMs: config.eventRetentionHours * 3600_000, maxBytesPerPartition: Number.MAX_SAFE_INTEGER };
    const log = await openSqlEventLog(store.sqlDriver, { ...(config.partitions === undefined ? {} : { partitionCount: config.partitions }), retention, bus });
    const perPartition = Math.ceil(config.eventMaxCount / log.partitionCount) * BYTES_PER_MESSAGE_BUDGET;
    retention.maxBytesPerPartition = perPartition;
    logger.info({ event: 'log.opened', partitions: log.partitionCount, retentionHours: config.eventRetentionHours, maxBytesPerPartition: perPartition }, 'event log opened');
    return new LogWriter(log, logger);
  } catch (err) {
    if (err instanceof LogConfigError) throw new StartupError(`${err.message}: start without --partitions, or with the count the hub was created with`);
    throw err;
  }
}
