/**
 * File upload as Azure IoT Hub does it [DOCS: Upload files from your device to the cloud with IoT
 * Hub]: a device asks for a SAS URI for one blob named `{deviceId}/{blobName}` in the upload
 * container (`POST /devices/{id}/files`), uploads to the blob store itself, then reports the
 * outcome (`POST /devices/{id}/files/notifications`). A successful upload becomes a file upload
 * notification for the service (file-notifications.ts), when the hub settings ask for them.
 *
 * An upload between the two calls is a shared counter (`file-upload:{correlationId}`), so the
 * device may report to any node of a cluster; it lapses an hour after its SAS does.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import { HubError } from '../../core/errors.js';
import { isJsonObject } from '../../core/json.js';
import { isoDurationMs, type HubSettingsBody } from '../../core/settings.js';
import type { CounterStore } from '../../store/counter-ports.js';
import type { FileNotificationStore } from '../../store/file-notification-ports.js';
import type { BlobStorage } from './blob-storage.js';

/** The container uploads go to (Azure: the one the hub's file upload settings name). */
export const UPLOAD_CONTAINER = 'fileupload';
const PREFIX = 'file-upload:';
/** Azure's blob name limit, the `{deviceId}/` prefix included. */
const MAX_BLOB_NAME = 1024;
const HOUR = 3_600_000;

export interface FileUploadSas {
  correlationId: string;
  hostName: string;
  containerName: string;
  blobName: string;
  sasToken: string;
}

interface PendingUpload {
  deviceId: string;
  blobName: string;
  createdAt: number;
}

export interface FileUploadDeps {
  counters: CounterStore;
  notifications: FileNotificationStore;
  settings: () => Pick<HubSettingsBody, 'fileUpload'>;
  clock: Clock;
}

function checkBlobName(deviceId: string, raw: unknown): string {
  if (typeof raw !== 'string' || raw.trim() === '') throw new HubError('ArgumentInvalid', 'blobName is required: the name of the file to upload.');
  const name = `${deviceId}/${raw}`;
  if (name.length > MAX_BLOB_NAME) throw new HubError('ArgumentInvalid', `The blob name ${deviceId}/{blobName} must be at most ${MAX_BLOB_NAME} characters.`);
  if (/[\u0000-\u001f\u007f\\]/.test(raw)) throw new HubError('ArgumentInvalid', 'blobName must not contain control characters or backslashes.');
  if (raw.split('/').some((s) => s === '' || s === '.' || s === '..')) throw new HubError('ArgumentInvalid', "blobName's path segments must not be empty, '.' or '..'.");
  return name;
}

export class FileUploadService {
  #storage: BlobStorage | undefined;

  constructor(private readonly deps: FileUploadDeps) {}

  /** The blob store (set once it is up: the embedded Azurite starts with the listeners). */
  useStorage(storage: BlobStorage | undefined): void {
    this.#storage = storage;
  }

  get storage(): BlobStorage | undefined {
    return this.#storage;
  }

  #requireStorage(): BlobStorage {
    if (this.#storage === undefined) {
      throw new HubError('InvalidOperation', 'File upload needs a blob store: this hub has none (a cluster node needs --storage-connection-string).');
    }
    return this.#storage;
  }

  /** `POST /devices/{id}/files`: a SAS URI for one new blob of the device's. */
  async start(deviceId: string, body: unknown): Promise<FileUploadSas> {
    const storage = this.#requireStorage();
    if (!isJsonObject(body)) throw new HubError('IotHubFormatError', 'The body must be a JSON object: {"blobName": "..."}.');
    const blobName = checkBlobName(deviceId, body.blobName);
    const now = this.deps.clock.now();
    const ttl = isoDurationMs(this.deps.settings().fileUpload.sasTtlAsIso8601);
    const correlationId = randomBytes(24).toString('base64url');
    const pending: PendingUpload = { deviceId, blobName, createdAt: now };
    await this.deps.counters.update([PREFIX + correlationId], now, () => ({
      writes: new Map([[PREFIX + correlationId, { value: JSON.stringify(pending), expiresAt: now + ttl + HOUR }]]),
      result: undefined,
    }));
    return {
      correlationId,
      hostName: storage.hostName,
      containerName: UPLOAD_CONTAINER,
      blobName,
      sasToken: storage.blobSas(UPLOAD_CONTAINER, blobName, new Date(now + ttl)),
    };
  }

  /**
   * `POST /devices/{id}/files/notifications[/{correlationId}]`: the device's report. Ends the
   * upload either way; a success stores a notification when the settings ask for them.
   */
  async complete(deviceId: string, correlationIdInPath: string | undefined, body: unknown): Promise<void> {
    if (!isJsonObject(body)) throw new HubError('IotHubFormatError', 'The body must be a JSON object: {"correlationId", "isSuccess", "statusCode", "statusDescription"}.');
    const correlationId = correlationIdInPath ?? body.correlationId;
    if (typeof correlationId !== 'string' || correlationId === '') throw new HubError('ArgumentInvalid', 'correlationId is required: the one POST /devices/{id}/files returned.');
    if (typeof body.isSuccess !== 'boolean') throw new HubError('ArgumentInvalid', 'isSuccess must be true or false.');
    if (body.statusCode !== undefined && typeof body.statusCode !== 'number') throw new HubError('ArgumentInvalid', 'statusCode must be a number.');
    if (body.statusDescription !== undefined && body.statusDescription !== null && typeof body.statusDescription !== 'string') {
      throw new HubError('ArgumentInvalid', 'statusDescription must be a string.');
    }
    const key = PREFIX + correlationId;
    const now = this.deps.clock.now();
    // Taken once: a second report of the same upload finds nothing. Another device's is left alone.
    const pending = await this.deps.counters.update([key], now, (current) => {
      const raw = current.get(key);
      const p = raw === undefined ? undefined : (JSON.parse(raw) as PendingUpload);
      if (p === undefined || p.deviceId !== deviceId) return { writes: new Map(), result: undefined };
      return { writes: new Map([[key, { value: null, expiresAt: now }]]), result: p };
    });
    if (pending === undefined) throw new HubError('ResourceNotFound', `No file upload ${correlationId.slice(0, 100)} is open for this device (unknown, already reported, or expired).`);
    if (!body.isSuccess || !this.deps.settings().fileUpload.notifications) return;
    const storage = this.#requireStorage();
    const props = await storage.properties(UPLOAD_CONTAINER, pending.blobName);
    if (props === undefined) throw new HubError('ArgumentInvalid', `The upload was reported a success, but there is no blob ${pending.blobName.slice(0, 200)}.`);
    const notification = {
      deviceId,
      blobUri: storage.blobUri(UPLOAD_CONTAINER, pending.blobName),
      blobName: pending.blobName,
      lastUpdatedTime: props.lastModified.toISOString(),
      blobSizeInBytes: props.size,
      enqueuedTimeUtc: new Date(now).toISOString(),
    };
    await this.deps.notifications.append(deviceId, JSON.stringify(notification), now);
  }

  #pruner: NodeJS.Timeout | undefined;

  /** Prunes expired notifications every minute until stopPruning. */
  startPruning(onError: (err: unknown) => void): void {
    this.#pruner ??= setInterval(() => void this.prune().catch(onError), 60_000);
    this.#pruner.unref();
  }

  stopPruning(): void {
    if (this.#pruner !== undefined) clearInterval(this.#pruner);
    this.#pruner = undefined;
  }

  /** Drops notifications older than their time to live (the queue skips them already). */
  prune(): Promise<number> {
    const ttl = isoDurationMs(this.deps.settings().fileUpload.notificationTtlAsIso8601);
    return this.deps.notifications.prune(this.deps.clock.now() - ttl);
  }
}
