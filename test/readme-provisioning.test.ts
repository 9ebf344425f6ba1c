/** The README's provisioning and factory scenarios, run as written (test/support/readme-scenarios.ts). */
import { readmeSuite } from './support/readme-scenarios.js';

readmeSuite('readme-provisioning');
