/** AuthorityStore over a SqlDriver (SQLite and PostgreSQL alike); see authority-store.case.ts. */
import { HubError } from '../../core/errors.js';
import type { SecretBox } from '../../core/secret-box.js';
import type { AuthorityStore, EstCredentialRecord, IssuedCertificateRecord, IssuedQuery } from '../authority-ports.js';
import type { SqlDriver, SqlRow, SqlValue } from './driver.js';
import { str as text, strOrNull as textOrNull } from './rows.js';

const COLUMNS =
  'serial, ca_name, device_id, registration_id, enrollment_group_id, thumbprint_sha1, thumbprint_sha256, not_before, not_after, certificate_pem, revoked_at, revocation_reason, created';

function fromRow(r: SqlRow): IssuedCertificateRecord {
  return {
    serial: text(r, 'serial'),
    caName: text(r, 'ca_name'),
    deviceId: text(r, 'device_id'),
    registrationId: textOrNull(r, 'registration_id'),
    enrollmentGroupId: textOrNull(r, 'enrollment_group_id'),
    thumbprintSha1: text(r, 'thumbprint_sha1'),
    thumbprintSha256: text(r, 'thumbprint_sha256'),
    notBefore: text(r, 'not_before'),
    notAfter: text(r, 'not_after'),
    certificatePem: text(r, 'certificate_pem'),
    revokedAt: textOrNull(r, 'revoked_at'),
    revocationReason: textOrNull(r, 'revocation_reason'),
    created: text(r, 'created'),
  };
}

const EST_COLUMNS = 'id, enrollment_group_id, secret_hash, client_thumbprint, expires_at, created, registration_ids';

function estFromRow(r: SqlRow): EstCredentialRecord {
  return {
    id: text(r, 'id'),
    enrollmentGroupId: text(r, 'enrollment_group_id'),
    secretHash: textOrNull(r, 'secret_hash'),
    clientThumbprint: textOrNull(r, 'client_thumbprint'),
    expiresAt: text(r, 'expires_at'),
    created: text(r, 'created'),
    registrationIds: scopeFromText(text(r, 'registration_ids')),
  };
}

/** A JSON array of strings; anything else allows nothing. */
function scopeFromText(v: string): string[] {
  try {
    const parsed: unknown = JSON.parse(v);
    return Array.isArray(parsed) && parsed.every((x) => typeof x === 'string') ? parsed : [];
  } catch {
    return [];
  }
}

const keyContext = (caName: string): string => `ca-key:${caName}`;

export class SqlAuthorityStore implements AuthorityStore {
  constructor(
    private readonly db: SqlDriver,
    private readonly box: SecretBox,
  ) {}

  async putCaKey(caName: string, keyPem: string): Promise<void> {
    try {
      await this.db.run('INSERT INTO ca_keys (ca_name, key_pem, created) VALUES (?, ?, ?)', [
        caName,
        this.box.seal(keyPem, keyContext(caName)),
        new Date().toISOString(),
      ]);
    } catch (err) {
      if (this.db.isUniqueViolation(err)) throw new HubError('InvalidOperation', `Gatehouse already holds a key for CA '${caName}'.`);
      throw err;
    }
  }

  async getCaKey(caName: string): Promise<string | undefined> {
    const rows = await this.db.all('SELECT key_pem FROM ca_keys WHERE ca_name = ?', [caName]);
    return rows[0] === undefined ? undefined : this.box.open(text(rows[0], 'key_pem'), keyContext(caName));
  }

  async hasCaKey(caName: string): Promise<boolean> {
    return (await this.db.all('SELECT 1 AS held FROM ca_keys WHERE ca_name = ?', [caName])).length > 0;
  }

  async deleteCaKey(caName: string): Promise<boolean> {
    return (await this.db.run('DELETE FROM ca_keys WHERE ca_name = ?', [caName])) > 0;
  }

  async recordIssued(r: IssuedCertificateRecord): Promise<void> {
    const values: SqlValue[] = [
      r.serial,
      r.caName,
      r.deviceId,
      r.registrationId,
      r.enrollmentGroupId,
      r.thumbprintSha1,
      r.thumbprintSha256,
      r.notBefore,
      r.notAfter,
      r.certificatePem,
      r.revokedAt,
      r.revocationReason,
      r.created,
    ];
    try {
      await this.db.run(`INSERT INTO issued_certificates (${COLUMNS}) VALUES (${values.map(() => '?').join(', ')})`, values);
    } catch (err) {
      if (this.db.isUniqueViolation(err)) throw new HubError('InvalidOperation', `A certificate with serial ${r.serial} is already recorded.`);
      throw err;
    }
  }

  async getIssued(serial: string): Promise<IssuedCertificateRecord | undefined> {
    const rows = await this.db.all(`SELECT ${COLUMNS} FROM issued_certificates WHERE serial = ?`, [serial]);
    return rows[0] === undefined ? undefined : fromRow(rows[0]);
  }

  async listIssued(q: IssuedQuery): Promise<IssuedCertificateRecord[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (q.caName !== undefined) {
      where.push('ca_name = ?');
      params.push(q.caName);
    }
    if (q.deviceId !== undefined) {
      where.push('device_id = ?');
      params.push(q.deviceId);
    }
    if (q.after !== undefined) {
      where.push('serial > ?');
      params.push(q.after);
    }
    const clause = where.length === 0 ? '' : `WHERE ${where.join(' AND ')} `;
    const rows = await this.db.all(`SELECT ${COLUMNS} FROM issued_certificates ${clause}ORDER BY serial LIMIT ?`, [...params, q.limit]);
    return rows.map(fromRow);
  }

  async revoke(serial: string, reason: string, at: string): Promise<boolean> {
    const changed = await this.db.run(
      'UPDATE issued_certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ? AND revoked_at IS NULL',
      [at, reason, serial],
    );
    if (changed > 0) return true;
    const rows = await this.db.all('SELECT 1 AS x FROM issued_certificates WHERE serial = ?', [serial]);
    if (rows.length === 0) throw new HubError('ResourceNotFound', `No issued certificate with serial ${serial}.`);
    return false;
  }

  async putEstCredential(r: EstCredentialRecord): Promise<void> {
    try {
      await this.db.run(`INSERT INTO est_credentials (${EST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`, [
        r.id,
        r.enrollmentGroupId,
        r.secretHash,
        r.clientThumbprint,
        r.expiresAt,
        r.created,
        JSON.stringify(r.registrationIds),
      ]);
    } catch (err) {
      if (this.db.isUniqueViolation(err)) throw new HubError('InvalidOperation', `An EST credential '${r.id}' already exists.`);
      throw err;
    }
  }

  async getEstCredential(id: string): Promise<EstCredentialRecord | undefined> {
    const rows = await this.db.all(`SELECT ${EST_COLUMNS} FROM est_credentials WHERE id = ?`, [id]);
    return rows[0] === undefined ? undefined : estFromRow(rows[0]);
  }

  async listEstCredentials(enrollmentGroupId?: string): Promise<EstCredentialRecord[]> {
    const rows =
      enrollmentGroupId === undefined
        ? await this.db.all(`SELECT ${EST_COLUMNS} FROM est_credentials ORDER BY id`)
        : await this.db.all(`SELECT ${EST_COLUMNS} FROM est_credentials WHERE enrollment_group_id = ? ORDER BY id`, [enrollmentGroupId]);
    return rows.map(estFromRow);
  }

  async deleteEstCredential(id: string): Promise<boolean> {
    return (await this.db.run('DELETE FROM est_credentials WHERE id = ?', [id])) > 0;
  }
}
