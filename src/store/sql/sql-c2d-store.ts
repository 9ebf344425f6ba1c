import type { SecretBox } from '../../core/secret-box.js';
import type { C2dStore } from '../c2d-ports.js';
import type { SqlDriver } from './driver.js';

/** Placeholder until the C2D work lands. */
export class SqlC2dStore implements C2dStore {
  constructor(
    private readonly db: SqlDriver,
    private readonly box: SecretBox,
  ) {
    void this.db;
    void this.box;
  }
}
