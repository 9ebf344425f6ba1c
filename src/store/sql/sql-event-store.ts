import type { EventStore, NewEvent, StoredEvent } from '../event-ports.js';
import type { SqlDriver } from './driver.js';

/** Placeholder until the event stream work lands. */
export class SqlEventStore implements EventStore {
  constructor(private readonly db: SqlDriver) {}

  appendEvents(_events: readonly NewEvent[]): Promise<number[]> {
    void this.db;
    return Promise.reject(new Error('event store not implemented'));
  }

  readEvents(_opts: { after: number; limit: number; deviceId?: string }): Promise<StoredEvent[]> {
    return Promise.reject(new Error('event store not implemented'));
  }

  lastEventSeq(): Promise<number> {
    return Promise.reject(new Error('event store not implemented'));
  }

  pruneEvents(_opts: { before: string; keepAtMost: number }): Promise<number> {
    return Promise.reject(new Error('event store not implemented'));
  }
}
