/**
 * Alert rules and alert history (src/alerts/alerts.ts decides what fires; the store keeps what
 * the operator set and what happened). A rule's webhook secret is sealed at rest and never leaves
 * the hub except as the HMAC it signs with.
 */
import type { JsonObject } from '../core/json.js';

export type AlertRuleKind = 'authFailures' | 'c2dDeadLetters' | 'certificateExpiry' | 'disconnectStorm';
export type AlertState = 'fired' | 'resolved';

export interface AlertRuleRecord {
  /** 1-64 of A-Z a-z 0-9 _ . - */
  name: string;
  kind: AlertRuleKind;
  enabled: boolean;
  /** authFailures: across the hub, or per identity. null for the other kinds. */
  scope: 'hub' | 'device' | null;
  /** authFailures: only failures with these reason codes (AuthFailureCode); null: every failure. */
  reasons: string[] | null;
  /** Windowed kinds: fires when more than `threshold` events fall in the last `windowSeconds`. */
  threshold: number | null;
  windowSeconds: number | null;
  /** certificateExpiry: fires for certificates expiring within this many days. */
  days: number | null;
  /** Log the alert (warn when it fires, info when it resolves). */
  log: boolean;
  webhookUrl: string | null;
  /** HMAC key for X-Gatehouse-Signature; sealed at rest. */
  webhookSecret: string | null;
  created: string;
  updated: string;
}

/** The outcome of the last webhook delivery of an alert. */
export interface AlertDelivery {
  at: string;
  /** Which notification it was. */
  state: AlertState;
  ok: boolean;
  attempts: number;
  /** The receiver's last HTTP status, if it answered. */
  status: number | null;
  /** Why the last attempt failed (timeout, connection refused, HTTP 500), if it did. */
  error: string | null;
}

/** One firing of a rule for one key, from fired until resolved. */
export interface AlertRecord {
  id: string;
  rule: string;
  kind: AlertRuleKind;
  /** What the rule counted for: `hub`, `device:<id>`, `ca:<name>`, `issued:<serial>`. */
  key: string;
  state: AlertState;
  /** Events in the window when it fired (or when it resolved); days left for certificates. */
  value: number;
  threshold: number;
  windowSeconds: number | null;
  firedAt: string;
  resolvedAt: string | null;
  summary: string;
  details: JsonObject;
  /** Webhook attempts made for this alert, both notifications together. */
  deliveries: number;
  lastDelivery: AlertDelivery | null;
}

export interface AlertStore {
  /** Ordered by name. */
  listRules(): Promise<AlertRuleRecord[]>;
  getRule(name: string): Promise<AlertRuleRecord | undefined>;
  /** Inserts or replaces the rule of that name (keeping its `created`). */
  putRule(rule: AlertRuleRecord): Promise<void>;
  /** Inserts unless a rule of that name exists; true when inserted. */
  addRuleIfAbsent(rule: AlertRuleRecord): Promise<boolean>;
  /** True if one was deleted. Its history stays. */
  deleteRule(name: string): Promise<boolean>;

  /** InvalidOperation when the id is taken. */
  insertAlert(alert: AlertRecord): Promise<void>;
  /** Marks a fired alert resolved; false when unknown or already resolved. */
  resolveAlert(id: string, update: { value: number; resolvedAt: string; summary: string }): Promise<boolean>;
  /** Adds `attempts` to the alert's deliveries and records the result as its last delivery. */
  recordDelivery(id: string, attempts: number, result: AlertDelivery): Promise<void>;
  getAlert(id: string): Promise<AlertRecord | undefined>;
  /** Newest first (the order they fired in, reversed); only one state or one rule when given. */
  listAlerts(query: { state?: AlertState; rule?: string; limit: number }): Promise<AlertRecord[]>;
  /** Deletes alerts resolved before `before` (ISO-8601); returns how many. */
  pruneResolved(before: string): Promise<number>;
}
