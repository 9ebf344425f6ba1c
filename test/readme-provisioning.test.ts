/** The README's provisioning and factory scenarios, run as written (test/support/readme-scenarios.ts). */
import { README_TEST_FILES, readmeSuite } from './support/readme-scenarios.js';

readmeSuite(README_TEST_FILES['readme-provisioning'] ?? []);
