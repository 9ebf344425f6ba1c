#!/usr/bin/env node
// The reference gate controller. Built by the repository's `npm run build` into dist/device/.
import { cli } from '../../dist/device/src/main.js';

cli();
