import type { MqttSubscription, SessionStore } from '../session-ports.js';
import type { SqlDriver } from './driver.js';

export class SqlSessionStore implements SessionStore {
  constructor(private readonly db: SqlDriver) {}

  async getSubscriptions(clientId: string): Promise<MqttSubscription[]> {
    const rows = await this.db.all('SELECT subscriptions FROM mqtt_sessions WHERE client_id = ?', [clientId]);
    const raw = rows[0]?.subscriptions;
    return typeof raw === 'string' ? (JSON.parse(raw) as MqttSubscription[]) : [];
  }

  async setSubscriptions(clientId: string, subs: readonly MqttSubscription[]): Promise<void> {
    await this.db.run(
      `INSERT INTO mqtt_sessions (client_id, subscriptions, updated) VALUES (?, ?, ?)
       ON CONFLICT (client_id) DO UPDATE SET subscriptions = excluded.subscriptions, updated = excluded.updated`,
      [clientId, JSON.stringify(subs), new Date().toISOString()],
    );
  }

  async deleteSession(clientId: string): Promise<void> {
    await this.db.run('DELETE FROM mqtt_sessions WHERE client_id = ?', [clientId]);
  }
}
