/**
 * Which blob store file uploads use, opened at start: the storage account of
 * `--storage-connection-string`, or else (on a single node) the embedded Azurite, whose account
 * key the hub generates once and keeps sealed under the master key like every other secret.
 * A cluster node without a connection string has none: its nodes would not share one embedded
 * store, so file upload answers that it needs a storage account there.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { ServerTls } from '../../pki/server-tls.js';
import type { MetaStore } from '../../store/ports.js';
import { startAzurite, type EmbeddedAzurite } from './azurite.js';
import { BlobStorage, parseStorageConnectionString } from './blob-storage.js';
import { UPLOAD_CONTAINER } from './file-upload-service.js';

/** Azurite's default account name, kept (Microsoft's e2e settings use it); its key is ours. */
export const EMBEDDED_ACCOUNT = 'devstoreaccount1';
const ACCOUNT_KEY_META = 'storage.embedded-account-key';
/** Under the data dir. */
export const BLOB_DIR = 'blob';

export type BlobStoreKind = 'azurite' | 'account' | 'none';

export interface OpenedBlobStore {
  kind: BlobStoreKind;
  storage: BlobStorage | undefined;
  /** Where the hub's HTTPS port forwards `/devstoreaccount1/...` (the embedded store only; started on demand). */
  proxy: { accountName: string; port: () => Promise<number>; ca: string } | undefined;
  stop(): Promise<void>;
}

/** The embedded store's account key: made at the first start (64 random bytes, as Azure's), sealed. */
export async function embeddedAccountKey(meta: MetaStore): Promise<string> {
  return (await meta.getSecretMeta(ACCOUNT_KEY_META)) ?? meta.insertSecretMetaIfAbsent(ACCOUNT_KEY_META, randomBytes(64).toString('base64'));
}

/** The key, if a start ever made one (read by `gatehouse info`). */
export function storedEmbeddedAccountKey(meta: MetaStore): Promise<string | undefined> {
  return meta.getSecretMeta(ACCOUNT_KEY_META);
}

/** `https://host[:port]/devstoreaccount1`: the embedded store as devices and services reach it. */
export function embeddedBlobEndpoint(hostname: string, httpsPort: number): string {
  return `https://${hostname}${httpsPort === 443 ? '' : `:${httpsPort}`}/${EMBEDDED_ACCOUNT}`;
}

/** A connection string for @azure/storage-blob (and Azure Storage Explorer) to the embedded store. */
export function embeddedStorageConnectionString(hostname: string, httpsPort: number, key: string): string {
  return `DefaultEndpointsProtocol=https;AccountName=${EMBEDDED_ACCOUNT};AccountKey=${key};BlobEndpoint=${embeddedBlobEndpoint(hostname, httpsPort)};`;
}

export async function openBlobStore(opts: {
  /** The hub's --storage-connection-string, --hostname and --https-port. */
  config: { storageConnectionString?: string | undefined; hostname: string; httpsPort: number };
  /** False on a cluster node: no embedded store. */
  embedded: boolean;
  dataDir: string;
  meta: MetaStore;
  tls: ServerTls;
  logger: Logger;
}): Promise<OpenedBlobStore> {
  if (opts.config.storageConnectionString !== undefined) {
    const account = parseStorageConnectionString(opts.config.storageConnectionString);
    const storage = new BlobStorage(account);
    await storage.ensureContainer(UPLOAD_CONTAINER);
    opts.logger.info({ event: 'files.storage', account: account.accountName, endpoint: account.blobEndpoint }, 'file upload goes to a storage account');
    return { kind: 'account', storage, proxy: undefined, stop: async () => undefined };
  }
  if (!opts.embedded) {
    opts.logger.warn({ event: 'files.no-storage' }, 'file upload is off on this cluster node: give every node --storage-connection-string');
    return { kind: 'none', storage: undefined, proxy: undefined, stop: async () => undefined };
  }
  const key = await embeddedAccountKey(opts.meta);
  // Started at its first use (a SAS asked for, a request under /devstoreaccount1, an upload
  // reported): a hub that never sees a file upload never runs it.
  let running: Promise<EmbeddedAzurite> | undefined;
  const start = (): Promise<EmbeddedAzurite> =>
    (running ??= (async () => {
      const cert = await opts.tls.issueLoopback();
      const azurite = await startAzurite({ dir: join(opts.dataDir, BLOB_DIR), accountName: EMBEDDED_ACCOUNT, accountKey: key, ...cert, logger: opts.logger });
      try {
        await new BlobStorage({ accountName: EMBEDDED_ACCOUNT, accountKey: key, blobEndpoint: azurite.endpoint, ca: opts.tls.caPem }).ensureContainer(UPLOAD_CONTAINER);
      } catch (err) {
        await azurite.stop();
        throw err;
      }
      return azurite;
    })().catch((err: unknown) => {
      running = undefined;
      throw err;
    }));
  const storage = new BlobStorage({
    accountName: EMBEDDED_ACCOUNT,
    accountKey: key,
    blobEndpoint: async () => (await start()).endpoint,
    publicEndpoint: embeddedBlobEndpoint(opts.config.hostname, opts.config.httpsPort),
    ca: opts.tls.caPem,
  });
  return {
    kind: 'azurite',
    storage,
    proxy: { accountName: EMBEDDED_ACCOUNT, port: async () => (await start()).port, ca: opts.tls.caPem },
    async stop() {
      const azurite = await running?.catch(() => undefined);
      await azurite?.stop();
    },
  };
}
