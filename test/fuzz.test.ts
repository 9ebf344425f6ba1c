/**
 * The fuzz suite's short run: all six fuzzers (MQTT, MQTT over WebSocket, AMQP, AMQP over
 * WebSocket, the HTTPS API, the query language) at once against one real hub for a few seconds,
 * before and after authentication. The hub must not crash, must answer /health within 2 s
 * throughout, must log no internal failure, and a good device must still connect afterwards.
 * The long run is `npm run fuzz -- --minutes N` (docs/fuzzing.md). Set GATEHOUSE_FUZZ_SEED to
 * replay a run.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { buildGenerators, formatReport, runCampaign, Sender, type CampaignReport } from '../fuzz/harness.js';
import { goodClientsConnect } from '../fuzz/good-client.js';
import { startFuzzHub, type FuzzHub } from '../fuzz/hub.js';
import { PROTOCOLS } from '../fuzz/input.js';
import { ROOT, removeDir } from './support/hub-process.js';

const HOST = '127.0.140.1';
const SEED = Number(process.env.GATEHOUSE_FUZZ_SEED ?? Date.now() % 1_000_000_000);
let hub: FuzzHub;
let report: CampaignReport;
const lines: string[] = [];

before(async () => {
  hub = await startFuzzHub({ address: HOST });
  const sender = new Sender(hub, { health: '127.0.140.2', pre: '127.0.140.3', post: '127.0.140.4' });
  const generators = await buildGenerators(sender, PROTOCOLS);
  report = await runCampaign({ sender, generators, durationMs: 8000, settleMs: 1000, seed: SEED, corpusDir: join(ROOT, '.test-tmp', 'fuzz-corpus'), log: (l) => lines.push(l) });
});

after(async () => {
  await hub.stop();
  removeDir(hub.dataDir);
});

const context = () => `seed ${SEED}\n${formatReport(report)}\n${lines.join('\n').slice(-3000)}`;

test('the hub did not crash and answered /health within 2 s throughout', () => {
  assert.equal(report.crashed, undefined, context());
  assert.equal(report.hangs, 0, context());
  assert.ok(report.healthChecks >= 5, context());
  assert.ok(report.worstHealthMs < 2000, context());
});

test('every protocol was fuzzed before and after authentication, and the credentials were accepted', () => {
  for (const p of PROTOCOLS) {
    const s = report.protocols[p];
    assert.ok(s !== undefined && s.inputs > 0, `${p}: ${context()}`);
    assert.ok(s.postAuth > 0 && s.authenticated > 0, `${p} after authentication: ${context()}`);
    if (p !== 'query') assert.ok(s.preAuth > 0, `${p} before authentication: ${context()}`);
  }
});

test('nothing failed inside the hub: no 5xx answer, no error-level log line', () => {
  for (const p of PROTOCOLS) assert.equal(report.protocols[p]?.serverErrors, 0, `${p}: ${context()}`);
  assert.deepEqual(report.hubErrors, [], context());
});

test('a good device still connects over MQTT and AMQP afterwards', async () => {
  assert.equal(await goodClientsConnect(hub, '127.0.140.5'), 'ok');
});
