/**
 * Operators and their role assignments (src/access/operators.ts decides who may do what; the
 * store keeps the rows). One row per operator and per assignment, each with an etag, so two nodes
 * changing two operators never overwrite each other, and a change made on a stale read fails with
 * PreconditionFailed instead of undoing someone else's.
 *
 * Operator ids are unique without regard to case (`Alice` and `alice` are one operator); the id
 * keeps the case it was created with. Roles are names the security layer validates; the store
 * keeps them as text.
 */
import type { EtagCondition } from './ports.js';

export interface OperatorRecord {
  id: string;
  displayName: string;
  enabled: boolean;
  createdAt: string;
  /** Tokens issued before this instant (ms) are refused. */
  tokensValidAfter: number;
  etag: string;
}

export interface RoleAssignmentRecord {
  /** A GUID, as `az role assignment` shows. */
  id: string;
  /** The operator's id, as the operator row spells it. */
  principalId: string;
  roleDefinitionName: string;
  scope: string;
  createdAt: string;
  createdBy: string;
  etag: string;
}

export interface OperatorStore {
  /** Every operator, ordered by id. */
  listOperators(): Promise<OperatorRecord[]>;
  /** Case-insensitive. */
  getOperator(id: string): Promise<OperatorRecord | undefined>;
  /** OperatorAlreadyExists when the id (in any case) is taken. */
  createOperator(op: OperatorRecord): Promise<void>;
  /** Replaces the row (the id is the key, any case) under its etag. OperatorNotFound / PreconditionFailed. */
  replaceOperator(op: OperatorRecord, ifMatch: EtagCondition): Promise<void>;
  /** Deletes the operator and, in the same transaction, its role assignments. OperatorNotFound / PreconditionFailed. */
  deleteOperator(id: string, ifMatch: EtagCondition): Promise<void>;

  /** Every assignment, ordered by principal then role. */
  listAssignments(): Promise<RoleAssignmentRecord[]>;
  /** The assignments of one operator (case-insensitive). */
  assignmentsOf(principalId: string): Promise<RoleAssignmentRecord[]>;
  /**
   * Adds the assignment; when the operator already holds that role at that scope, returns the
   * existing row unchanged (assigning twice is one assignment). OperatorNotFound when the
   * principal is not an operator. The returned row's principalId is spelled as the operator's.
   */
  createAssignment(a: RoleAssignmentRecord): Promise<RoleAssignmentRecord>;
  /** RoleAssignmentNotFound / PreconditionFailed. */
  deleteAssignment(id: string, ifMatch: EtagCondition): Promise<void>;
}
