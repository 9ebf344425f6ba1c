/**
 * `npm run bench:routing-query [-- --seconds S]`: route conditions (src/routing/query) evaluated in
 * process, the ingestion cost of routing per message and per route.
 *
 * Five typical `$body` conditions on a 300-byte UTF-8 JSON telemetry body (application/json):
 * - "each, new message": one condition against a new message each time, so every evaluation
 *   scans the body for the paths of the five (one table, as a routing document's routes share);
 * - "each, parsed body": the same against a message already scanned (what each further route
 *   costs once one route has scanned it);
 * - "all five, one message": the five against one new message (one scan shared by all five).
 * Side by side: JSON.parse of the same body (what reading $body cost before the scan), the scan
 * alone, and compileCondition (once per routing change).
 *
 *   node dist/bench/routing-query.js [--seconds 1] [--write]
 */
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { scanBody } from '../src/routing/query/body-scan.js';
import { BodyPaths, compileCondition, prepareInput, type RoutingInput } from '../src/routing/query/index.js';
import { arg, writeBenchmarkSection } from './support.js';

const SECONDS = arg('seconds', 1);
const SECTION_TITLE = '## Routing: route conditions evaluated per second (bench/routing-query)';

const CONDITIONS = [
  '$body.temperature > 30',
  "$body.status = 'alarm' AND $body.battery.level < 20",
  "$body.readings[2].value >= 40 OR STARTS_WITH($body.firmware, '2.')",
  "IS_DEFINED($body.location.site) AND UPPER($body.location.site) = 'PLANT-7' AND processingPath = 'hot'",
  'AS_NUMBER($body.counters.errors) * 2 + $body.counters.retries > 5 AND NOT $body.maintenance',
];

function body(i: number): Buffer {
  const doc = {
    ts: '2026-12-03T13:30:00.000Z',
    temperature: 20 + (i % 20),
    rh: 41,
    status: i % 7 === 0 ? 'alarm' : 'ok',
    battery: { level: i % 100, charging: false },
    firmware: '2.4',
    location: { site: 'plant-7', line: 3 },
    readings: [
      { n: 'p1', value: 12.5 },
      { n: 'p2', value: 33.1 },
      { n: 'p3', value: 40 + (i % 3) },
    ],
    counters: { errors: String(i % 4), retries: i % 3 },
    maintenance: false,
  };
  return Buffer.from(JSON.stringify(doc), 'utf8');
}

const SYSTEM = { 'content-type': 'application/json', 'content-encoding': 'utf-8', 'iothub-connection-device-id': 'sensor-0001', 'message-id': 'm' };
const PROPERTIES = { processingPath: 'hot' };
const BODIES = Array.from({ length: 256 }, (_, i) => body(i));

function message(i: number): RoutingInput {
  return { body: BODIES[i & 255]!, properties: PROPERTIES, systemProperties: SYSTEM };
}

interface Row {
  what: string;
  perSecond: number;
  nsEach: number;
}

/** Runs `f(i)` for i = 0, 1, ... for about `seconds`, checking the clock every 1,000 calls. */
function measure(what: string, f: (i: number) => unknown, seconds = SECONDS): Row {
  for (let i = 0; i < 20_000; i++) f(i); // warm up
  let n = 0;
  let sink = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  while (performance.now() < end) {
    for (let k = 0; k < 1000; k++, n++) if (f(n) === true) sink++;
  }
  const ms = performance.now() - t0;
  if (sink < 0) console.log(sink);
  return { what, perSecond: (n / ms) * 1000, nsEach: (ms * 1e6) / n };
}

function main(): void {
  // One table of $body paths for the five, as the router compiles a routing document's routes.
  const paths = new BodyPaths();
  const compiled = CONDITIONS.map((c) => compileCondition(c, paths));
  const bodyBytes = BODIES[0]!.length;
  const rows: Row[] = [];
  rows.push(measure(`JSON.parse of the ${bodyBytes}-byte body (what reading $body cost before it was scanned)`, (i) => JSON.parse(BODIES[i & 255]!.toString('utf8'))));
  rows.push(measure("scanning the body for the five conditions' $body paths", (i) => scanBody(BODIES[i & 255]!, paths) !== null));
  rows.push(measure('compileCondition, the five in turn', (i) => compileCondition(CONDITIONS[i % 5]!)));
  compiled.forEach((c, k) => {
    rows.push(measure(`#${k + 1} each, new message`, (i) => c.matches(message(i))));
    const parsed = BODIES.map((_, i) => {
      const p = prepareInput(message(i));
      c.matches(p);
      return p;
    });
    rows.push(measure(`#${k + 1} each, parsed body`, (i) => c.matches(parsed[i & 255]!)));
  });
  rows.push(
    measure('all five, one new message', (i) => {
      const p = prepareInput(message(i));
      let hits = 0;
      for (const c of compiled) if (c.matches(p)) hits++;
      return hits;
    }),
  );

  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const table = [
    '| what | evaluations/s | ns each |',
    '|---|---:|---:|',
    ...rows.map((r) => `| ${r.what} | ${Math.round(r.perSecond).toLocaleString('en-US')} | ${Math.round(r.nsEach).toLocaleString('en-US')} |`),
  ].join('\n');
  const section = [
    SECTION_TITLE,
    '',
    `\`node dist/bench/routing-query.js --seconds ${SECONDS}\` on ${cpu} (${cpus().length} cores, shared), Node ${process.version}, one thread.`,
    `A ${bodyBytes}-byte UTF-8 JSON body (application/json), 256 bodies in turn; the five compiled into one table of \$body paths`,
    '(as a routing document\'s routes are); "new message" includes the one pass over the body\'s bytes that finds every path',
    'of the table, "parsed body" evaluates against a message an earlier route already scanned. The conditions:',
    '',
    ...CONDITIONS.map((c, k) => `${k + 1}. \`${c}\``),
    '',
    table,
    '',
  ].join('\n');
  console.log(section);
  if (process.argv.includes('--write')) writeBenchmarkSection(SECTION_TITLE, section);
}

main();
