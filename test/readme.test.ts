/**
 * The README's commands, run as written (issue 15, item 20): the checks of the blocks' markings,
 * and the quick start and gate controller scenarios. The machinery and the other scenarios' files:
 * test/support/readme-scenarios.ts.
 */
import { readmeSuite } from './support/readme-scenarios.js';

readmeSuite('readme', { checks: true });
