/**
 * The audit log's keyed hash chain: how a row's hash is computed, where the key, the checkpoint
 * and the retention anchor live, and the verifier that walks the table.
 *
 *   hash(row) = HMAC-SHA256(chainKey, prevHash ‖ canonicalJson(row fields, seq and at included))
 *
 * The chain key is 32 random bytes sealed in the store's secret meta under the master key. So is
 * the checkpoint (the last seq and hash the hub wrote) and the anchor (the first row retention
 * kept and the prevHash it had). Someone who can write the database but lacks the master key can
 * neither recompute a hash after an edit nor move the checkpoint or anchor to hide a cut.
 *
 * What a valid chain does not prove: that the hub recorded every event (it records what it was
 * told), or that the whole database was not rolled back to an earlier, intact copy (keep the
 * `lastHash` of a verify somewhere else to detect that).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AuditRow, AuditStore } from '../store/audit-ports.js';
import type { MetaStore } from '../store/ports.js';

/** The prevHash of seq 1. */
export const GENESIS = '0'.repeat(64);

export const CHAIN_KEY_META = 'audit.chain-key';
export const CHECKPOINT_META = 'audit.checkpoint';
export const ANCHOR_META = 'audit.anchor';

/** The fields a hash covers (everything but the hashes themselves). */
export type AuditFields = Omit<AuditRow, 'prevHash' | 'hash'>;

/** One fixed key order, primitives only: the same text on every backend and every run. */
export function canonicalRow(r: AuditFields): string {
  return JSON.stringify([
    r.seq,
    r.at,
    r.type,
    r.subject,
    r.identity,
    r.outcome,
    r.reason,
    r.reasonCode,
    r.remote,
    r.protocol,
    r.method,
    r.tls,
    r.actor,
    r.action,
    r.target,
    r.beforeJson,
    r.afterJson,
  ]);
}

export function chainHash(key: Buffer, prevHash: string, r: AuditFields): string {
  return createHmac('sha256', key).update(prevHash, 'utf8').update(canonicalRow(r), 'utf8').digest('hex');
}

function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Links fields into rows after `head` (genesis when undefined), in order. */
export function chainRows(key: Buffer, head: { seq: number; hash: string } | undefined, entries: readonly Omit<AuditFields, 'seq'>[]): AuditRow[] {
  let seq = head?.seq ?? 0;
  let prevHash = head?.hash ?? GENESIS;
  return entries.map((e) => {
    const fields: AuditFields = { ...e, seq: ++seq };
    const hash = chainHash(key, prevHash, fields);
    const row: AuditRow = { ...fields, prevHash, hash };
    prevHash = hash;
    return row;
  });
}

/** The chain key, created (32 random bytes) when `create` and there is none yet. */
/**
 * Creates the chain key where there is none; `created` is true only for the node whose key was kept
 * (two nodes starting at once: the other one found the key, even though it was not there at first).
 */
export async function createChainKey(meta: MetaStore): Promise<{ key: Buffer; created: boolean }> {
  const mine = randomBytes(32).toString('base64');
  const kept = await meta.insertSecretMetaIfAbsent(CHAIN_KEY_META, mine);
  return { key: Buffer.from(kept, 'base64'), created: kept === mine };
}

export async function loadChainKey(meta: MetaStore, create: boolean): Promise<Buffer | undefined> {
  const stored = await meta.getSecretMeta(CHAIN_KEY_META);
  if (stored !== undefined) return Buffer.from(stored, 'base64');
  if (!create) return undefined;
  // Inserted only where there is none: when two nodes raced, both use the one that was kept.
  return Buffer.from(await meta.insertSecretMetaIfAbsent(CHAIN_KEY_META, randomBytes(32).toString('base64')), 'base64');
}

export interface ChainPoint {
  seq: number;
  hash: string;
}

function parsePoint(text: string | undefined, field: 'hash' | 'prevHash'): ChainPoint | undefined {
  if (text === undefined) return undefined;
  const v = JSON.parse(text) as Record<string, unknown>;
  const h = v[field];
  if (typeof v.seq !== 'number' || typeof h !== 'string') throw new Error('malformed');
  return { seq: v.seq, hash: h };
}

export async function readCheckpoint(meta: MetaStore): Promise<ChainPoint | undefined> {
  return parsePoint(await meta.getSecretMeta(CHECKPOINT_META), 'hash');
}

export async function writeCheckpoint(meta: MetaStore, head: ChainPoint): Promise<void> {
  await meta.setSecretMeta(CHECKPOINT_META, JSON.stringify({ seq: head.seq, hash: head.hash }));
}

/** The anchor's `hash` is the prevHash of its row (the hash of the last row retention deleted). */
export async function readAnchor(meta: MetaStore): Promise<ChainPoint | undefined> {
  return parsePoint(await meta.getSecretMeta(ANCHOR_META), 'prevHash');
}

export async function writeAnchor(meta: MetaStore, seq: number, prevHash: string): Promise<void> {
  await meta.setSecretMeta(ANCHOR_META, JSON.stringify({ seq, prevHash }));
}

function gone(from: number, to: number): string {
  return from === to ? `row ${from} is gone` : `rows ${from}..${to} are gone`;
}

export type AuditProblemKind = 'edited' | 'missing' | 'inserted' | 'truncated';

export interface AuditProblem {
  seq: number;
  kind: AuditProblemKind;
  detail: string;
}

export interface AuditVerifyResult {
  ok: boolean;
  /** Rows whose hash was recomputed. */
  checked: number;
  firstSeq: number | null;
  lastSeq: number | null;
  /** The hash of the last row: record it elsewhere to detect a rollback of the whole database later. */
  lastHash: string | null;
  /**
   * Where the walk began: `genesis` (seq 1, prevHash all zeros) or `retention` (older rows were
   * pruned; the first remaining row's prevHash is the anchor, checked against the sealed one).
   */
  start: { from: 'genesis' | 'retention'; seq: number; prevHash: string } | null;
  /** The last seq the hub recorded writing (sealed), against which a cut tail shows. */
  checkpointSeq: number | null;
  problems: AuditProblem[];
}

export interface VerifyOptions {
  /** Stop after this many problems (default 5). */
  maxProblems?: number;
  pageSize?: number;
}

/** Walks every row by seq and reports what does not chain. Never writes. */
export async function verifyAuditChain(audit: AuditStore, meta: MetaStore, opts: VerifyOptions = {}): Promise<AuditVerifyResult> {
  const maxProblems = opts.maxProblems ?? 5;
  const pageSize = opts.pageSize ?? 1000;
  const problems: AuditProblem[] = [];
  const report = (seq: number, kind: AuditProblemKind, detail: string) => {
    if (problems.length < maxProblems) problems.push({ seq, kind, detail });
  };
  // The checkpoint first: rows it vouches for were committed before it was written.
  let checkpoint: ChainPoint | undefined;
  let checkpointBroken = false;
  try {
    checkpoint = await readCheckpoint(meta);
  } catch {
    checkpointBroken = true;
  }
  const key = await loadChainKey(meta, false);
  let page = await audit.page(0, pageSize);
  // After the first page: a prune that ran meanwhile wrote its anchor before it deleted.
  let anchor: ChainPoint | undefined;
  let anchorBroken = false;
  try {
    anchor = await readAnchor(meta);
  } catch {
    anchorBroken = true;
  }
  const result: AuditVerifyResult = {
    ok: false,
    checked: 0,
    firstSeq: null,
    lastSeq: null,
    lastHash: null,
    start: null,
    checkpointSeq: checkpoint?.seq ?? null,
    problems,
  };
  const first = page[0];
  if (first === undefined) {
    if (checkpoint !== undefined) {
      const from = anchor?.seq ?? 1;
      report(from, 'truncated', `the log is empty, but the hub had written up to seq ${checkpoint.seq}: ${gone(from, checkpoint.seq)}`);
    }
    if (checkpointBroken) report(0, 'edited', 'the sealed checkpoint does not open: it was altered outside the hub');
    result.ok = problems.length === 0;
    return result;
  }
  if (key === undefined) {
    report(first.seq, 'edited', 'the chain key is missing from the store: no row can be verified');
    result.firstSeq = first.seq;
    return result;
  }
  if (checkpointBroken) report(first.seq, 'edited', 'the sealed checkpoint does not open: it was altered outside the hub');
  if (anchorBroken) report(first.seq, 'edited', 'the sealed retention anchor does not open: it was altered outside the hub');

  // Where the chain must begin.
  result.firstSeq = first.seq;
  const expectedFirst = anchor?.seq ?? 1;
  if (first.seq === 1) {
    result.start = { from: 'genesis', seq: 1, prevHash: GENESIS };
    if (!sameHash(first.prevHash, GENESIS)) report(1, 'edited', 'seq 1 does not start from the genesis hash');
  } else {
    result.start = { from: 'retention', seq: first.seq, prevHash: first.prevHash };
    if (first.seq > expectedFirst) {
      const why = anchor === undefined ? 'retention never removed any' : `retention only removed rows before seq ${expectedFirst}`;
      report(expectedFirst, 'missing', `${gone(expectedFirst, first.seq - 1)}: ${why}`);
    }
  }

  let prev: { seq: number; hash: string; bad: boolean } | undefined;
  let checkpointRowHash: string | undefined;
  walk: while (page.length > 0) {
    for (const row of page) {
      if (problems.length >= maxProblems) break walk;
      const selfOk = sameHash(chainHash(key, row.prevHash, row), row.hash);
      let contiguous = true;
      if (prev !== undefined && row.seq > prev.seq + 1) {
        contiguous = false;
        report(prev.seq + 1, 'missing', gone(prev.seq + 1, row.seq - 1));
      }
      if (!selfOk) {
        if (checkpoint !== undefined && row.seq > checkpoint.seq) {
          report(row.seq, 'inserted', `beyond the last seq the hub recorded writing (${checkpoint.seq}) and not hashed with the chain key`);
        } else {
          report(row.seq, 'edited', 'its hash does not match its contents: changed after it was written');
        }
      } else if (prev !== undefined && contiguous && !prev.bad && !sameHash(row.prevHash, prev.hash)) {
        report(row.seq, 'inserted', `a validly hashed row that does not follow seq ${prev.seq}: copied in from another copy of the log`);
      } else if (anchor !== undefined && row.seq === anchor.seq && !sameHash(row.prevHash, anchor.hash)) {
        report(row.seq, 'edited', 'its prevHash is not the one retention recorded when it pruned before it');
      }
      if (checkpoint !== undefined && row.seq === checkpoint.seq) checkpointRowHash = row.hash;
      result.checked++;
      prev = { seq: row.seq, hash: row.hash, bad: !selfOk };
    }
    const last = page.at(-1);
    if (last === undefined || page.length < pageSize) break;
    // One event-loop turn between pages: a long walk must not stall the hub (SQLite reads are synchronous).
    await new Promise<void>((resolve) => setImmediate(resolve));
    page = await audit.page(last.seq, pageSize);
  }
  if (prev !== undefined) {
    result.lastSeq = prev.seq;
    result.lastHash = prev.hash;
  }
  if (problems.length < maxProblems && prev !== undefined) {
    if (checkpoint === undefined) {
      if (!checkpointBroken) report(prev.seq + 1, 'truncated', 'the checkpoint is missing, so a cut tail cannot be ruled out');
    } else if (prev.seq < checkpoint.seq) {
      report(prev.seq + 1, 'truncated', `the hub had written up to seq ${checkpoint.seq}; ${gone(prev.seq + 1, checkpoint.seq)}`);
    } else if (checkpointRowHash !== undefined && !sameHash(checkpointRowHash, checkpoint.hash)) {
      report(checkpoint.seq, 'edited', 'its hash is not the one the hub recorded in its checkpoint');
    }
  }
  result.ok = problems.length === 0;
  return result;
}
