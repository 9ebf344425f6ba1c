/**
 * The audit log's store: an append-only table of authentication decisions and changes, each row
 * chained to the one before by a keyed hash (src/audit/audit-chain.ts computes and checks the
 * chain; the store only keeps rows and answers reads). Seqs are assigned by the one writer, the
 * AuditLog service, not by the database.
 */

export type AuditType = 'auth' | 'change';
export type AuditOutcome = 'success' | 'failure';

/** One audit row, as stored. Fields a type does not use are null. */
export interface AuditRow {
  /** 1, 2, 3, ...: strictly increasing, assigned by the appender. */
  seq: number;
  /** ms since the epoch, when the event happened. */
  at: number;
  type: AuditType;
  // auth
  subject: string | null;
  identity: string | null;
  outcome: AuditOutcome | null;
  reason: string | null;
  reasonCode: string | null;
  protocol: string | null;
  method: string | null;
  tls: string | null;
  // both (a change made over the network has one too)
  remote: string | null;
  // change
  actor: string | null;
  action: string | null;
  target: string | null;
  /** Canonical JSON text of the state before and after (secrets redacted), kept byte for byte. */
  beforeJson: string | null;
  afterJson: string | null;
  // chain
  /** The previous row's hash (64 zeros before seq 1). */
  prevHash: string;
  /** Lower-case hex HMAC-SHA256 over prevHash and the row. */
  hash: string;
}

export interface AuditHead {
  seq: number;
  hash: string;
}

export interface AuditQuery {
  /** ms since the epoch, inclusive. */
  from?: number;
  /** ms since the epoch, exclusive. */
  to?: number;
  identity?: string;
  outcome?: AuditOutcome;
  type?: AuditType;
  actor?: string;
  /** Only rows with a smaller seq (the cursor of the previous page). */
  before?: number;
  limit: number;
}

export interface AuditStore {
  /**
   * Inserts the rows (ascending seqs) in one transaction. PreconditionFailed, and nothing written,
   * when the first seq is not above every stored one (another writer appended first).
   */
  append(rows: readonly AuditRow[]): Promise<void>;
  /** The row with the highest seq, or undefined when the table is empty. */
  head(): Promise<AuditHead | undefined>;
  /** Rows with seq > afterSeq, ascending (the verifier's walk). */
  page(afterSeq: number, limit: number): Promise<AuditRow[]>;
  /** Rows matching every given filter, newest (highest seq) first. */
  query(q: AuditQuery): Promise<AuditRow[]>;
  /**
   * Where retention may cut: the first row to keep when everything older than `cutoff` (ms) goes,
   * that is the lowest seq whose `at` is at or after the cutoff, or the newest row when none is.
   * Retention always deletes a prefix by seq (clocks are not seqs: a later seq may carry an
   * earlier time) and never the newest row, which the chain continues from. Undefined when empty.
   */
  retentionBoundary(cutoff: number): Promise<{ seq: number; prevHash: string } | undefined>;
  /** Deletes every row with a seq below `seq`; returns how many. */
  deleteBefore(seq: number): Promise<number>;
}
