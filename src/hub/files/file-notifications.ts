/**
 * File upload notifications for the service (`/messages/serviceBound/filenotifications`, the
 * receiver azure-iothub's Client.getFileNotificationReceiver attaches): one shared queue for the
 * cluster (hub/shared-queue.ts) over the stored notifications, one notification per delivery,
 * each delivered once: a receiver's accept (or reject) completes it, a release or a lapsed lock
 * hands it out again, at most `fileUpload.notificationMaxDeliveryCount` times, and one older than
 * `fileUpload.notificationTtlAsIso8601` is never handed out (Azure's fileNotifications endpoint).
 */
import type { Clock } from '../../core/clock.js';
import { isoDurationMs, type HubSettingsBody } from '../../core/settings.js';
import type { CounterStore } from '../../store/counter-ports.js';
import type { FileNotificationRecord, FileNotificationStore } from '../../store/file-notification-ports.js';
import { SharedQueue } from '../shared-queue.js';

export function fileNotificationQueue(deps: {
  counters: CounterStore;
  notifications: FileNotificationStore;
  settings: () => Pick<HubSettingsBody, 'fileUpload'>;
  clock: Clock;
  lockMs: number;
}): SharedQueue<FileNotificationRecord> {
  return new SharedQueue<FileNotificationRecord>({
    counters: deps.counters,
    key: 'files:notifications',
    read: (after, limit) => deps.notifications.read(after, limit),
    clock: deps.clock,
    lockMs: deps.lockMs,
    maxDeliveries: () => deps.settings().fileUpload.notificationMaxDeliveryCount,
    expired: (r, now) => r.enqueuedAt + isoDurationMs(deps.settings().fileUpload.notificationTtlAsIso8601) <= now,
  });
}
