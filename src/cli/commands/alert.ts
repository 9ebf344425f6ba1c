/**
 * `gatehouse alert ...` over the running hub's REST API (hub administration: the connection needs
 * an owner-level policy, like iothubowner, or the Owner role):
 *
 *   gatehouse alert list [--state fired|resolved] [--limit n]
 *   gatehouse alert rule list
 *   gatehouse alert rule set <name> [--kind k] [--threshold n] [--window 10m] [--scope hub|device]
 *       [--reasons cross_device,tls_version | --reasons all]
 *       [--days n] [--webhook <url> | --no-webhook] [--webhook-secret <s>] [--log | --no-log]
 *       [--enable | --disable]
 *   gatehouse alert rule delete <name>
 *
 * `rule set` on an existing rule changes only what is given; a new rule needs --kind and what that
 * kind needs. A webhook secret is sent once and never shown again (GET says only whether one is set).
 */
import { Option, type Command } from 'commander';
import { print } from '../output.js';
import { encodeId } from '../rest-client.js';
import { connectionOptions, withClient, type ConnOpts } from './common.js';
import { usage } from '../errors.js';

const KINDS = ['authFailures', 'c2dDeadLetters', 'certificateExpiry', 'disconnectStorm'];
const ALERT_COLUMNS = ['firedAt', 'rule', 'key', 'state', 'value', 'threshold', 'resolvedAt', 'summary'];
const RULE_COLUMNS = ['name', 'kind', 'enabled', 'scope', 'reasons', 'threshold', 'windowSeconds', 'days', 'log', 'webhook'];

interface RuleJson {
  name: string;
  kind: string;
  enabled: boolean;
  scope?: string;
  reasons?: string[];
  threshold?: number;
  windowSeconds?: number;
  days?: number;
  actions: { log: boolean; webhook: { url: string; secretSet: boolean } | null };
}

interface SetOpts extends ConnOpts {
  kind?: string;
  threshold?: string;
  window?: string;
  scope?: string;
  reasons?: string;
  days?: string;
  webhook?: string | false;
  webhookSecret?: string;
  log?: boolean;
  enable?: boolean;
  disable?: boolean;
}

/** Seconds: `600`, `600s`, `10m`, `1h`, `1d`. */
export function parseWindow(text: string): number {
  const m = /^(\d+)\s*(s|m|min|h|d)?$/.exec(text.trim());
  if (m === null) throw usage(`--window: '${text}' is not a duration like 600, 90s, 10m, 1h or 1d`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return n * (unit === 's' ? 1 : unit === 'm' || unit === 'min' ? 60 : unit === 'h' ? 3600 : 86_400);
}

function int(text: string, flag: string): number {
  if (!/^\d+$/.test(text)) throw usage(`${flag}: '${text}' is not a non-negative integer`);
  return Number(text);
}

/** The PUT body for `rule set`: the given options over the existing rule (same kind only). */
export function ruleBody(o: SetOpts, existing: RuleJson | undefined): Record<string, unknown> {
  const kind = o.kind ?? existing?.kind;
  if (kind === undefined) throw usage('--kind is required for a new rule', 'ArgumentMissing');
  const base = existing !== undefined && existing.kind === kind ? existing : undefined;
  const body: Record<string, unknown> = { kind };
  if (kind === 'certificateExpiry') {
    const days = o.days !== undefined ? int(o.days, '--days') : base?.days;
    if (days !== undefined) body.days = days;
  } else {
    const threshold = o.threshold !== undefined ? int(o.threshold, '--threshold') : base?.threshold;
    const windowSeconds = o.window !== undefined ? parseWindow(o.window) : base?.windowSeconds;
    if (threshold !== undefined) body.threshold = threshold;
    if (windowSeconds !== undefined) body.windowSeconds = windowSeconds;
    if (kind === 'authFailures') {
      const scope = o.scope ?? base?.scope;
      if (scope !== undefined) body.scope = scope;
      // `all` drops the filter; the hub checks the codes.
      const reasons = o.reasons === undefined ? base?.reasons : o.reasons.trim() === 'all' ? undefined : o.reasons.split(',').map((r) => r.trim()).filter((r) => r !== '');
      if (reasons !== undefined) body.reasons = reasons;
    }
  }
  if (o.enable === true && o.disable === true) throw usage('give --enable or --disable, not both');
  body.enabled = o.disable === true ? false : o.enable === true ? true : (existing?.enabled ?? true);
  let webhook: Record<string, unknown> | null;
  if (o.webhook === false) {
    if (o.webhookSecret !== undefined) throw usage('--webhook-secret with --no-webhook makes no sense');
    webhook = null;
  } else {
    const url = o.webhook ?? existing?.actions.webhook?.url;
    if (url === undefined && o.webhookSecret !== undefined) throw usage('--webhook-secret needs --webhook <url>', 'ArgumentMissing');
    // Without --webhook-secret the hub keeps the secret it has for the same URL.
    webhook = url === undefined ? null : { url, ...(o.webhookSecret === undefined ? {} : { secret: o.webhookSecret }) };
  }
  body.actions = { log: o.log ?? existing?.actions.log ?? true, webhook };
  return body;
}

function ruleRow(r: RuleJson): Record<string, unknown> {
  return { ...r, reasons: r.reasons?.join(',') ?? '', log: r.actions.log, webhook: r.actions.webhook === null ? '' : `${r.actions.webhook.url}${r.actions.webhook.secretSet ? ' (signed)' : ''}` };
}

function printRules(rules: RuleJson[], o: ConnOpts): void {
  if (o.output === 'table') print(rules.map(ruleRow), 'table', RULE_COLUMNS);
  else print(rules, 'json', RULE_COLUMNS);
}

export function registerAlert(program: Command): void {
  const alert = program.command('alert').description('alerts: what fired, and the rules (hub administration)');

  connectionOptions(alert.command('list').description('alert history, newest first'))
    .addOption(new Option('--state <state>', 'only fired (still open) or resolved alerts').choices(['fired', 'resolved']))
    .option('--limit <n>', 'at most this many (max 1000)', '100')
    .action(async (o: ConnOpts & { state?: string; limit: string }) => {
      const q = `limit=${encodeURIComponent(o.limit)}${o.state === undefined ? '' : `&state=${o.state}`}`;
      const res = await withClient(o, (c) => c.call('GET', `/alerts?${q}`));
      print((res.body as { value: unknown[] }).value, o.output, ALERT_COLUMNS);
    });

  const rule = alert.command('rule').description('alert rules');

  connectionOptions(rule.command('list').description('every alert rule (webhook secrets are never shown)')).action(async (o: ConnOpts) => {
    const res = await withClient(o, (c) => c.call('GET', '/alerts/rules'));
    printRules((res.body as { value: RuleJson[] }).value, o);
  });

  connectionOptions(rule.command('set').description('create a rule, or change the given settings of an existing one').argument('<name>', 'rule name (1-64 of A-Z a-z 0-9 _ . -)'))
    .addOption(new Option('--kind <kind>', 'what the rule watches (required for a new rule)').choices(KINDS))
    .option('--threshold <n>', 'windowed kinds: fire when more than n events fall in the window')
    .option('--window <duration>', 'windowed kinds: the sliding window, e.g. 600, 10m, 1h')
    .addOption(new Option('--scope <scope>', 'authFailures: across the hub or per identity').choices(['hub', 'device']))
    .option('--reasons <codes>', 'authFailures: only these failure reasons, comma-separated (cross_device, tls_version, locked_out, ...); all: every failure')
    .option('--days <n>', 'certificateExpiry: fire for certificates expiring within n days')
    .option('--webhook <url>', 'POST each firing and resolution to this http(s) URL')
    .option('--no-webhook', 'remove the webhook')
    .option('--webhook-secret <secret>', 'sign webhook bodies: X-Gatehouse-Signature: sha256=<HMAC> (16-256 characters)')
    .option('--log', 'log firings and resolutions (the default)')
    .option('--no-log', 'do not log them')
    .option('--enable', 'evaluate the rule (the default)')
    .option('--disable', 'keep the rule but do not evaluate it')
    .action(async (name: string, o: SetOpts) => {
      const res = await withClient(o, async (c) => {
        const rules = (await c.call('GET', '/alerts/rules')).body as { value: RuleJson[] };
        return c.call('PUT', `/alerts/rules/${encodeId(name)}`, ruleBody(o, rules.value.find((r) => r.name === name)));
      });
      printRules([res.body as RuleJson], o);
    });

  connectionOptions(rule.command('delete').description('delete a rule (its open alerts resolve; history stays)').argument('<name>', 'rule name')).action(
    async (name: string, o: ConnOpts) => {
      await withClient(o, (c) => c.call('DELETE', `/alerts/rules/${encodeId(name)}`));
      print({ deleted: name }, o.output, ['deleted']);
    },
  );
}
