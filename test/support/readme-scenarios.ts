/**
 * The README's commands, run as written (issue 15, item 20), so the README cannot drift from the
 * code again. Every code block of README.md and device/README.md that is not output says whether
 * it runs (`<!-- runnable: SCENARIO -->`) or why not (`<!-- not runnable: REASON -->`): see
 * test/support/readme-blocks.ts.
 *
 * Each scenario is a reader's session: a hub started as `npm start` starts it, and one bash shell
 * (`set -euo pipefail`) that runs the scenario's blocks in document order, README.md before
 * device/README.md, so what a block defines (a variable, a function, a file) is there for the
 * blocks after it. The shell's working directory stands in for a fresh checkout: the checkout's
 * package.json, bin/, dist/, device/ and node_modules/ linked into an empty directory, so
 * `npx gatehouse` resolves to this checkout's CLI as it does in a clone, and what the blocks write
 * (data/, keys, bundles) stays out of the real one. Differences from a reader's machine, all here:
 *
 * - The hub listens on the scenario's own loopback address, which is also its hostname, instead
 *   of 127.0.0.1 and `localhost`; the blocks read the host from `gatehouse info`, as a reader's do.
 * - The shell's environment has no NODE_EXTRA_CA_CERTS (the blocks must trust the hub's CA as
 *   the README says), no GATEHOUSE_* variable, none of npm's `npm_*` variables and no
 *   node_modules/.bin on the PATH.
 * - npm_config_ignore_scripts=true: the first `npx gatehouse` from a new directory links the
 *   package into npm's npx cache and would run its `prepare` (tsc) again, rewriting dist/ while
 *   other test files read it; `npm test` has just built it.
 * - A block marked `background="TEXT"` (a server the reader leaves running in a terminal) runs in
 *   a shell of its own until its output shows TEXT, and is stopped at the end of the scenario.
 *
 * A failing block is reported with its file and line, its text and the output it printed; each
 * scenario's whole output is kept in .test-tmp/readme-logs/.
 *
 * The scenarios are split over three test files (readme*.test.ts), each its own process with its
 * own look-alike directory, so each file stays within the runner's per-file timeout and two can
 * run side by side: together they took over the 180 s a file gets on a slow machine.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { ROOT, startHubProcess, type HubProcess } from './hub-process.js';
import { decisionProblems, extractBlocks, SHELL_LANGS, type CodeBlock } from './readme-blocks.js';

const READMES = ['README.md', 'device/README.md'];
/**
 * Where this file's scenarios run: a checkout's look-alike, the same path every run (npx caches by
 * path), one per test file (set once by readmeSuite; a test file is a process of its own).
 */
let WORK = join(ROOT, '.test-tmp', 'readme');
/** Each scenario's shell output, kept for reading after the run. */
const LOGS = join(ROOT, '.test-tmp', 'readme-logs');
/** What of the checkout the look-alike links to. */
const LINKED = ['package.json', 'bin', 'dist', 'device', 'node_modules'];

interface Scenario {
  /** The hub's loopback address (bind and hostname); null: the scenario needs no hub. */
  hub: string | null;
  /** Checks after the blocks ran, with the hub still up. */
  after?: (t: TestContext) => Promise<void>;
}

const SCENARIOS: Record<string, Scenario> = {
  quickstart: { hub: '127.0.94.1' },
  dps: { hub: '127.0.94.2' },
  factory: { hub: '127.0.94.3' },
  security: { hub: '127.0.94.4' },
  operations: { hub: '127.0.94.5', after: scrapeWithPrometheus },
  gate: { hub: null },
};
/** The Prometheus server of the operations scenario, when Debian's prometheus is installed. */
const PROMETHEUS_LISTEN = '127.0.95.1:9090';

function readmeBlocks(): { blocks: CodeBlock[]; problems: string[] } {
  const all = READMES.map((f) => extractBlocks(f, readFileSync(join(ROOT, f), 'utf8')));
  return { blocks: all.flatMap((x) => x.blocks), problems: all.flatMap((x) => x.problems) };
}

function commandExists(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** The reader's environment: this one less the test's CA, Gatehouse's settings and npm's run variables. */
function readerEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_EXTRA_CA_CERTS' || k === 'NODE_TEST_CONTEXT' || k === 'INIT_CWD' || k.startsWith('GATEHOUSE_') || /^npm_/i.test(k)) continue;
    env[k] = v;
  }
  // npm run puts node_modules/.bin directories first on the PATH; a reader's shell has none.
  env.PATH = (env.PATH ?? '').split(':').filter((d) => !/node_modules[/\\]\.bin|node-gyp-bin/.test(d)).join(':');
  env.npm_config_ignore_scripts = 'true';
  env.npm_config_update_notifier = 'false';
  return env;
}

/** The plumbing of a scenario's shell (not README text): running a server block in the background. */
const SHELL_HEADER = `set -euo pipefail
exec 2>&1
__readme_background() {  # FILE TEXT: a server block in a shell of its own, until its output shows TEXT
  local file=$1 ready=$2 log=$1.log pid
  setsid bash -euo pipefail "$file" > "$log" 2>&1 < /dev/null &
  pid=$!
  echo "$pid" >> .readme/background.pids
  for _ in $(seq 600); do
    if grep -qF -- "$ready" "$log"; then cat "$log"; return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$log"; echo "(exited before printing '$ready')"; return 1; fi
    sleep 0.1
  done
  cat "$log"; echo "(no '$ready' in 60 s)"; return 1
}
`;

function freshWorkDir(): void {
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(join(WORK, '.readme'), { recursive: true });
  for (const f of LINKED) symlinkSync(join(ROOT, f), join(WORK, f));
}

/** The process groups of the background blocks started so far (each is a session of its own). */
function backgroundGroups(): number[] {
  try {
    return readFileSync(join(WORK, '.readme', 'background.pids'), 'utf8').split('\n').map(Number).filter((pid) => pid > 1);
  } catch {
    return [];
  }
}

/** If the test process dies first: a server left running would hold its address for the next run. */
function killBackground(): void {
  for (const pid of backgroundGroups()) signalGroup(pid, 'SIGKILL');
}

/** Stops the background blocks: SIGTERM, then SIGKILL after 10 s. */
async function stopBackground(): Promise<void> {
  const pids = backgroundGroups();
  const alive = (pid: number) => {
    try {
      process.kill(-pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (const pid of pids) signalGroup(pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  for (const pid of pids) signalGroup(pid, 'SIGKILL');
}

/** Signals a process group that may be gone already. */
function signalGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined || !(pid > 1)) return; // never -0 or -1: our own group, or every process
  try {
    process.kill(-pid, signal);
  } catch {
    // gone
  }
}

interface ScriptRun {
  code: number | null;
  output: string;
}

function runShell(script: string, timeoutMs: number): Promise<ScriptRun> {
  return new Promise((resolve) => {
    // A process group of its own, so that a stopped scenario takes the commands it ran with it.
    const proc = spawn('bash', [script], { cwd: WORK, env: readerEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    proc.stdout.on('data', (c: Buffer) => (output += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const reap = () => signalGroup(proc.pid, 'SIGKILL');
    const timer = setTimeout(() => {
      output += `\n(the scenario took over ${timeoutMs / 1000} s and was stopped)\n`;
      reap();
    }, timeoutMs);
    process.once('exit', reap);
    proc.once('close', (code) => {
      clearTimeout(timer);
      process.off('exit', reap);
      reap(); // anything a block left running in the shell's group
      resolve({ code, output });
    });
  });
}

/** The failing block and what it printed, from the markers the script prints before each block. */
function failure(run: ScriptRun, steps: CodeBlock[]): string {
  const marks = [...run.output.matchAll(/^::readme-block (\d+)::$/gm)];
  const last = marks.at(-1);
  if (last === undefined) return `the shell failed before the first block (exit ${String(run.code)}):\n${run.output}`;
  const block = steps[Number(last[1])];
  const output = run.output.slice((last.index ?? 0) + last[0].length).trim();
  return `${block?.file ?? '?'}:${block?.line ?? '?'} failed (exit ${String(run.code)}):\n\n${block?.text ?? ''}\n\n--- its output ---\n${output}\n`;
}

async function runScenario(name: string, scenario: Scenario, blocks: CodeBlock[], t: TestContext): Promise<void> {
  const prelude = blocks.filter((b) => b.decision.kind === 'run' && b.decision.scenario === 'prelude');
  const own = blocks.filter((b) => b.decision.kind === 'run' && b.decision.scenario === name);
  const steps = [...prelude, ...own];
  freshWorkDir();
  let script = SHELL_HEADER;
  steps.forEach((b, i) => {
    if (b.decision.kind !== 'run') return;
    const d = b.decision;
    if (d.file !== undefined) {
      writeFileSync(join(WORK, d.file), `${b.text}\n`);
      return;
    }
    const file = join('.readme', `${String(i).padStart(2, '0')}.sh`);
    writeFileSync(join(WORK, file), `${b.text}\n`);
    script += `printf '\\n::readme-block %d::\\n' ${i}\n`;
    if (d.requires !== undefined && !commandExists(d.requires)) {
      t.diagnostic(`${b.file}:${b.line} not run: ${d.requires} is not installed`);
      script += `echo 'not run: ${d.requires} is not installed'\n`;
    } else if (d.background !== undefined) {
      script += `__readme_background ${file} '${d.background.replace(/'/g, `'\\''`)}'\n`;
    } else {
      script += `source ${file}\n`;
    }
  });
  script += `printf '\\n::readme-end::\\n'\n`;
  writeFileSync(join(WORK, '.readme', 'scenario.sh'), script);

  let hub: HubProcess | undefined;
  process.once('exit', killBackground);
  try {
    if (scenario.hub !== null) hub = await startHubProcess({ address: scenario.hub, dataDir: join(WORK, 'data'), useTestCa: false });
    const run = await runShell(join(WORK, '.readme', 'scenario.sh'), 150_000);
    mkdirSync(LOGS, { recursive: true });
    writeFileSync(join(LOGS, `${name}.log`), run.output);
    assert.ok(run.code === 0 && run.output.includes('::readme-end::'), failure(run, steps));
    await scenario.after?.(t);
  } finally {
    await stopBackground();
    process.off('exit', killBackground);
    await hub?.stop();
  }
}

/**
 * The Prometheus configuration the Metrics section writes, used by a real Prometheus (Debian's,
 * where installed): the hub's target must be up, scraped over HTTPS with the SAS header.
 */
async function scrapeWithPrometheus(t: TestContext): Promise<void> {
  if (!commandExists('prometheus')) {
    t.diagnostic('prometheus is not installed: the scrape configuration was checked with curl only');
    return;
  }
  const proc = spawn('prometheus', ['--config.file=prometheus.yml', `--storage.tsdb.path=${join(WORK, '.readme', 'prometheus')}`, `--web.listen-address=${PROMETHEUS_LISTEN}`], {
    cwd: WORK,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stderr.on('data', (c: Buffer) => (log += c.toString()));
  const reap = () => proc.kill('SIGKILL');
  process.once('exit', reap);
  try {
    const deadline = Date.now() + 60_000;
    let last = 'no answer';
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      try {
        const res = await fetch(`http://${PROMETHEUS_LISTEN}/api/v1/targets`);
        const body = (await res.json()) as { data: { activeTargets: { labels: { job: string }; health: string; lastError: string }[] } };
        const target = body.data.activeTargets.find((x) => x.labels.job === 'gatehouse');
        last = JSON.stringify(target ?? body.data);
        if (target?.health === 'up') break;
        assert.notEqual(target?.health, 'down', `Prometheus could not scrape the hub: ${last}`);
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        last = String(err);
      }
    }
    const q = await fetch(`http://${PROMETHEUS_LISTEN}/api/v1/query?query=${encodeURIComponent('gatehouse_auth_successes_total')}`);
    const result = ((await q.json()) as { data: { result: unknown[] } }).data.result;
    assert.ok(result.length > 0, `Prometheus scraped no gatehouse_ metric (${last})\n${log}`);
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('close', r));
    process.off('exit', reap);
  }
}

/**
 * Runs the scenarios of one test file (README_TEST_FILES), in order, in a look-alike directory of
 * their own; `checks` adds the checks of the README's block markings (once, in one file).
 */
export function readmeSuite(file: string, opts: { checks?: boolean } = {}): void {
  const names = README_TEST_FILES[file];
  if (names === undefined) throw new Error(`no README test file '${file}' in README_TEST_FILES`);
  WORK = join(ROOT, '.test-tmp', `readme-${names.join('-')}`);
  describe(`the README, run as written: ${names.join(', ')}`, () => {
    const { blocks, problems } = readmeBlocks();
    if (opts.checks === true) checks(blocks, problems);
    for (const name of names) {
      const scenario = SCENARIOS[name] as Scenario;
      const mine = blocks.filter((b) => b.decision.kind === 'run' && b.decision.scenario === name);
      const where = mine.map((b) => `${b.file}:${b.line}`).join(', ');
      it(`scenario ${name}: ${where}`, { timeout: 170_000 }, async (t) => {
        assert.ok(mine.some((b) => SHELL_LANGS.has(b.lang)), `scenario ${name} runs no shell block`);
        await runScenario(name, scenario, blocks, t);
      });
    }
  });
}

/** Which test file runs which scenarios (test/<key>.test.ts); checked to cover each scenario once. */
const README_TEST_FILES: Record<string, readonly string[]> = {
  readme: ['quickstart', 'gate'],
  'readme-provisioning': ['dps', 'factory'],
  'readme-security': ['security', 'operations'],
};

function checks(blocks: CodeBlock[], problems: string[]): void {
  it('every block that is not output is marked runnable, or not runnable with a reason', () => {
    const all = [...problems, ...decisionProblems(blocks, new Set(Object.keys(SCENARIOS)))];
    const used = new Set(blocks.flatMap((b) => (b.decision.kind === 'run' ? [b.decision.scenario] : [])));
    for (const name of Object.keys(SCENARIOS)) if (!used.has(name)) all.push(`scenario '${name}' has no block`);
    assert.deepEqual(all, []);
  });

  it('the README test files run every scenario, each once', () => {
    const run = Object.values(README_TEST_FILES).flat();
    assert.deepEqual([...run].sort(), Object.keys(SCENARIOS).sort());
  });

  it('the decision check fails on a block that made none', () => {
    const md = ['```sh', 'gatehouse start', '```', '<!-- not runnable: -->', '```js', 'x()', '```', '```json', '{}', '```'].join('\n');
    const { blocks: b, problems: p } = extractBlocks('X.md', md);
    assert.equal(p.length, 1, 'an empty reason is refused');
    assert.match(decisionProblems(b, new Set()).join('\n'), /X\.md:1 \(```sh\): neither/);
    assert.equal(decisionProblems(b, new Set()).length, 2, 'the sh and the js block; the json block is output');
  });
}
