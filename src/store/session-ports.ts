/** Persistent MQTT session state (CleanSession=0): survives reconnects and hub restarts. */

export interface MqttSubscription {
  topic: string;
  qos: 0 | 1;
}

export interface SessionStore {
  /** Subscriptions of a client id ("deviceId" or "deviceId/moduleId"). */
  getSubscriptions(clientId: string): Promise<MqttSubscription[]>;
  /** Replaces the whole subscription set. */
  setSubscriptions(clientId: string, subs: readonly MqttSubscription[]): Promise<void>;
  deleteSession(clientId: string): Promise<void>;
}
