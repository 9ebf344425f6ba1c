/**
 * Blobs in a container the caller names by a container SAS URI (`https://account.../container?sv=...`),
 * as Azure's import and export jobs take them: read one blob (whole, or line by line as it streams
 * in), write one block blob (whole, or block by block: Put Block, then Put Block List, so a large
 * export never sits in memory and a job resumed elsewhere commits only the blocks it staged). Sent
 * with node:https, trusting Node's CAs and the hub's own (the embedded store's certificate).
 */
import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import { rootCertificates } from 'node:tls';
import { HubError } from '../../core/errors.js';
import { blobPath } from './blob-storage.js';

/** The URI of blob `name` in the container of `containerSasUri`, with its SAS. */
export function blobInContainer(containerSasUri: string, name: string): string {
  let url: URL;
  try {
    url = new URL(containerSasUri);
  } catch {
    throw new HubError('ArgumentInvalid', 'A blob container URI must be an https:// URI with a SAS.');
  }
  if (url.protocol !== 'https:') throw new HubError('ArgumentInvalid', 'A blob container URI must be https://.');
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/${blobPath(name)}`;
  return url.toString();
}

/** Sends one request; resolves with the response unread (the caller reads or drains it). */
function send(method: string, url: string, ca: string | undefined, body?: Buffer, extra: Record<string, string> = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'x-ms-version': '2020-08-04', 'content-length': String(body?.length ?? 0), ...extra };
    const req = request(url, { method, headers, timeout: 60_000, ...(ca === undefined ? {} : { ca: [...rootCertificates, ca] }) }, resolve);
    req.on('timeout', () => req.destroy(new Error('the blob service did not answer in 60 s')));
    req.on('error', reject);
    req.end(body);
  });
}

async function call(method: string, url: string, ca: string | undefined, body?: Buffer, extra: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> {
  const res = await send(method, url, ca, body, extra);
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return { status: res.statusCode ?? 0, body: Buffer.concat(chunks) };
}

function withQuery(url: string, params: Record<string, string>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

/**
 * The blob's lines as they stream in (no line is split; an empty line is skipped), each with how
 * many bytes of the blob had been read by its end, and the blob's length: for progress. Undefined
 * when there is no blob. Reading pauses while the consumer works on a line.
 */
export async function readBlobLines(url: string, ca?: string): Promise<{ length: number; lines: AsyncGenerator<{ line: string; read: number }> } | undefined> {
  const res = await send('GET', url, ca);
  if (res.statusCode === 404 || res.statusCode !== 200) {
    res.resume();
    if (res.statusCode === 404) return undefined;
    throw new Error(`reading the blob failed: HTTP ${res.statusCode ?? 0}`);
  }
  const length = Number(res.headers['content-length'] ?? 0);
  async function* lines(): AsyncGenerator<{ line: string; read: number }> {
    let rest = Buffer.alloc(0);
    let read = 0;
    try {
      for await (const chunk of res) {
        read += (chunk as Buffer).length;
        let buf = rest.length === 0 ? (chunk as Buffer) : Buffer.concat([rest, chunk as Buffer]);
        let nl: number;
        while ((nl = buf.indexOf(10)) >= 0) {
          const line = buf.subarray(0, nl).toString('utf8').replace(/\r$/, '');
          buf = buf.subarray(nl + 1);
          if (line.trim() !== '') yield { line, read: read - buf.length };
        }
        rest = Buffer.from(buf);
      }
      const last = rest.toString('utf8').replace(/\r$/, '');
      if (last.trim() !== '') yield { line: last, read };
    } finally {
      res.destroy();
    }
  }
  return { length, lines: lines() };
}

/**
 * A block blob written block by block: `stage` uploads one block under an id of the caller's
 * (the same number again replaces it), `commit` makes the blob the listed blocks, in order. Staged
 * blocks that are never committed are dropped by the blob service (after a week, on Azure).
 */
export class BlockBlobWriter {
  constructor(
    private readonly url: string,
    private readonly ca?: string,
  ) {}

  /** The block id of block number `n` (every id of a blob must have the same length). */
  static blockId(n: number): string {
    return Buffer.from(`block-${String(n).padStart(8, '0')}`).toString('base64');
  }

  async stage(n: number, content: Buffer): Promise<string> {
    const id = BlockBlobWriter.blockId(n);
    const res = await call('PUT', withQuery(this.url, { comp: 'block', blockid: id }), this.ca, content);
    if (res.status !== 201) throw new Error(`staging a block failed: HTTP ${res.status}`);
    return id;
  }

  async commit(ids: readonly string[]): Promise<void> {
    const xml = `<?xml version="1.0" encoding="utf-8"?><BlockList>${ids.map((id) => `<Latest>${id}</Latest>`).join('')}</BlockList>`;
    const res = await call('PUT', withQuery(this.url, { comp: 'blocklist' }), this.ca, Buffer.from(xml, 'utf8'), { 'content-type': 'application/xml' });
    if (res.status !== 201) throw new Error(`committing the blob failed: HTTP ${res.status}`);
  }
}
