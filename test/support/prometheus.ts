/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4), for tests: `# HELP`,
 * `# TYPE`, and samples `name{label="value",...} value [timestamp]`. Anything else, a sample of a
 * family with no TYPE before it, or a family declared twice throws. (prom-client has no parser.)
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** Values as Prometheus reads them (Go's ParseFloat: Inf and NaN in any case; prom-client writes 'Nan'). */
function parseValue(raw: string, line: number): number {
  if (/^\+?inf(inity)?$/i.test(raw)) return Infinity;
  if (/^-inf(inity)?$/i.test(raw)) return -Infinity;
  if (/^nan$/i.test(raw)) return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(raw)) throw new Error(`line ${line}: bad value '${raw}'`);
  return Number(raw);
}

function parseLabels(text: string, line: number): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 0;
  for (;;) {
    if (text[i] === '}') return { labels, rest: text.slice(i + 1) };
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new Error(`line ${line}: unterminated labels`);
    const name = text.slice(i, eq);
    if (!LABEL.test(name)) throw new Error(`line ${line}: bad label name '${name}'`);
    if (name in labels) throw new Error(`line ${line}: label ${name} twice`);
    if (text[eq + 1] !== '"') throw new Error(`line ${line}: label ${name} value not quoted`);
    let j = eq + 2;
    let value = '';
    for (;;) {
      const c = text[j];
      if (c === undefined) throw new Error(`line ${line}: unterminated label value`);
      if (c === '"') break;
      if (c === '\\') {
        const n = text[j + 1];
        if (n === 'n') value += '\n';
        else if (n === '\\' || n === '"') value += n;
        else throw new Error(`line ${line}: bad escape \\${String(n)}`);
        j += 2;
        continue;
      }
      value += c;
      j++;
    }
    labels[name] = value;
    i = j + 1;
    if (text[i] === ',') i++;
    else if (text[i] !== '}') throw new Error(`line ${line}: expected , or } after label ${name}`);
  }
}

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const help = new Map<string, string>();
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((raw, idx) => {
    const line = idx + 1;
    if (raw === '') return;
    if (raw.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
      if (m === null) return; // other comments are allowed
      const [, kind, name = '', rest = ''] = m;
      if (!NAME.test(name)) throw new Error(`line ${line}: bad metric name '${name}'`);
      if (kind === 'HELP') {
        if (help.has(name)) throw new Error(`line ${line}: second HELP for ${name}`);
        help.set(name, rest);
        const f = families.get(name);
        if (f !== undefined) f.help = rest;
        return;
      }
      if (!TYPES.has(rest)) throw new Error(`line ${line}: bad type '${rest}'`);
      if (families.has(name)) throw new Error(`line ${line}: second TYPE for ${name}`);
      families.set(name, { name, type: rest as Family['type'], help: help.get(name) ?? '', samples: [] });
      return;
    }
    const brace = raw.indexOf('{');
    const space = raw.indexOf(' ');
    let name: string;
    let labels: Record<string, string> = {};
    let rest: string;
    if (brace >= 0 && (space < 0 || brace < space)) {
      name = raw.slice(0, brace);
      ({ labels, rest } = parseLabels(raw.slice(brace + 1), line));
    } else {
      if (space < 0) throw new Error(`line ${line}: no value`);
      name = raw.slice(0, space);
      rest = raw.slice(space);
    }
    if (!NAME.test(name)) throw new Error(`line ${line}: bad metric name '${name}'`);
    const parts = rest.trim().split(/\s+/);
    if (parts.length < 1 || parts.length > 2 || rest[0] !== ' ') throw new Error(`line ${line}: malformed sample '${raw}'`);
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw new Error(`line ${line}: bad timestamp`);
    const family =
      families.get(name) ??
      families.get(name.replace(/_(bucket|sum|count)$/, '')) ??
      undefined;
    if (family === undefined) throw new Error(`line ${line}: sample of ${name} without a TYPE`);
    if (family.name !== name && family.type !== 'histogram' && family.type !== 'summary') throw new Error(`line ${line}: ${name} is not part of ${family.name}`);
    family.samples.push({ name, labels, value: parseValue(parts[0] ?? '', line) });
  });
  return families;
}

/** The value of the sample with exactly these labels (undefined when absent). */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const f = families.get(name);
  const want = JSON.stringify(Object.entries(labels).sort());
  return f?.samples.find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want)?.value;
}
