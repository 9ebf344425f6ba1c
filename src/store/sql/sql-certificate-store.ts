import type { CertificateStore } from '../certificate-ports.js';
import type { SqlDriver } from './driver.js';

/** Placeholder until the CA registration work lands. */
export class SqlCertificateStore implements CertificateStore {
  constructor(private readonly db: SqlDriver) {
    void this.db;
  }
}
