/**
 * Cloud-to-device queues and delivery feedback [DOCS: Send cloud-to-device messages from IoT Hub].
 * Filled in by the C2D work; see src/hub/c2d/.
 */
export type AckMode = 'none' | 'positive' | 'negative' | 'full';
export type FeedbackStatus = 'Success' | 'Expired' | 'DeliveryCountExceeded' | 'Rejected' | 'Purged';

export interface C2dMessage {
  deviceId: string;
  /** Queue order, assigned by the store. */
  seq: number;
  messageId: string;
  correlationId: string | null;
  userId: string | null;
  /** `/devices/{id}/messages/devicebound`. */
  to: string;
  ack: AckMode;
  contentType: string | null;
  contentEncoding: string | null;
  properties: Record<string, string>;
  body: Buffer;
  enqueuedTime: string;
  expiryTime: string;
  deliveryCount: number;
  /** Set while the message is locked for a delivery attempt. */
  lockToken: string | null;
  lockedUntil: string | null;
}

export interface FeedbackRecord {
  seq: number;
  originalMessageId: string;
  deviceGenerationId: string;
  deviceId: string;
  enqueuedTimeUtc: string;
  statusCode: FeedbackStatus;
  description: string;
}

/** The C2D work defines this store's methods. */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface C2dStore {}
