/**
 * One fuzz input and its file in the corpus. Credentials are not stored: an input that runs after
 * authentication names who it speaks as (`auth`, `device`) and the harness puts a fresh
 * authenticating prefix in front of it (a CONNECT, a CBS put-token, an Authorization header) for
 * whichever hub replays it.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const PROTOCOLS = ['mqtt', 'mqtt-ws', 'amqp', 'amqp-ws', 'http', 'query'] as const;
export type Protocol = (typeof PROTOCOLS)[number];
export type Auth = 'none' | 'device' | 'service';

export interface FuzzInput {
  protocol: Protocol;
  auth: Auth;
  /** What made it: the seed session and mutation, or the generator. */
  kind: string;
  chunks: Buffer[];
}

export interface CorpusEntry {
  protocol: Protocol;
  auth: Auth;
  kind: string;
  /** Why it was saved: crash, hang, or an answer the hub must not give (HTTP 500). */
  finding: string;
  chunks: string[];
}

export function inputHash(input: FuzzInput): string {
  const h = createHash('sha256').update(`${input.protocol}\n${input.auth}\n`);
  for (const c of input.chunks) h.update(c).update('\u0000');
  return h.digest('hex').slice(0, 16);
}

/** Writes `<dir>/<protocol>/<hash>.json`; returns its path. */
export function saveToCorpus(dir: string, input: FuzzInput, finding: string): string {
  const folder = join(dir, input.protocol);
  mkdirSync(folder, { recursive: true });
  const entry: CorpusEntry = { protocol: input.protocol, auth: input.auth, kind: input.kind, finding, chunks: input.chunks.map((c) => c.toString('base64')) };
  const path = join(folder, `${inputHash(input)}.json`);
  writeFileSync(path, `${JSON.stringify(entry, null, 1)}\n`);
  return path;
}

export function readCorpus(dir: string): Array<{ path: string; input: FuzzInput; finding: string }> {
  const out: Array<{ path: string; input: FuzzInput; finding: string }> = [];
  let protocols: string[];
  try {
    protocols = readdirSync(dir);
  } catch {
    return out;
  }
  for (const p of protocols.sort()) {
    if (!(PROTOCOLS as readonly string[]).includes(p)) continue;
    for (const f of readdirSync(join(dir, p)).sort()) {
      if (!f.endsWith('.json')) continue;
      const path = join(dir, p, f);
      const e = JSON.parse(readFileSync(path, 'utf8')) as CorpusEntry;
      out.push({ path, finding: e.finding, input: { protocol: e.protocol, auth: e.auth, kind: e.kind, chunks: e.chunks.map((c) => Buffer.from(c, 'base64')) } });
    }
  }
  return out;
}
