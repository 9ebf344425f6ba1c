/**
 * Every input the fuzz suite saved (test/fuzz-corpus/<protocol>/<hash>.json: it crashed or hung a
 * hub, or got an HTTP 500) replayed against a real hub, one at a time: after each the process is
 * alive, /health answers within 2 s, and an HTTP input is not answered 5xx. Inputs that ran after
 * authentication get a fresh credential for this hub first.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Sender } from '../fuzz/harness.js';
import { startFuzzHub, type FuzzHub } from '../fuzz/hub.js';
import { readCorpus } from '../fuzz/input.js';
import { replay } from '../fuzz/replay.js';
import { ROOT, removeDir } from './support/hub-process.js';

const HOST = '127.0.141.1';
const corpus = readCorpus(join(ROOT, 'test', 'fuzz-corpus'));
let hub: FuzzHub;
let sender: Sender;

before(async () => {
  hub = await startFuzzHub({ address: HOST });
  sender = new Sender(hub, { health: '127.0.141.2', pre: '127.0.141.3', post: '127.0.141.4' });
});

after(async () => {
  await hub.stop();
  removeDir(hub.dataDir);
});

test('the corpus is not empty (the findings are kept)', () => {
  assert.ok(corpus.length > 0);
});

for (const { path, input, finding } of corpus) {
  test(`${path.slice(path.indexOf('fuzz-corpus'))} (${finding.slice(0, 80)})`, async () => {
    const r = await replay(sender, input);
    assert.ok(r.alive, `the hub is alive:\n${hub.tail().slice(-2000)}`);
    assert.equal(r.health, 200, `/health answered in ${r.healthMs.toFixed(0)} ms`);
    assert.ok(r.healthMs < 2000);
    if (r.httpStatus !== undefined) assert.ok(r.httpStatus < 500 || r.httpStatus === 503, `HTTP ${r.httpStatus}`);
  });
}
