// Regenerates docs/errors.md from src/core/errors.ts (after a build). test/errors-doc.test.ts fails
// when the two disagree.
import { writeFileSync } from 'node:fs';
import { ERROR_CODES } from '../dist/src/core/errors.js';

const rows = Object.entries(ERROR_CODES).map(([code, i]) => `| \`${code}\` | ${i.status} | ${i.number} | ${i.summary} |`);
writeFileSync(
  new URL('../docs/errors.md', import.meta.url),
  `# Error codes

Every error Gatehouse returns carries one of these stable codes. Over HTTPS the status is the HTTP
status, the body is Azure's legacy shape (so the official SDKs raise their typed errors) plus the
numeric code, and the \`iothub-errorcode\` header repeats the name:

\`\`\`json
{"Message":"ErrorCode:DeviceNotFound;Device x not found","ExceptionMessage":"Tracking ID:...-G:0-TimeStamp:...","errorCode":404001}
\`\`\`

The CLI prints \`error: <Code>: <message>\`. Authentication failures always read
\`IotHubUnauthorizedAccess; Unauthorized\`, whatever the reason; the reason is in the hub's log.

| code | HTTP | number | meaning |
|---|---|---|---|
${rows.join('\n')}
`,
);
