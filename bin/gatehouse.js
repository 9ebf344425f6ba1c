#!/usr/bin/env node
// Entry point for `npx gatehouse`. The TypeScript sources are compiled to dist/ by `npm install` (prepare).
import v8 from 'node:v8';
import { main } from '../dist/src/cli/main.js';

// V8 allocates the objects of an allocation site straight into the old generation once most of
// that site's objects outlived a young-generation collection ("pretenuring"). A hub's per-message
// objects live from a PUBLISH to its commit, milliseconds, but under load enough of them see a
// collection that V8 pretenures those sites for good, and the old generation fills with
// per-message garbage: 22-25 MB/s at 10k msgs/s, 8 MB/s without pretenuring, and 5-12 % less CPU
// per message (docs/benchmarks.md). The flag is the process's: --workers processes and the log's
// writer thread run under it too.
v8.setFlagsFromString('--no-allocation-site-pretenuring');

main(process.argv).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`gatehouse: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
