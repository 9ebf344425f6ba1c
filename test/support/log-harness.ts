/**
 * What the SQL event log test files share: a fake clock, and two "nodes" on one in-process bus
 * (a LocalBus seen under two node ids), so a second instance is woken only by the first one's
 * announcements, as on NATS.
 */
import type { Bus } from '../../src/bus/bus.js';
import { LocalBus } from '../../src/bus/local/local-bus.js';
import { HubBus } from '../../src/bus/subjects.js';
import type { SqlDriver } from '../../src/store/sql/driver.js';
import type { LogOpenOptions } from '../../src/log/log.case.js';
import { openSqlEventLog, type SqlEventLog } from '../../src/log/sql/sql-log.js';
import { openSqliteLog, type SqliteLogOptions } from '../../src/log/sqlite/open-sqlite-log.js';

export const DEFAULT_TEST_RETENTION = { maxAgeMs: 7 * 24 * 3600_000, maxBytesPerPartition: 1024 ** 3 };

function asNode(bus: LocalBus, nodeId: string): Bus {
  return {
    kind: 'local',
    nodeId,
    get maxPayload() {
      return bus.maxPayload;
    },
    closed: bus.closed,
    publish: (s, d) => bus.publish(s, d),
    subscribe: (s, h, o) => bus.subscribe(s, h, o),
    request: (s, d, o) => bus.request(s, d, o),
    flush: () => bus.flush(),
    drain: () => bus.drain(),
    close: () => bus.close(),
  };
}

export class SqlLogNodes {
  readonly bus = new LocalBus({ nodeId: 'node-a' });
  now = Date.parse('2030-01-01T00:00:00.000Z');
  #n = 0;

  open(db: SqlDriver, opts: LogOpenOptions = {}): Promise<SqlEventLog> {
    return openSqlEventLog(db, {
      ...(opts.partitionCount === undefined ? {} : { partitionCount: opts.partitionCount }),
      retention: { ...DEFAULT_TEST_RETENTION, ...opts.retention },
      bus: new HubBus(asNode(this.bus, `node-${++this.#n}`), 'hubtest'),
      now: () => this.now,
      // Long: the tail test must be woken by the bus, not by the poll.
      pollMs: 60_000,
    });
  }

  /** The SQLite log in its own file, written by its worker thread (as the hub opens it). */
  openFile(file: string, opts: LogOpenOptions = {}, more: Partial<SqliteLogOptions> = {}): Promise<SqlEventLog> {
    return openSqliteLog({
      ...(opts.partitionCount === undefined ? {} : { partitionCount: opts.partitionCount }),
      retention: { ...DEFAULT_TEST_RETENTION, ...opts.retention },
      bus: new HubBus(asNode(this.bus, `node-${++this.#n}`), 'hubtest'),
      now: () => this.now,
      pollMs: 60_000,
      ...more,
      file,
    });
  }

  async elapse(ms: number): Promise<void> {
    this.now += ms;
  }
}
