/** The README's security and operations scenarios, run as written (test/support/readme-scenarios.ts). */
import { readmeSuite } from './support/readme-scenarios.js';

readmeSuite('readme-security');
