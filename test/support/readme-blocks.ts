/**
 * The code blocks of a Markdown file and what the README test does with each (issue 15, item 20).
 * A block decides with an HTML comment on the line right before its opening fence, which GitHub
 * does not show:
 *
 *   <!-- runnable: SCENARIO -->                    run in SCENARIO's shell, in document order
 *   <!-- runnable: SCENARIO file=NAME -->          written to NAME first; a later block runs it
 *   <!-- runnable: SCENARIO background="TEXT" -->  a server: its own shell, until its output shows TEXT
 *   <!-- runnable: SCENARIO requires=CMD -->       run only where CMD is installed
 *   <!-- runnable: prelude -->                     run at the start of every scenario
 *   <!-- not runnable: REASON -->                  why not
 *
 * Blocks that show output (`json`, `text`, or no language) need no decision; every other block
 * needs one, so a new command in the README cannot go untested by accident.
 */

export type Decision =
  | { kind: 'run'; scenario: string; file?: string; background?: string; requires?: string }
  | { kind: 'skip'; reason: string }
  | { kind: 'undecided' };

export interface CodeBlock {
  /** The Markdown file, as given. */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The first word of the info string (`sh`, `js`, ...), '' when there is none. */
  lang: string;
  /** The block's lines, with the fence's indentation removed. */
  text: string;
  decision: Decision;
}

/** Languages of blocks that show output or data rather than something to run. */
export const OUTPUT_LANGS = new Set(['', 'json', 'text']);
/** Languages the test runs directly (as a bash script); others run only as a `file=`. */
export const SHELL_LANGS = new Set(['sh', 'bash', 'shell']);

const FENCE = /^( *)(`{3,}|~{3,})\s*([^`\s]*)?.*$/;
const MARKER = /^<!--\s*(runnable|not runnable):\s*(.*?)\s*-->$/;
const OPTION = /(\w+)=(?:"([^"]*)"|(\S+))/g;

/** A marker comment's decision, or a message saying what is wrong with it. */
export function parseMarker(line: string): Decision | string | undefined {
  const m = MARKER.exec(line.trim());
  if (m === null) return line.trim().startsWith('<!--') && /runnable/.test(line) ? `unreadable marker '${line.trim()}'` : undefined;
  const body = m[2] ?? '';
  if (m[1] === 'not runnable') return body.length < 10 ? `'not runnable' needs a reason: '${line.trim()}'` : { kind: 'skip', reason: body };
  const [scenario, ...rest] = body.split(/\s+/);
  if (scenario === undefined || !/^[a-z][a-z0-9-]*$/.test(scenario)) return `'runnable' needs a scenario name: '${line.trim()}'`;
  const decision: Decision = { kind: 'run', scenario };
  const options = rest.join(' ');
  let consumed = options;
  for (const o of options.matchAll(OPTION)) {
    consumed = consumed.replace(o[0], '');
    const value = o[2] ?? o[3] ?? '';
    if (o[1] === 'file') decision.file = value;
    else if (o[1] === 'background') decision.background = value;
    else if (o[1] === 'requires') decision.requires = value;
    else return `unknown option '${o[1] ?? ''}' in '${line.trim()}'`;
  }
  if (consumed.trim() !== '') return `unreadable options '${consumed.trim()}' in '${line.trim()}'`;
  return decision;
}

/** Every fenced code block of `markdown`, with its decision; `problems` lists bad markers. */
export function extractBlocks(file: string, markdown: string): { blocks: CodeBlock[]; problems: string[] } {
  const lines = markdown.split('\n');
  const blocks: CodeBlock[] = [];
  const problems: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i] ?? '');
    if (open === null) continue;
    const indent = open[1]?.length ?? 0;
    const fence = open[2] ?? '```';
    const lang = open[3] ?? '';
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const l = lines[j] ?? '';
      if (l.trim().startsWith(fence) && l.trim().replace(/[`~]/g, '') === '') break;
      body.push(l.slice(Math.min(indent, l.length - l.trimStart().length)));
    }
    if (j >= lines.length) problems.push(`${file}:${i + 1}: a code block that never closes`);
    const marker = i > 0 ? parseMarker(lines[i - 1] ?? '') : undefined;
    let decision: Decision = { kind: 'undecided' };
    if (typeof marker === 'string') problems.push(`${file}:${i}: ${marker}`);
    else if (marker !== undefined) decision = marker;
    blocks.push({ file, line: i + 1, lang, text: body.join('\n'), decision });
    i = j;
  }
  return { blocks, problems };
}

/** What is wrong with the blocks' decisions, one line each (empty: every block decided well). */
export function decisionProblems(blocks: CodeBlock[], scenarios: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (const b of blocks) {
    const where = `${b.file}:${b.line} (\`\`\`${b.lang})`;
    const d = b.decision;
    if (d.kind === 'undecided') {
      if (!OUTPUT_LANGS.has(b.lang)) out.push(`${where}: neither <!-- runnable: SCENARIO --> nor <!-- not runnable: REASON --> on the line before it`);
      continue;
    }
    if (d.kind === 'skip') continue;
    if (d.scenario !== 'prelude' && !scenarios.has(d.scenario)) out.push(`${where}: unknown scenario '${d.scenario}' (the test's SCENARIOS names them)`);
    if (d.file === undefined && !SHELL_LANGS.has(b.lang)) out.push(`${where}: only shell blocks run; give file=NAME for a ${b.lang || 'plain'} block a later block runs`);
    if (d.file !== undefined && !/^[\w.-]+$/.test(d.file)) out.push(`${where}: file=${d.file} is not a plain file name`);
    if (d.scenario === 'prelude' && (d.file !== undefined || d.background !== undefined)) out.push(`${where}: a prelude block only runs in each scenario's shell`);
  }
  return out;
}
