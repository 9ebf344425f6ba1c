/**
 * Automatic device and module configurations (issue 18 item 2; Azure's Configuration resource,
 * `/configurations/{id}`): what the operator set, with an etag, and the metric counts the hub last
 * computed (hub/configurations/), which change without moving the etag as in Azure.
 */
import type { JsonObject } from '../core/json.js';

export interface ConfigurationRecord {
  id: string;
  schemaVersion: string;
  labels: Record<string, string>;
  /** `{ deviceContent }`, `{ moduleContent }` or `{ modulesContent }`, keys as the caller sent them. */
  content: JsonObject;
  contentType: string | null;
  targetCondition: string;
  priority: number;
  /** Custom metric queries by name. */
  metricQueries: Record<string, string>;
  createdTimeUtc: string;
  lastUpdatedTimeUtc: string;
  etag: string;
}

/** Counts from the last evaluation pass. */
export interface ConfigurationResults {
  /** `targetedCount`, `appliedCount`. */
  system: Record<string, number>;
  /** One count per custom metric query. */
  custom: Record<string, number>;
}

export interface StoredConfiguration {
  record: ConfigurationRecord;
  results: ConfigurationResults | null;
  /** When the results were computed (ms since epoch), 0 for never. */
  resultsAt: number;
}

export interface ConfigurationStore {
  /** Ordered by id. */
  list(): Promise<StoredConfiguration[]>;
  get(id: string): Promise<StoredConfiguration | undefined>;
  /**
   * Inserts unless the id is taken (ConfigurationAlreadyExists) or the hub already holds `limit`
   * configurations (IotHubQuotaExceeded); the count and the insert are one transaction.
   */
  insert(record: ConfigurationRecord, limit: number): Promise<void>;
  /** Replaces under the etag ('*' = any). ConfigurationNotFound / PreconditionFailed. */
  replace(record: ConfigurationRecord, ifMatch: string): Promise<void>;
  /** ConfigurationNotFound / PreconditionFailed. */
  delete(id: string, ifMatch: string): Promise<void>;
  /** Writes the computed counts; the etag stays. False when the configuration is gone. */
  putResults(id: string, results: ConfigurationResults, at: number): Promise<boolean>;
}
