/**
 * Blobs in a container the caller names by a container SAS URI (`https://account.../container?sv=...`),
 * as Azure's import and export jobs take them: read one blob, write one block blob. Sent with
 * node:https, trusting Node's CAs and the hub's own (the embedded store's certificate).
 */
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

function call(method: string, url: string, ca: string | undefined, body?: Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'x-ms-version': '2020-08-04', 'content-length': String(body?.length ?? 0) };
    if (method === 'PUT') headers['x-ms-blob-type'] = 'BlockBlob';
    const req = request(url, { method, headers, timeout: 60_000, ...(ca === undefined ? {} : { ca: [...rootCertificates, ca] }) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('the blob service did not answer in 60 s')));
    req.on('error', reject);
    req.end(body);
  });
}

/** The blob's content; undefined when there is none. */
export async function readBlob(url: string, ca?: string): Promise<Buffer | undefined> {
  const res = await call('GET', url, ca);
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw new Error(`reading the blob failed: HTTP ${res.status}`);
  return res.body;
}

export async function writeBlob(url: string, content: Buffer, ca?: string): Promise<void> {
  const res = await call('PUT', url, ca, content);
  if (res.status !== 201) throw new Error(`writing the blob failed: HTTP ${res.status}`);
}
