/** AlertStore over a SqlDriver (SQLite and PostgreSQL alike); see alert-store.case.ts. */
import { HubError } from '../../core/errors.js';
import type { JsonObject } from '../../core/json.js';
import type { SecretBox } from '../../core/secret-box.js';
import type { AlertDelivery, AlertRecord, AlertRuleKind, AlertRuleRecord, AlertState, AlertStore } from '../alert-ports.js';
import type { SqlDriver, SqlRow, SqlValue } from './driver.js';
import { str as text, strOrNull as textOrNull } from './rows.js';

const RULE_COLUMNS = 'name, kind, enabled, scope, reasons, threshold, window_seconds, days, log_action, webhook_url, webhook_secret, created, updated';
const ALERT_COLUMNS =
  'id, rule, kind, alert_key, state, value, threshold, window_seconds, fired_at, resolved_at, summary, details, deliveries, last_delivery';

const secretContext = (name: string) => `alert-rule:${name}:webhook`;

function numOrNull(r: SqlRow, col: string): number | null {
  const v = r[col];
  return v === null || v === undefined ? null : Number(v);
}

/** A JSON array of reason codes (schema v12); anything else reads as no filter. */
function reasonsFromText(t: string | null): string[] | null {
  if (t === null) return null;
  try {
    const v: unknown = JSON.parse(t);
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : null;
  } catch {
    return null;
  }
}

export class SqlAlertStore implements AlertStore {
  constructor(
    private readonly db: SqlDriver,
    private readonly box: SecretBox,
  ) {}

  #ruleFromRow(r: SqlRow): AlertRuleRecord {
    const name = text(r, 'name');
    const scope = textOrNull(r, 'scope');
    return {
      name,
      kind: text(r, 'kind') as AlertRuleKind,
      enabled: Number(r.enabled) === 1,
      scope: scope === 'hub' || scope === 'device' ? scope : null,
      reasons: reasonsFromText(textOrNull(r, 'reasons')),
      threshold: numOrNull(r, 'threshold'),
      windowSeconds: numOrNull(r, 'window_seconds'),
      days: numOrNull(r, 'days'),
      log: Number(r.log_action) === 1,
      webhookUrl: textOrNull(r, 'webhook_url'),
      webhookSecret: this.box.openNullable(textOrNull(r, 'webhook_secret'), secretContext(name)),
      created: text(r, 'created'),
      updated: text(r, 'updated'),
    };
  }

  #ruleParams(rule: AlertRuleRecord): SqlValue[] {
    return [
      rule.name,
      rule.kind,
      rule.enabled ? 1 : 0,
      rule.scope,
      rule.reasons === null ? null : JSON.stringify(rule.reasons),
      rule.threshold,
      rule.windowSeconds,
      rule.days,
      rule.log ? 1 : 0,
      rule.webhookUrl,
      this.box.sealNullable(rule.webhookSecret, secretContext(rule.name)),
      rule.created,
      rule.updated,
    ];
  }

  async listRules(): Promise<AlertRuleRecord[]> {
    return (await this.db.all(`SELECT ${RULE_COLUMNS} FROM alert_rules ORDER BY name`)).map((r) => this.#ruleFromRow(r));
  }

  async getRule(name: string): Promise<AlertRuleRecord | undefined> {
    const rows = await this.db.all(`SELECT ${RULE_COLUMNS} FROM alert_rules WHERE name = ?`, [name]);
    return rows[0] === undefined ? undefined : this.#ruleFromRow(rows[0]);
  }

  async putRule(rule: AlertRuleRecord): Promise<void> {
    const params = this.#ruleParams(rule);
    const set = RULE_COLUMNS.split(', ')
      .filter((c) => c !== 'name' && c !== 'created')
      .map((c) => `${c} = excluded.${c}`)
      .join(', ');
    await this.db.run(
      `INSERT INTO alert_rules (${RULE_COLUMNS}) VALUES (${params.map(() => '?').join(', ')}) ON CONFLICT (name) DO UPDATE SET ${set}`,
      params,
    );
  }

  async addRuleIfAbsent(rule: AlertRuleRecord): Promise<boolean> {
    const params = this.#ruleParams(rule);
    try {
      await this.db.run(`INSERT INTO alert_rules (${RULE_COLUMNS}) VALUES (${params.map(() => '?').join(', ')})`, params);
      return true;
    } catch (err) {
      if (this.db.isUniqueViolation(err)) return false;
      throw err;
    }
  }

  async deleteRule(name: string): Promise<boolean> {
    return (await this.db.run('DELETE FROM alert_rules WHERE name = ?', [name])) > 0;
  }

  async insertAlert(a: AlertRecord): Promise<void> {
    const params: SqlValue[] = [
      a.id,
      a.rule,
      a.kind,
      a.key,
      a.state,
      a.value,
      a.threshold,
      a.windowSeconds,
      a.firedAt,
      a.resolvedAt,
      a.summary,
      JSON.stringify(a.details),
      a.deliveries,
      a.lastDelivery === null ? null : JSON.stringify(a.lastDelivery),
    ];
    try {
      await this.db.run(`INSERT INTO alert_history (${ALERT_COLUMNS}) VALUES (${params.map(() => '?').join(', ')})`, params);
    } catch (err) {
      if (this.db.isUniqueViolation(err)) throw new HubError('InvalidOperation', `An alert with id '${a.id}' already exists.`);
      throw err;
    }
  }

  async resolveAlert(id: string, update: { value: number; resolvedAt: string; summary: string }): Promise<boolean> {
    const n = await this.db.run(
      `UPDATE alert_history SET state = 'resolved', value = ?, resolved_at = ?, summary = ? WHERE id = ? AND state = 'fired'`,
      [update.value, update.resolvedAt, update.summary, id],
    );
    return n > 0;
  }

  async recordDelivery(id: string, attempts: number, result: AlertDelivery): Promise<void> {
    await this.db.run('UPDATE alert_history SET deliveries = deliveries + ?, last_delivery = ? WHERE id = ?', [attempts, JSON.stringify(result), id]);
  }

  async getAlert(id: string): Promise<AlertRecord | undefined> {
    const rows = await this.db.all(`SELECT ${ALERT_COLUMNS} FROM alert_history WHERE id = ?`, [id]);
    return rows[0] === undefined ? undefined : alertFromRow(rows[0]);
  }

  async listAlerts(query: { state?: AlertState; rule?: string; limit: number }): Promise<AlertRecord[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (query.state !== undefined) {
      where.push('state = ?');
      params.push(query.state);
    }
    if (query.rule !== undefined) {
      where.push('rule = ?');
      params.push(query.rule);
    }
    const rows = await this.db.all(
      `SELECT ${ALERT_COLUMNS} FROM alert_history ${where.length === 0 ? '' : `WHERE ${where.join(' AND ')}`} ORDER BY seq DESC LIMIT ?`,
      [...params, query.limit],
    );
    return rows.map(alertFromRow);
  }

  async pruneResolved(before: string): Promise<number> {
    return this.db.run(`DELETE FROM alert_history WHERE state = 'resolved' AND resolved_at < ?`, [before]);
  }
}

function alertFromRow(r: SqlRow): AlertRecord {
  const last = textOrNull(r, 'last_delivery');
  return {
    id: text(r, 'id'),
    rule: text(r, 'rule'),
    kind: text(r, 'kind') as AlertRuleKind,
    key: text(r, 'alert_key'),
    state: text(r, 'state') as AlertState,
    value: Number(r.value),
    threshold: Number(r.threshold),
    windowSeconds: numOrNull(r, 'window_seconds'),
    firedAt: text(r, 'fired_at'),
    resolvedAt: textOrNull(r, 'resolved_at'),
    summary: text(r, 'summary'),
    details: JSON.parse(text(r, 'details')) as JsonObject,
    deliveries: Number(r.deliveries),
    lastDelivery: last === null ? null : (JSON.parse(last) as AlertDelivery),
  };
}
