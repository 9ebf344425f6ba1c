#!/usr/bin/env node
// `npm test`: type-check and build, lint, make a throwaway test CA, run every test file with node's
// test runner. The official azure-iothub SDK has no CA option, so test hubs issue their server
// certificates from this CA (--tls-ca-cert/--tls-ca-key) and the test processes trust it through
// NODE_EXTRA_CA_CERTS, which Node reads only at start-up: hence this wrapper.
// Usage: npm test [-- <name-filter>...]
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args, env = process.env) => spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env });

// What the tests need from the machine, found or started first (one line and exit 1 when not).
const { ensureChromium, ensureNats, ensurePort443, ensurePostgres, SetupError } = await import('./test-setup.mjs');
let chromium;
try {
  await ensurePort443();
  await ensurePostgres();
  await ensureNats();
  chromium = ensureChromium();
} catch (err) {
  if (!(err instanceof SetupError)) throw err;
  console.error(`npm test: ${err.message}`);
  process.exit(1);
}

const tsc = run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json']);
if (tsc.status !== 0) {
  console.error('type check failed');
  process.exit(1);
}
// Type-aware lint (eslint.config.mjs): a promise nobody awaits or handles fails the run, as a type error does.
const lint = run(process.execPath, [join(root, 'node_modules/eslint/bin/eslint.js'), '--max-warnings', '0', '.']);
if (lint.status !== 0) {
  console.error('lint failed (npm run lint shows the findings)');
  process.exit(1);
}

const pkiDir = join(root, '.test-tmp', 'pki');
rmSync(pkiDir, { recursive: true, force: true });
mkdirSync(pkiDir, { recursive: true });
const { createDevRootCa } = await import(join(root, 'dist/src/pki/dev-ca.js'));
const ca = await createDevRootCa({ commonName: 'Gatehouse Test CA', validityDays: 2 });
writeFileSync(join(pkiDir, 'ca.pem'), ca.certPem);
writeFileSync(join(pkiDir, 'ca.key'), ca.keyPem, { mode: 0o600 });
chmodSync(join(pkiDir, 'ca.key'), 0o600);

const filters = process.argv.slice(2);
// The hub's tests and the reference device's (device/, its own package in this repo).
const testDirs = [join(root, 'dist', 'test'), join(root, 'dist', 'device', 'test')];
const files = testDirs
  .flatMap((testDir) =>
    readdirSync(testDir)
      .filter((f) => f.endsWith('.test.js'))
      .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
      .map((f) => join(testDir, f)),
  )
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}

const env = {
  ...process.env,
  NODE_EXTRA_CA_CERTS: join(pkiDir, 'ca.pem'),
  GATEHOUSE_TEST_CA_CERT: join(pkiDir, 'ca.pem'),
  GATEHOUSE_TEST_CA_KEY: join(pkiDir, 'ca.key'),
  GATEHOUSE_CHROMIUM: chromium,
};
const result = run(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=180000', ...files], env);
process.exit(result.status ?? 1);
