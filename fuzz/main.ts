/**
 * `npm run fuzz -- --minutes N [--protocol mqtt,mqtt-ws,amqp,amqp-ws,http,query]`: starts a hub,
 * runs every chosen protocol's fuzzer against it at once for N minutes, lets it settle, prints
 * per protocol the inputs sent, crashes and hangs, and the hub's RSS at the start, the peak and
 * after; exits 1 on a crash or a hang. Crashing and hanging inputs go to test/fuzz-corpus/.
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { ROOT, removeDir } from '../test/support/hub-process.js';
import { buildGenerators, formatReport, runCampaign, Sender } from './harness.js';
import { startFuzzHub } from './hub.js';
import { PROTOCOLS, saveToCorpus, type FuzzInput, type Protocol } from './input.js';
import { replay } from './replay.js';
import { goodClientsConnect } from './good-client.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '1' },
    protocol: { type: 'string', default: PROTOCOLS.join(',') },
    address: { type: 'string', default: '127.0.150.1' },
    seed: { type: 'string' },
    settle: { type: 'string', default: '120' },
    corpus: { type: 'string', default: join(ROOT, 'test', 'fuzz-corpus') },
    json: { type: 'boolean', default: false },
  },
});
const protocols = values.protocol.split(',').map((p) => p.trim()).filter((p) => p !== '');
for (const p of protocols) {
  if (!(PROTOCOLS as readonly string[]).includes(p)) {
    console.error(`error: FuzzArgs: unknown protocol '${p}' (one of ${PROTOCOLS.join(', ')})`);
    process.exit(2);
  }
}
const minutes = Number(values.minutes);
if (!(minutes > 0)) {
  console.error('error: FuzzArgs: --minutes takes a positive number');
  process.exit(2);
}
const base = values.address.split('.').slice(0, 3).join('.');
const seed = values.seed === undefined ? Date.now() % 1_000_000_000 : Number(values.seed);
const log = (line: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${line}`);

/**
 * Replays each crash suspect alone against a fresh hub and saves the ones that crash it (all of
 * them, marked, when none does alone: the crash took more than one input).
 */
async function triage(suspects: FuzzInput[], why: string): Promise<void> {
  log(`triage: ${suspects.length} suspects`);
  let found = 0;
  let h = await startFuzzHub({ address: values.address });
  try {
    for (const input of suspects) {
      const r = await replay(new Sender(h, { health: `${base}.2`, pre: `${base}.3`, post: `${base}.4` }), input);
      if (r.alive && r.health === 200) continue;
      found++;
      log(`reproduced: ${saveToCorpus(values.corpus, input, `crash (${why})`)} (${input.kind})\n${h.tail().slice(-1500)}`);
      removeDir(h.dataDir);
      h = await startFuzzHub({ address: values.address });
    }
  } finally {
    await h.stop();
    removeDir(h.dataDir);
  }
  if (found === 0) for (const input of suspects) log(`saved suspect: ${saveToCorpus(values.corpus, input, `crash (${why}), not reproduced alone`)}`);
}

const hub = await startFuzzHub({ address: values.address });
let code = 0;
try {
  const sender = new Sender(hub, { health: `${base}.2`, pre: `${base}.3`, post: `${base}.4` });
  log(`hub ${hub.address} pid ${String(hub.proc.pid)}; protocols ${protocols.join(', ')}; ${minutes} min; seed ${seed}`);
  const generators = await buildGenerators(sender, protocols as Protocol[]);
  const report = await runCampaign({ sender, generators, durationMs: minutes * 60_000, settleMs: Number(values.settle) * 1000, seed, corpusDir: values.corpus, log });
  const good = report.crashed === undefined ? await goodClientsConnect(hub, `${base}.5`) : 'hub ended';
  console.log(formatReport(report));
  console.log(`good clients afterwards: ${good}`);
  if (report.crashed !== undefined) await triage(report.crashSuspects, report.crashed);
  if (values.json) console.log(JSON.stringify({ seed, ...report, good }));
  if (report.crashed !== undefined || report.hangs > 0 || good !== 'ok') code = 1;
} finally {
  await hub.stop();
  removeDir(hub.dataDir);
}
process.exit(code);
