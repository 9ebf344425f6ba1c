/** CertificateStore over a SqlDriver (SQLite and PostgreSQL alike); see certificate-store.case.ts. */
import { HubError } from '../../core/errors.js';
import type { CaCertificateRecord, CertificateStore } from '../certificate-ports.js';
import type { EtagCondition } from '../ports.js';
import type { SqlDriver, SqlRow, SqlValue } from './driver.js';
import { str as text } from './rows.js';

const COLUMNS =
  'name, certificate_pem, subject, thumbprint, thumbprint_sha256, expiry, is_verified, verification_code, created, updated, etag';

function fromRow(r: SqlRow): CaCertificateRecord {
  const code = r.verification_code;
  return {
    name: text(r, 'name'),
    certificatePem: text(r, 'certificate_pem'),
    subject: text(r, 'subject'),
    thumbprint: text(r, 'thumbprint'),
    thumbprintSha256: text(r, 'thumbprint_sha256'),
    expiry: text(r, 'expiry'),
    isVerified: Number(r.is_verified) === 1,
    verificationCode: code === null || code === undefined ? null : String(code),
    created: text(r, 'created'),
    updated: text(r, 'updated'),
    etag: text(r, 'etag'),
  };
}

/** Everything after the name, in COLUMNS order. */
function values(c: CaCertificateRecord): SqlValue[] {
  return [
    c.certificatePem,
    c.subject,
    c.thumbprint,
    c.thumbprintSha256,
    c.expiry,
    c.isVerified ? 1 : 0,
    c.verificationCode,
    c.created,
    c.updated,
    c.etag,
  ];
}

export class SqlCertificateStore implements CertificateStore {
  constructor(private readonly db: SqlDriver) {}

  async create(record: CaCertificateRecord): Promise<void> {
    try {
      await this.db.run(`INSERT INTO ca_certificates (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, [
        record.name,
        ...values(record),
      ]);
    } catch (err) {
      if (this.db.isUniqueViolation(err)) {
        throw new HubError('InvalidOperation', `A CA certificate named '${record.name}' already exists.`);
      }
      throw err;
    }
  }

  async get(name: string): Promise<CaCertificateRecord | undefined> {
    const rows = await this.db.all(`SELECT ${COLUMNS} FROM ca_certificates WHERE name = ?`, [name]);
    return rows[0] === undefined ? undefined : fromRow(rows[0]);
  }

  async list(): Promise<CaCertificateRecord[]> {
    const rows = await this.db.all(`SELECT ${COLUMNS} FROM ca_certificates ORDER BY name`);
    return rows.map(fromRow);
  }

  async replace(record: CaCertificateRecord, ifMatch: EtagCondition): Promise<void> {
    const set = COLUMNS.split(',')
      .slice(1)
      .map((c) => `${c.trim()} = ?`)
      .join(', ');
    const changed = await this.db.run(`UPDATE ca_certificates SET ${set} WHERE name = ? AND (? = '*' OR etag = ?)`, [
      ...values(record),
      record.name,
      ifMatch,
      ifMatch,
    ]);
    if (changed === 0) await this.explainMiss(record.name);
  }

  async delete(name: string, ifMatch: EtagCondition): Promise<void> {
    const changed = await this.db.run(`DELETE FROM ca_certificates WHERE name = ? AND (? = '*' OR etag = ?)`, [
      name,
      ifMatch,
      ifMatch,
    ]);
    if (changed === 0) await this.explainMiss(name);
  }

  async findVerifiedByThumbprintSha256(thumbprintSha256: string): Promise<CaCertificateRecord | undefined> {
    const rows = await this.db.all(
      `SELECT ${COLUMNS} FROM ca_certificates WHERE thumbprint_sha256 = ? AND is_verified = 1 ORDER BY name LIMIT 1`,
      [thumbprintSha256],
    );
    return rows[0] === undefined ? undefined : fromRow(rows[0]);
  }

  async listVerified(): Promise<CaCertificateRecord[]> {
    const rows = await this.db.all(`SELECT ${COLUMNS} FROM ca_certificates WHERE is_verified = 1 ORDER BY name`);
    return rows.map(fromRow);
  }

  /** After a conditional write touched no row: tell "not found" from "etag moved". */
  private async explainMiss(name: string): Promise<never> {
    const rows = await this.db.all('SELECT 1 AS x FROM ca_certificates WHERE name = ?', [name]);
    if (rows.length === 0) throw new HubError('ResourceNotFound', `No CA certificate named '${name}'.`);
    throw new HubError('PreconditionFailed', 'The CA certificate etag does not match; it was changed by someone else.');
  }
}
