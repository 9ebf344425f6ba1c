// Regenerates docs/errors.md from src/core/errors.ts and src/cli/errors.ts (after a build).
// test/errors-doc.test.ts and test/cli-errors.test.ts fail when they disagree.
import { readFileSync, writeFileSync } from 'node:fs';
import { ERROR_CODES } from '../dist/src/core/errors.js';
import { CLI_ERROR_CODES } from '../dist/src/cli/errors.js';

const rows = Object.entries(ERROR_CODES).map(([code, i]) => `| \`${code}\` | ${i.status} | ${i.number} | ${i.summary} |`);
const cliRows = Object.entries(CLI_ERROR_CODES).map(([code, i]) => `| \`${code}\` | exit ${i.exit} | ${i.summary} |`);
// The hand-written section on authentication failure reasons is kept as it stands.
const current = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
const reasons = /\n## Authentication failure reasons\n[\s\S]*?(?=\n## The CLI\n)/.exec(current)?.[0] ?? '';
writeFileSync(
  new URL('../docs/errors.md', import.meta.url),
  `# Error codes

Every error Gatehouse returns carries one of these stable codes. Over HTTPS the status is the HTTP
status, the body is Azure's legacy shape (so the official SDKs raise their typed errors) plus the
numeric code, and the \`iothub-errorcode\` header repeats the name:

\`\`\`json
{"Message":"ErrorCode:DeviceNotFound;Device x not found","ExceptionMessage":"Tracking ID:...-G:0-TimeStamp:...","errorCode":404001}
\`\`\`

The CLI prints \`error: <Code>: <message>\` (see [The CLI](#the-cli) below). Authentication failures always read
\`IotHubUnauthorizedAccess; Unauthorized\`, whatever the reason; the reason is in the hub's log.

| code | HTTP | number | meaning |
|---|---|---|---|
${rows.join('\n')}
${reasons}
## The CLI

Every failure of a \`gatehouse\` command is one line on stderr, \`error: <Code>: <message>\`, and an
exit code: **2** when the command line was refused before anything was sent (a script's bug),
**1** for everything after (the hub refused, it cannot be reached, TLS). When the hub refused, the
code is the hub's, from the table above (an answer that is not the hub's, from a proxy say, is
\`Http<status>\`). Commander's own complaints (unknown option, missing
argument) and invalid JSON in an option are mapped to the codes below, and a hint names the CLI
flag (\`--force\`, \`--allow-legacy-tls\`), not the API field. A system error keeps its POSIX name
(\`EACCES\`, ...). \`gatehouse audit\` exits 2 on a high-severity finding; that is its answer, not an
error.

| code | exit | meaning |
|---|---|---|
${cliRows.join('\n')}
`,
);
