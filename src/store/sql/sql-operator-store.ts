/**
 * OperatorStore over a SqlDriver (schema v14, tables `operators` and `role_assignments`); see
 * operator-store.case.ts. Every write is one conditional statement or one transaction, so the
 * rows stay right whichever node writes.
 */
import { HubError } from '../../core/errors.js';
import type { OperatorRecord, OperatorStore, RoleAssignmentRecord } from '../operator-ports.js';
import type { EtagCondition } from '../ports.js';
import type { SqlDriver, SqlExecutor, SqlRow } from './driver.js';
import { num, str } from './rows.js';

const OPERATOR_COLUMNS = 'id, display_name, enabled, created_at, tokens_valid_after, etag';
/** Assignments joined to their operator, whose row spells the principal's id. */
const ASSIGNMENT_SELECT =
  'SELECT a.id, o.id AS principal_id, a.role, a.scope, a.created_at, a.created_by, a.etag FROM role_assignments a JOIN operators o ON o.id_key = a.principal_key';

const key = (id: string) => id.toLowerCase();

function operatorFromRow(r: SqlRow): OperatorRecord {
  return {
    id: str(r, 'id'),
    displayName: str(r, 'display_name'),
    enabled: num(r, 'enabled') !== 0,
    createdAt: str(r, 'created_at'),
    tokensValidAfter: num(r, 'tokens_valid_after'),
    etag: str(r, 'etag'),
  };
}

function assignmentFromRow(r: SqlRow): RoleAssignmentRecord {
  return {
    id: str(r, 'id'),
    principalId: str(r, 'principal_id'),
    roleDefinitionName: str(r, 'role'),
    scope: str(r, 'scope'),
    createdAt: str(r, 'created_at'),
    createdBy: str(r, 'created_by'),
    etag: str(r, 'etag'),
  };
}

const notFound = (id: string) => new HubError('OperatorNotFound', `Operator ${id.slice(0, 128)} does not exist.`);

export class SqlOperatorStore implements OperatorStore {
  constructor(private readonly db: SqlDriver) {}

  async listOperators(): Promise<OperatorRecord[]> {
    return (await this.db.all(`SELECT ${OPERATOR_COLUMNS} FROM operators ORDER BY id_key`)).map(operatorFromRow);
  }

  async getOperator(id: string): Promise<OperatorRecord | undefined> {
    const rows = await this.db.all(`SELECT ${OPERATOR_COLUMNS} FROM operators WHERE id_key = ?`, [key(id)]);
    return rows[0] === undefined ? undefined : operatorFromRow(rows[0]);
  }

  async createOperator(op: OperatorRecord): Promise<void> {
    try {
      await this.db.run(`INSERT INTO operators (id_key, ${OPERATOR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`, [
        key(op.id),
        op.id,
        op.displayName,
        op.enabled ? 1 : 0,
        op.createdAt,
        op.tokensValidAfter,
        op.etag,
      ]);
    } catch (err) {
      if (this.db.isUniqueViolation(err)) throw new HubError('OperatorAlreadyExists', `Operator ${op.id} already exists.`);
      throw err;
    }
  }

  async replaceOperator(op: OperatorRecord, ifMatch: EtagCondition): Promise<void> {
    const changed = await this.db.run(
      `UPDATE operators SET display_name = ?, enabled = ?, tokens_valid_after = ?, etag = ? WHERE id_key = ? AND (? = '*' OR etag = ?)`,
      [op.displayName, op.enabled ? 1 : 0, op.tokensValidAfter, op.etag, key(op.id), ifMatch, ifMatch],
    );
    if (changed === 0) await this.#explainOperatorMiss(op.id, this.db);
  }

  async deleteOperator(id: string, ifMatch: EtagCondition): Promise<void> {
    await this.db.transaction(async (tx) => {
      // Explicit, not only the foreign key's cascade: the rows go whatever the connection's settings.
      const changed = await tx.run(`DELETE FROM operators WHERE id_key = ? AND (? = '*' OR etag = ?)`, [key(id), ifMatch, ifMatch]);
      if (changed === 0) await this.#explainOperatorMiss(id, tx);
      await tx.run('DELETE FROM role_assignments WHERE principal_key = ?', [key(id)]);
    });
  }

  async listAssignments(): Promise<RoleAssignmentRecord[]> {
    return (await this.db.all(`${ASSIGNMENT_SELECT} ORDER BY a.principal_key, a.role, a.id`)).map(assignmentFromRow);
  }

  async assignmentsOf(principalId: string): Promise<RoleAssignmentRecord[]> {
    return (await this.db.all(`${ASSIGNMENT_SELECT} WHERE a.principal_key = ? ORDER BY a.role, a.id`, [key(principalId)])).map(assignmentFromRow);
  }

  async createAssignment(a: RoleAssignmentRecord): Promise<RoleAssignmentRecord> {
    const principal = key(a.principalId);
    return this.db.transaction(async (tx) => {
      // FOR SHARE: a delete of the operator on another node waits for this insert, then takes it along.
      const lock = this.db.dialect === 'postgres' ? ' FOR SHARE' : '';
      const op = await tx.all(`SELECT id FROM operators WHERE id_key = ?${lock}`, [principal]);
      if (op[0] === undefined) throw notFound(a.principalId);
      const inserted = await tx.run(
        `INSERT INTO role_assignments (id, principal_key, role, scope, created_at, created_by, etag) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (principal_key, role, scope) DO NOTHING`,
        [a.id, principal, a.roleDefinitionName, a.scope, a.createdAt, a.createdBy, a.etag],
      );
      if (inserted === 1) return { ...a, principalId: str(op[0], 'id') };
      const existing = await tx.all(`${ASSIGNMENT_SELECT} WHERE a.principal_key = ? AND a.role = ? AND a.scope = ?`, [principal, a.roleDefinitionName, a.scope]);
      if (existing[0] === undefined) throw new Error('role assignment neither inserted nor found');
      return assignmentFromRow(existing[0]);
    });
  }

  async deleteAssignment(id: string, ifMatch: EtagCondition): Promise<void> {
    const changed = await this.db.run(`DELETE FROM role_assignments WHERE id = ? AND (? = '*' OR etag = ?)`, [id, ifMatch, ifMatch]);
    if (changed > 0) return;
    const exists = await this.db.all('SELECT 1 AS x FROM role_assignments WHERE id = ?', [id]);
    throw exists.length === 0
      ? new HubError('RoleAssignmentNotFound', 'No role assignment matches.')
      : new HubError('PreconditionFailed', 'The role assignment etag does not match; it was changed by someone else.');
  }

  async #explainOperatorMiss(id: string, exec: SqlExecutor): Promise<never> {
    const rows = await exec.all('SELECT 1 AS x FROM operators WHERE id_key = ?', [key(id)]);
    if (rows.length === 0) throw notFound(id);
    throw new HubError('PreconditionFailed', `The operator etag does not match; it was changed by someone else.`);
  }
}
