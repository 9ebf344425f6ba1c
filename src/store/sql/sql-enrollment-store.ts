/**
 * DPS enrollments, enrollment groups and registration states over the SqlDriver. The three tables
 * share one shape (lower-cased id, JSON document, etag, created, updated), so one generic table
 * helper serves them. Symmetric keys never reach the document: they are sealed into their own
 * columns, bound to `dps-enrollment:<id>:primary` (groups: `dps-group:<id>:...`).
 */
import { HubError, type ErrorCode } from '../../core/errors.js';
import type { SecretBox } from '../../core/secret-box.js';
import type { AttestationMechanism, DeviceRegistrationState, EnrollmentGroup, IndividualEnrollment } from '../../core/enrollments.js';
import type { EnrollmentStore, StoredRegistration } from '../enrollment-ports.js';
import type { EtagCondition } from '../ports.js';
import type { SqlDriver, SqlExecutor, SqlRow, SqlValue } from './driver.js';
import { str as text, strOrNull as textOrNull } from './rows.js';

interface Stamped {
  etag?: string;
  createdDateTimeUtc?: string;
  lastUpdatedDateTimeUtc?: string;
  attestation?: AttestationMechanism;
}

interface TableSpec {
  table: string;
  idCol: string;
  /** Context prefix of sealed keys; undefined for a table without keys. */
  keyContext?: string;
  /** The record field holding the id as first given. */
  idField: 'registrationId' | 'enrollmentGroupId';
  notFound: ErrorCode;
  what: string;
}

const INDIVIDUALS: TableSpec = {
  table: 'dps_enrollments',
  idCol: 'registration_id',
  idField: 'registrationId',
  keyContext: 'dps-enrollment',
  notFound: 'EnrollmentNotFound',
  what: 'Enrollment',
};
const GROUPS: TableSpec = {
  table: 'dps_enrollment_groups',
  idCol: 'enrollment_group_id',
  idField: 'enrollmentGroupId',
  keyContext: 'dps-group',
  notFound: 'EnrollmentNotFound',
  what: 'Enrollment group',
};
const REGISTRATIONS: TableSpec = {
  table: 'dps_registrations',
  idCol: 'registration_id',
  idField: 'registrationId',
  notFound: 'RegistrationNotFound',
  what: 'Registration',
};

export class SqlEnrollmentStore implements EnrollmentStore {
  constructor(
    private readonly db: SqlDriver,
    private readonly box: SecretBox,
  ) {}

  // ------------------------------------------------------------ individual enrollments

  createIndividual(e: IndividualEnrollment): Promise<void> {
    return this.#insert(INDIVIDUALS, e.registrationId, e);
  }
  getIndividual(id: string): Promise<IndividualEnrollment | undefined> {
    return this.#get<IndividualEnrollment>(INDIVIDUALS, id);
  }
  replaceIndividual(e: IndividualEnrollment, ifMatch: EtagCondition): Promise<void> {
    return this.#replace(INDIVIDUALS, e.registrationId, e, ifMatch);
  }
  deleteIndividual(id: string, ifMatch: EtagCondition): Promise<void> {
    return this.db.transaction(async (tx) => {
      await this.#delete(tx, INDIVIDUALS, id, ifMatch);
      await tx.run('DELETE FROM dps_registrations WHERE registration_id = ? AND enrollment_group_id IS NULL', [id.toLowerCase()]);
    });
  }
  listIndividuals(opts: { after?: string; limit: number }): Promise<IndividualEnrollment[]> {
    return this.#page<IndividualEnrollment>(INDIVIDUALS, opts);
  }

  // ------------------------------------------------------------ enrollment groups

  createGroup(g: EnrollmentGroup): Promise<void> {
    return this.#insert(GROUPS, g.enrollmentGroupId, g);
  }
  getGroup(id: string): Promise<EnrollmentGroup | undefined> {
    return this.#get<EnrollmentGroup>(GROUPS, id);
  }
  replaceGroup(g: EnrollmentGroup, ifMatch: EtagCondition): Promise<void> {
    return this.#replace(GROUPS, g.enrollmentGroupId, g, ifMatch);
  }
  deleteGroup(id: string, ifMatch: EtagCondition): Promise<void> {
    return this.db.transaction((tx) => this.#delete(tx, GROUPS, id, ifMatch));
  }
  listGroupsPage(opts: { after?: string; limit: number }): Promise<EnrollmentGroup[]> {
    return this.#page<EnrollmentGroup>(GROUPS, opts);
  }
  async listGroups(): Promise<EnrollmentGroup[]> {
    const rows = await this.db.all(`SELECT * FROM ${GROUPS.table} ORDER BY ${GROUPS.idCol}`);
    return rows.map((r) => this.#fromRow<EnrollmentGroup>(GROUPS, r));
  }

  // ------------------------------------------------------------ registration states

  createRegistration(s: DeviceRegistrationState, groupId: string | undefined): Promise<void> {
    return this.#insert(REGISTRATIONS, s.registrationId, s, groupId);
  }
  async getRegistration(id: string): Promise<StoredRegistration | undefined> {
    const rows = await this.db.all(`SELECT * FROM ${REGISTRATIONS.table} WHERE registration_id = ?`, [id.toLowerCase()]);
    const row = rows[0];
    if (row === undefined) return undefined;
    const doc = JSON.parse(text(row, 'document')) as { state: DeviceRegistrationState; enrollmentGroupId?: string };
    return { state: this.#fromRow<DeviceRegistrationState>(REGISTRATIONS, row), enrollmentGroupId: doc.enrollmentGroupId };
  }
  replaceRegistration(s: DeviceRegistrationState, groupId: string | undefined, ifMatch: EtagCondition): Promise<void> {
    return this.#replace(REGISTRATIONS, s.registrationId, s, ifMatch, groupId);
  }
  deleteRegistration(id: string, ifMatch: EtagCondition): Promise<void> {
    return this.db.transaction((tx) => this.#delete(tx, REGISTRATIONS, id, ifMatch));
  }
  async listRegistrations(opts: { enrollmentGroupId: string; after?: string; limit: number }): Promise<DeviceRegistrationState[]> {
    const rows = await this.db.all(
      `SELECT * FROM ${REGISTRATIONS.table} WHERE enrollment_group_id = ? AND registration_id > ? ORDER BY registration_id LIMIT ?`,
      [opts.enrollmentGroupId.toLowerCase(), opts.after ?? '', opts.limit],
    );
    return rows.map((r) => this.#fromRow<DeviceRegistrationState>(REGISTRATIONS, r));
  }

  // ------------------------------------------------------------ helpers

  /** The document column: the record without its stamps and keys (registrations also keep their group). */
  #document(spec: TableSpec, rec: Stamped, groupId?: string): string {
    const { etag: _e, createdDateTimeUtc: _c, lastUpdatedDateTimeUtc: _u, ...rest } = rec;
    void _e, _c, _u;
    if (spec === REGISTRATIONS) return JSON.stringify(groupId === undefined ? { state: rest } : { state: rest, enrollmentGroupId: groupId });
    const sk = rest.attestation?.symmetricKey;
    if (sk !== undefined && rest.attestation !== undefined) {
      const { symmetricKey: _k, ...attestation } = rest.attestation;
      void _k;
      return JSON.stringify({ ...rest, attestation: { ...attestation, symmetricKey: {} } });
    }
    return JSON.stringify(rest);
  }

  #keys(spec: TableSpec, id: string, rec: Stamped): [string | null, string | null] {
    const sk = rec.attestation?.symmetricKey;
    if (spec.keyContext === undefined || sk === undefined) return [null, null];
    const ctx = `${spec.keyContext}:${id.toLowerCase()}`;
    return [this.box.seal(sk.primaryKey, `${ctx}:primary`), this.box.seal(sk.secondaryKey, `${ctx}:secondary`)];
  }

  #fromRow<T>(spec: TableSpec, row: SqlRow): T {
    const parsed = JSON.parse(text(row, 'document')) as Record<string, unknown>;
    const doc = (spec === REGISTRATIONS ? parsed.state : parsed) as Stamped & Record<string, unknown>;
    const stamps = { etag: text(row, 'etag'), createdDateTimeUtc: text(row, 'created'), lastUpdatedDateTimeUtc: text(row, 'updated') };
    const primary = textOrNull(row, 'primary_key');
    if (spec.keyContext !== undefined && primary !== null && doc.attestation !== undefined) {
      const ctx = `${spec.keyContext}:${text(row, spec.idCol)}`;
      doc.attestation = {
        ...doc.attestation,
        symmetricKey: {
          primaryKey: this.box.open(primary, `${ctx}:primary`),
          secondaryKey: this.box.openNullable(textOrNull(row, 'secondary_key'), `${ctx}:secondary`) ?? '',
        },
      };
    }
    return { ...doc, ...stamps } as T;
  }

  #columns(spec: TableSpec, id: string, rec: Stamped, groupId: string | undefined): Record<string, SqlValue> {
    const cols: Record<string, SqlValue> = { document: this.#document(spec, rec, groupId), ...this.#stampCols(rec) };
    if (spec === REGISTRATIONS) cols.enrollment_group_id = groupId?.toLowerCase() ?? null;
    if (spec.keyContext !== undefined) [cols.primary_key, cols.secondary_key] = this.#keys(spec, id, rec);
    return cols;
  }

  async #insert(spec: TableSpec, id: string, rec: Stamped, groupId?: string): Promise<void> {
    const cols: Record<string, SqlValue> = { [spec.idCol]: id.toLowerCase(), ...this.#columns(spec, id, rec, groupId) };
    const names = Object.keys(cols);
    try {
      await this.db.run(`INSERT INTO ${spec.table} (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')})`, Object.values(cols));
    } catch (err) {
      if (this.db.isUniqueViolation(err)) throw new HubError('DeviceAlreadyExists', `${spec.what} ${id} already exists.`);
      throw err;
    }
  }

  async #replace(spec: TableSpec, id: string, rec: Stamped, ifMatch: EtagCondition, groupId?: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      const old = await this.#check(tx, spec, id, ifMatch);
      // The created time and the id's original case stay those of the first write.
      const oldDoc = JSON.parse(text(old, 'document')) as Record<string, unknown>;
      const oldId = (spec === REGISTRATIONS ? (oldDoc.state as Record<string, unknown> | undefined) : oldDoc)?.[spec.idField];
      const kept = { ...rec, [spec.idField]: typeof oldId === 'string' ? oldId : id };
      const cols = this.#columns(spec, id, kept, groupId);
      delete cols.created;
      const names = Object.keys(cols);
      await tx.run(`UPDATE ${spec.table} SET ${names.map((n) => `${n} = ?`).join(', ')} WHERE ${spec.idCol} = ?`, [...Object.values(cols), id.toLowerCase()]);
    });
  }

  async #delete(tx: SqlExecutor, spec: TableSpec, id: string, ifMatch: EtagCondition): Promise<void> {
    await this.#check(tx, spec, id, ifMatch);
    await tx.run(`DELETE FROM ${spec.table} WHERE ${spec.idCol} = ?`, [id.toLowerCase()]);
  }

  async #check(tx: SqlExecutor, spec: TableSpec, id: string, ifMatch: EtagCondition): Promise<SqlRow> {
    const rows = await tx.all(`SELECT etag, document FROM ${spec.table} WHERE ${spec.idCol} = ?`, [id.toLowerCase()]);
    const row = rows[0];
    if (row === undefined) throw new HubError(spec.notFound, `${spec.what} ${id} not found.`);
    if (ifMatch !== '*' && text(row, 'etag') !== ifMatch) throw new HubError('PreconditionFailed', `${spec.what} ${id} has changed (etag mismatch).`);
    return row;
  }

  async #get<T>(spec: TableSpec, id: string): Promise<T | undefined> {
    const rows = await this.db.all(`SELECT * FROM ${spec.table} WHERE ${spec.idCol} = ?`, [id.toLowerCase()]);
    return rows[0] === undefined ? undefined : this.#fromRow<T>(spec, rows[0]);
  }

  async #page<T>(spec: TableSpec, opts: { after?: string; limit: number }): Promise<T[]> {
    const rows = await this.db.all(`SELECT * FROM ${spec.table} WHERE ${spec.idCol} > ? ORDER BY ${spec.idCol} LIMIT ?`, [
      opts.after ?? '',
      opts.limit,
    ]);
    return rows.map((r) => this.#fromRow<T>(spec, r));
  }

  #stampCols(rec: Stamped): Record<string, SqlValue> {
    const now = new Date().toISOString();
    return { etag: rec.etag ?? '', created: rec.createdDateTimeUtc ?? now, updated: rec.lastUpdatedDateTimeUtc ?? now };
  }
}
