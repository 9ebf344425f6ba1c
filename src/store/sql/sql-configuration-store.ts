/**
 * ConfigurationStore over a SqlDriver (schema v20, table `configurations`); see
 * configuration-store.case.ts. The limit check and the insert share one transaction: SQLite's
 * BEGIN IMMEDIATE makes writers take turns; on PostgreSQL the transaction first locks the table
 * against other writers (SHARE ROW EXCLUSIVE), so two nodes adding the 100th at once cannot both win.
 */
import { HubError } from '../../core/errors.js';
import type { ConfigurationRecord, ConfigurationResults, ConfigurationStore, StoredConfiguration } from '../configuration-ports.js';
import type { SqlDriver, SqlRow, SqlValue } from './driver.js';

const COLUMNS = 'id, doc, priority, created_at, updated_at, etag, results, results_at';

function fromRow(r: SqlRow): StoredConfiguration {
  const doc = JSON.parse(String(r.doc)) as Omit<ConfigurationRecord, 'id' | 'priority' | 'createdTimeUtc' | 'lastUpdatedTimeUtc' | 'etag'>;
  return {
    record: {
      id: String(r.id),
      schemaVersion: doc.schemaVersion,
      labels: doc.labels,
      content: doc.content,
      contentType: doc.contentType ?? null,
      targetCondition: doc.targetCondition,
      priority: Number(r.priority),
      metricQueries: doc.metricQueries,
      createdTimeUtc: String(r.created_at),
      lastUpdatedTimeUtc: String(r.updated_at),
      etag: String(r.etag),
    },
    results: r.results === null || r.results === undefined ? null : (JSON.parse(String(r.results)) as ConfigurationResults),
    resultsAt: Number(r.results_at ?? 0),
  };
}

function docOf(c: ConfigurationRecord): string {
  return JSON.stringify({ schemaVersion: c.schemaVersion, labels: c.labels, content: c.content, contentType: c.contentType, targetCondition: c.targetCondition, metricQueries: c.metricQueries });
}

function notFound(id: string): HubError {
  return new HubError('ConfigurationNotFound', `Configuration ${id} not found.`);
}

export class SqlConfigurationStore implements ConfigurationStore {
  constructor(private readonly db: SqlDriver) {}

  async list(): Promise<StoredConfiguration[]> {
    return (await this.db.all(`SELECT ${COLUMNS} FROM configurations ORDER BY id`)).map(fromRow);
  }

  async get(id: string): Promise<StoredConfiguration | undefined> {
    const rows = await this.db.all(`SELECT ${COLUMNS} FROM configurations WHERE id = ?`, [id]);
    return rows[0] === undefined ? undefined : fromRow(rows[0]);
  }

  async insert(c: ConfigurationRecord, limit: number): Promise<void> {
    try {
      await this.db.transaction(async (tx) => {
        if (this.db.dialect === 'postgres') await tx.run('LOCK TABLE configurations IN SHARE ROW EXCLUSIVE MODE');
        const exists = await tx.all('SELECT id FROM configurations WHERE id = ?', [c.id]);
        if (exists.length > 0) throw new HubError('ConfigurationAlreadyExists', `A configuration with id '${c.id}' already exists.`);
        const count = Number((await tx.all('SELECT COUNT(*) AS n FROM configurations'))[0]?.n ?? 0);
        if (count >= limit) throw new HubError('IotHubQuotaExceeded', `The hub holds ${count} configurations, the maximum is ${limit}.`);
        const params: SqlValue[] = [c.id, docOf(c), c.priority, c.createdTimeUtc, c.lastUpdatedTimeUtc, c.etag];
        await tx.run('INSERT INTO configurations (id, doc, priority, created_at, updated_at, etag, results, results_at) VALUES (?, ?, ?, ?, ?, ?, NULL, 0)', params);
      });
    } catch (err) {
      if (this.db.isUniqueViolation(err)) throw new HubError('ConfigurationAlreadyExists', `A configuration with id '${c.id}' already exists.`);
      throw err;
    }
  }

  async replace(c: ConfigurationRecord, ifMatch: string): Promise<void> {
    const changed = await this.db.run(`UPDATE configurations SET doc = ?, priority = ?, updated_at = ?, etag = ? WHERE id = ? AND (? = '*' OR etag = ?)`, [
      docOf(c),
      c.priority,
      c.lastUpdatedTimeUtc,
      c.etag,
      c.id,
      ifMatch,
      ifMatch,
    ]);
    if (changed === 0) await this.#explainMiss(c.id);
  }

  async delete(id: string, ifMatch: string): Promise<void> {
    const changed = await this.db.run(`DELETE FROM configurations WHERE id = ? AND (? = '*' OR etag = ?)`, [id, ifMatch, ifMatch]);
    if (changed === 0) await this.#explainMiss(id);
  }

  async putResults(id: string, results: ConfigurationResults, at: number): Promise<boolean> {
    return (await this.db.run('UPDATE configurations SET results = ?, results_at = ? WHERE id = ?', [JSON.stringify(results), at, id])) > 0;
  }

  async #explainMiss(id: string): Promise<never> {
    if ((await this.get(id)) === undefined) throw notFound(id);
    throw new HubError('PreconditionFailed', `The etag of configuration ${id} does not match; it was changed by someone else.`);
  }
}
