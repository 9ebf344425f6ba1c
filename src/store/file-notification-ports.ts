/**
 * File upload notifications [DOCS: Upload files from your device to the cloud with IoT Hub]: one
 * record per completed upload, numbered in commit order, read by the shared notification queue
 * (hub/files/file-notifications.ts) and pruned once older than their time to live.
 */
export interface FileNotificationRecord {
  seq: number;
  deviceId: string;
  /** The notification as the service receives it (JSON). */
  body: string;
  /** When it was enqueued (ms). */
  enqueuedAt: number;
}

export interface FileNotificationStore {
  /** Appends one notification; its seq commits in seq order across nodes. */
  append(deviceId: string, body: string, now: number): Promise<number>;
  /** Notifications with seq > `after`, oldest first. */
  read(after: number, limit: number): Promise<FileNotificationRecord[]>;
  /** Deletes those enqueued before `before`; returns how many. */
  prune(before: number): Promise<number>;
}
