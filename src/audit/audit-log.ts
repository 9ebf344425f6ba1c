/**
 * The audit log: every authentication decision and every change reported on the SecurityEvents
 * stream, appended to the store as a keyed hash chain (audit-chain.ts).
 *
 * One in-process writer. Events are queued in emission order as they arrive (the listener never
 * waits) and written in batches: within `flushMs` (100 ms), at once when `batchSize` (500) are
 * waiting, one transaction per batch, seqs and hashes computed in memory from the head read at start. After
 * each batch the sealed checkpoint moves to the new head, so a cut tail shows in `verify`.
 *
 * A write that fails keeps its entries queued and is retried with a growing delay; the process
 * carries on. If the queue fills up (the store down for long), further entries are counted and a
 * marker row records how many were lost once writing works again.
 *
 * Connection refusals (IP filter, refused TLS handshakes: no identity, cheap to repeat) are
 * folded per address, protocol and reason: the first of an interval (`refusalIntervalMs`, a
 * minute) at once, the rest as one summary row when it ends (audit-refusals.ts).
 *
 * Retention deletes rows older than `retentionDays` (always a prefix by seq, never the newest
 * row) at start and every hour, after sealing the anchor the verifier starts from.
 *
 * Nothing secret is written: change payloads pass through `redactSecrets` (again: the producers
 * already do) and the presented-credential digest of auth events is not kept (audit-entries.ts).
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import { HubError } from '../core/errors.js';
import type { AuditStore } from '../store/audit-ports.js';
import type { MetaStore } from '../store/ports.js';
import {
  chainRows,
  createChainKey,
  loadChainKey,
  readCheckpoint,
  verifyAuditChain,
  writeAnchor,
  writeCheckpoint,
  type AuditVerifyResult,
  type ChainPoint,
} from './audit-chain.js';
import { fromAuth, fromChange, queryAuditLog, type AuditFilters, type AuditPage, type PendingEntry } from './audit-entries.js';
import { ConnectionRefusals, isConnectionRefusal } from './audit-refusals.js';
import type { AuthEvent, SecurityEvents } from '../core/security-events.js';
import type { HubSettings } from '../core/settings.js';
import { SUBJECTS, type HubBus } from '../bus/subjects.js';

export interface AuditLogOptions {
  /** Days rows are kept; 0 keeps them forever. Default 90. */
  retentionDays?: number;
  /** Longest an entry waits before its batch is written. Default 100 ms. */
  flushMs?: number;
  /** Entries per transaction; this many waiting triggers a write at once. Default 500. */
  batchSize?: number;
  /** How often retention runs. Default one hour. */
  pruneIntervalMs?: number;
  /** Entries held while the store cannot be written; beyond that they are counted and dropped. Default 50,000. */
  maxPending?: number;
  /** How long repeated connection refusals of one kind from one address fold into one summary row. Default one minute. */
  refusalIntervalMs?: number;
}

export type AuditLogStore = MetaStore & { readonly audit: AuditStore };

const DAY_MS = 86_400_000;
const MAX_RETRY_MS = 5000;
/** Appends lost to another writer in a row before a drain gives up (its entries wait for the next). */
const MAX_CONFLICTS = 20;
/** Rows per DELETE while pruning, so a large prune never holds the write lock for long. */
const PRUNE_CHUNK = 10_000;

/** Longest a drain writes batches without letting the event loop turn. */
const MAX_BUSY_MS = 20;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export class AuditLog {
  readonly #retentionMs: number;
  readonly #flushMs: number;
  readonly #batchSize: number;
  readonly #pruneIntervalMs: number;
  readonly #maxPending: number;
  readonly #pending: PendingEntry[] = [];
  readonly #unsubscribe: () => void;
  #enabled = true;
  #started = false;
  #stopped = false;
  #key: Buffer | undefined;
  /** The last row written (undefined: none yet); `#headLoaded` false until read from the store. */
  #head: ChainPoint | undefined;
  #headLoaded = false;
  /** The head was compared with the checkpoint once (at start). */
  #headChecked = false;
  /** This process created the chain key while rows were already stored: their key is gone. */
  #keyWasNew = false;
  #writer: Promise<void> | undefined;
  #pruning: Promise<number> | undefined;
  #flushTimer: NodeJS.Timeout | undefined;
  #flushDue = 0;
  #pruneTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  #dropped = 0;
  readonly #refusals: ConnectionRefusals;
  #refusalTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: AuditLogStore,
    events: SecurityEvents,
    private readonly clock: Clock,
    private readonly logger: Logger,
    opts: AuditLogOptions = {},
  ) {
    const days = opts.retentionDays ?? 90;
    if (!Number.isInteger(days) || days < 0) throw new Error('retentionDays must be a whole number of days, 0 to keep forever');
    this.#retentionMs = days * DAY_MS;
    this.#flushMs = opts.flushMs ?? 100;
    this.#batchSize = opts.batchSize ?? 500;
    this.#pruneIntervalMs = opts.pruneIntervalMs ?? 3_600_000;
    this.#maxPending = opts.maxPending ?? 50_000;
    this.#refusals = new ConnectionRefusals(opts.refusalIntervalMs ?? 60_000);
    // Subscribed from construction: what happens before start() is queued, not lost.
    this.#unsubscribe = events.on((e) => {
      if (e.type === 'auth') {
        if (!this.#enabled) return;
        if (isConnectionRefusal(e)) this.#enqueueAuth(this.#refusals.take(e, this.clock.now()));
        else this.#enqueue(fromAuth(e, this.#timeOf(e.at)));
      } else if (e.type === 'change') {
        this.#enqueue(fromChange(e, this.#timeOf(e.at)));
      }
    });
  }

  /** Whether authentication decisions are recorded (changes always are). */
  get enabled(): boolean {
    return this.#enabled;
  }

  /**
   * The settings' switch for recording authentication decisions (changes are always recorded), now
   * and whenever any node changes it.
   */
  followSettings(initial: HubSettings, bus: HubBus): void {
    this.setEnabled(initial.auditLog.enabled);
    bus.subscribe(SUBJECTS.settingsChanged, ({ settings }) => this.setEnabled(settings.auditLog.enabled));
  }

  setEnabled(enabled: boolean): void {
    if (enabled === this.#enabled) return;
    this.#enabled = enabled;
    this.logger.info({ event: 'audit.auth-recording', enabled }, enabled ? 'audit log records authentication decisions' : 'audit log no longer records authentication decisions');
  }

  /** Reads the chain key and head (creating the key on first use), writes what is queued, starts retention. Never rejects. */
  async start(): Promise<void> {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    try {
      await this.#ready();
    } catch (err) {
      this.logger.error({ err, event: 'audit.start-failed' }, 'audit log could not read its head; will retry on the next write');
    }
    this.#refusalTimer = setInterval(() => this.#enqueueAuth(this.#refusals.drain(this.clock.now())), this.#refusals.intervalMs);
    this.#refusalTimer.unref();
    if (this.#retentionMs > 0) {
      // prune and flush never reject: a failure is logged (and a flush's entries stay queued).
      this.#pruneTimer = setInterval(() => void this.prune(), this.#pruneIntervalMs);
      this.#pruneTimer.unref();
      void this.prune();
    }
    if (this.#pending.length > 0) this.#schedule(0);
  }

  /** Stops recording, waits for retention, writes everything queued (one last attempt). */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#unsubscribe();
    clearInterval(this.#refusalTimer);
    this.#enqueueAuth(this.#refusals.drain(this.clock.now(), true));
    if (this.#pruneTimer !== undefined) clearInterval(this.#pruneTimer);
    this.#pruneTimer = undefined;
    await this.#pruning;
    await this.#writer;
    if (this.#pending.length > 0) await this.flush();
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (this.#pending.length > 0 || this.#dropped > 0) {
      this.logger.error({ event: 'audit.lost', count: this.#pending.length + this.#dropped }, 'audit entries could not be written before stopping');
    }
  }

  /** Writes what is queued now. Never rejects: a failure is logged and the entries stay queued. */
  flush(): Promise<void> {
    if (this.#flushTimer !== undefined) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#writer ??= this.#drain().finally(() => {
      this.#writer = undefined;
      if (this.#pending.length > 0 && !this.#stopped) {
        this.#schedule(this.#failures > 0 ? Math.min(MAX_RETRY_MS, this.#flushMs * 2 ** this.#failures) : this.#pending.length >= this.#batchSize ? 0 : this.#flushMs);
      }
    });
    return this.#writer;
  }

  /** Entries waiting to be written. */
  get pending(): number {
    return this.#pending.length;
  }

  async query(filters: AuditFilters): Promise<AuditPage> {
    await this.flush();
    return queryAuditLog(this.store.audit, filters);
  }

  async verify(): Promise<AuditVerifyResult> {
    await this.flush();
    return verifyAuditChain(this.store.audit, this.store);
  }

  /** Deletes rows older than the retention, after sealing the anchor. Never rejects; returns how many went. */
  prune(): Promise<number> {
    if (this.#retentionMs === 0) return Promise.resolve(0);
    this.#pruning ??= (async () => {
      try {
        const audit = this.store.audit;
        const boundary = await audit.retentionBoundary(this.clock.now() - this.#retentionMs);
        const first = (await audit.page(0, 1))[0];
        if (boundary === undefined || first === undefined || first.seq >= boundary.seq) return 0;
        // Anchor first: if the deletes stop half way, the rows left still chain up to it.
        await writeAnchor(this.store, boundary.seq, boundary.prevHash);
        let deleted = 0;
        for (let upTo = Math.min(first.seq + PRUNE_CHUNK, boundary.seq); ; upTo = Math.min(upTo + PRUNE_CHUNK, boundary.seq)) {
          deleted += await audit.deleteBefore(upTo);
          if (upTo >= boundary.seq) break;
          await nextTurn();
        }
        this.logger.info({ event: 'audit.pruned', count: deleted, firstSeq: boundary.seq }, 'pruned old audit entries');
        this.#enqueue(
          fromChange(
            { type: 'change', at: this.clock.now(), actor: 'hub', action: 'audit.prune', target: 'auditLog', after: { deleted, firstSeq: boundary.seq, retentionDays: this.#retentionMs / DAY_MS } },
            this.clock.now(),
          ),
        );
        return deleted;
      } catch (err) {
        this.logger.error({ err, event: 'audit.prune-failed' }, 'audit retention failed');
        return 0;
      } finally {
        this.#pruning = undefined;
      }
    })();
    return this.#pruning;
  }

  #timeOf(at: number): number {
    return Number.isFinite(at) ? Math.trunc(at) : this.clock.now();
  }

  #enqueueAuth(events: readonly AuthEvent[]): void {
    for (const e of events) this.#enqueue(fromAuth(e, this.#timeOf(e.at)));
  }

  #enqueue(entry: PendingEntry): void {
    // (After stop() the stream is unsubscribed; only the hub's own markers still arrive, and stop flushes them.)
    if (this.#pending.length >= this.#maxPending) {
      if (this.#dropped++ === 0) this.logger.error({ event: 'audit.dropping', pending: this.#pending.length }, 'audit queue full: entries are being dropped');
      return;
    }
    this.#pending.push(entry);
    this.#schedule(this.#pending.length >= this.#batchSize ? 0 : this.#flushMs);
  }

  #schedule(delayMs: number): void {
    if (!this.#started || this.#stopped || this.#writer !== undefined) return; // a running drain takes what comes
    const due = performance.now() + delayMs; // timers run on real time, whatever the injected clock says
    if (this.#flushTimer !== undefined) {
      // Only ever brought forward: re-arming on every entry would starve a busy writer.
      if (due >= this.#flushDue) return;
      clearTimeout(this.#flushTimer);
    }
    this.#flushDue = due;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined;
      void this.flush();
    }, delayMs);
    this.#flushTimer.unref();
  }

  /** The chain key and the head, read once (the head again after a conflict). */
  async #ready(): Promise<Buffer> {
    if (this.#key === undefined) {
      const existing = await loadChainKey(this.store, false);
      if (existing !== undefined) this.#key = existing;
      else {
        // Rows without a key were written under a key that is gone. Read before the insert: once a
        // key exists (ours, or another node's that won the race), other nodes write rows under it.
        const orphans = await this.store.audit.head();
        const made = await createChainKey(this.store);
        this.#key = made.key;
        this.#keyWasNew = made.created && orphans !== undefined;
      }
    }
    if (this.#key === undefined) throw new Error('the audit chain key could not be created');
    if (!this.#headLoaded) {
      // The checkpoint before the head: every writer stores its rows before it moves the
      // checkpoint past them, so a head read after the checkpoint is never behind it unless rows
      // are gone. Read the other way round, another node's append in between looked like a cut tail.
      let checkpoint: ChainPoint | undefined;
      let unreadable = false;
      let stored: ChainPoint | undefined;
      for (let look = 0; ; look++) {
        try {
          checkpoint = await readCheckpoint(this.store);
        } catch (err) {
          unreadable = true;
          this.logger.error({ err, event: 'audit.checkpoint-unreadable' }, 'the audit checkpoint does not open; continuing from the stored head');
        }
        stored = await this.store.audit.head();
        // Rows and no checkpoint: another writer may have stored the chain's first rows and not yet
        // its checkpoint. Look once more, a moment later, before calling it missing.
        if (look > 0 || unreadable || checkpoint !== undefined || stored === undefined) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      let suspect: string | undefined;
      if (checkpoint !== undefined && (stored === undefined || checkpoint.seq > stored.seq)) {
        // The tail was cut: continue after what the hub had written, so the gap stays visible.
        this.logger.error(
          { event: 'audit.tail-missing', lastStored: stored?.seq ?? 0, checkpoint: checkpoint.seq },
          'audit rows the hub wrote are missing from the store; gatehouse audit-log verify reports them',
        );
        suspect = 'audit.tail-missing';
        this.#head = checkpoint;
      } else {
        this.#head = stored;
        if (stored !== undefined && this.#keyWasNew) {
          // Rows exist but their key is gone: they cannot be verified; new rows chain under a new key.
          this.logger.error({ event: 'audit.chain-key-missing', lastStored: stored.seq }, 'the audit chain key is missing; earlier rows can no longer be verified');
          suspect = 'audit.chain-key-missing';
        } else if (unreadable) suspect = 'audit.checkpoint-unreadable';
        else if (checkpoint === undefined && stored !== undefined) {
          // Rows but no checkpoint: whether the tail was cut can no longer be told.
          this.logger.error({ event: 'audit.checkpoint-missing', lastStored: stored.seq }, 'the audit checkpoint is missing; a cut tail can no longer be ruled out');
          suspect = 'audit.checkpoint-missing';
        }
      }
      // Said once, in the chain itself, right after the rows it is about (a re-read after a conflict says nothing new).
      if (suspect !== undefined && !this.#headChecked) {
        const now = this.clock.now();
        this.#pending.unshift(
          fromChange({ type: 'change', at: now, actor: 'hub', action: suspect, target: 'auditLog', after: { lastStoredSeq: stored?.seq ?? 0, checkpointSeq: checkpoint?.seq ?? null } }, now),
        );
      }
      this.#headChecked = true;
      this.#headLoaded = true;
    }
    return this.#key;
  }

  async #drain(): Promise<void> {
    let conflicts = 0;
    let busySince = performance.now();
    while (this.#pending.length > 0) {
      try {
        const key = await this.#ready();
        const batch = this.#pending.slice(0, this.#batchSize);
        const rows = chainRows(key, this.#head, batch);
        await this.store.audit.append(rows);
        this.#pending.splice(0, batch.length);
        const last = rows.at(-1);
        if (last !== undefined) this.#head = { seq: last.seq, hash: last.hash };
        if (this.#failures > 0) this.logger.info({ event: 'audit.append-recovered', attempts: this.#failures }, 'audit log writing again');
        this.#failures = 0;
        this.#recordDropped();
        try {
          if (this.#head !== undefined) await writeCheckpoint(this.store, this.#head);
        } catch (err) {
          this.logger.warn({ err, event: 'audit.checkpoint-failed' }, 'audit checkpoint not updated; the next write retries');
        }
        // A long backlog lets the event loop turn every MAX_BUSY_MS (SQLite writes are
        // synchronous); what arrives meanwhile joins the next batch.
        if (this.#pending.length > 0 && performance.now() - busySince > MAX_BUSY_MS) {
          await nextTurn();
          busySince = performance.now();
        }
      } catch (err) {
        if (err instanceof HubError && err.code === 'PreconditionFailed' && conflicts++ < MAX_CONFLICTS) {
          // Another writer appended (a second hub on the same database, a node's other workers):
          // chain after its rows. After a few losses in a row, a short random pause, so writers
          // that keep meeting stop arriving together.
          this.#headLoaded = false;
          if (conflicts > 2) await new Promise((resolve) => setTimeout(resolve, Math.random() * 4 * conflicts));
          continue;
        }
        this.#failures++;
        if (err instanceof HubError && err.code === 'PreconditionFailed') {
          // Other writers kept winning: nothing is wrong with the store, the entries wait for the retry.
          this.logger.warn({ event: 'audit.append-contended', pending: this.#pending.length, attempt: this.#failures, conflicts: MAX_CONFLICTS }, 'audit append lost to other writers every time; entries kept for the next attempt');
        } else {
          this.logger.error({ err, event: 'audit.append-failed', pending: this.#pending.length, attempt: this.#failures }, 'audit append failed; entries kept for the next attempt');
        }
        return;
      }
    }
  }

  /** Once the queue has room again: one row saying how many entries were lost while it was full. */
  #recordDropped(): void {
    if (this.#dropped === 0 || this.#pending.length >= this.#maxPending) return;
    const count = this.#dropped;
    this.#dropped = 0;
    const now = this.clock.now();
    this.#pending.push(fromChange({ type: 'change', at: now, actor: 'hub', action: 'audit.entries-dropped', target: 'auditLog', after: { count } }, now));
  }
}
