/** Output for people (`-o table`) and programs (JSON, the default). */
export type OutputFormat = 'json' | 'table';

function cell(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function renderTable(rows: Array<Record<string, unknown>>, columns: string[]): string {
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join('\n');
}

/** Table columns default to the keys of the rows, in first-seen order. */
export function print(value: unknown, format: OutputFormat, columns?: string[]): void {
  if (format === 'table') {
    const rows = (Array.isArray(value) ? value : [value]) as Array<Record<string, unknown>>;
    const cols = columns ?? [...new Set(rows.flatMap((r) => Object.keys(r)))];
    process.stdout.write(`${renderTable(rows, cols)}\n`);
    return;
  }
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * A table printed row by row as the data arrives (streams): fixed column widths from the
 * header; a longer value pushes the rest of its row to the right.
 */
export function tableStream(columns: Array<readonly [name: string, width: number]>): { header: string; row(r: Record<string, unknown>): string } {
  const line = (vals: string[]) => vals.map((v, i) => v.padEnd(columns[i]?.[1] ?? 0)).join('  ').trimEnd();
  return {
    header: `${line(columns.map(([n]) => n))}\n${line(columns.map(([, w]) => '-'.repeat(w)))}`,
    row: (r) => line(columns.map(([n]) => cell(r[n]))),
  };
}
