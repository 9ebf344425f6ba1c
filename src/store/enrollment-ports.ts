/**
 * DPS enrollments and device registration states (wire doc §6.9). The rules (validation, key
 * generation, defaults, limits) live in src/dps/enrollment-service.ts; the store keeps the records
 * consistent, seals symmetric keys at rest and pages by cursor.
 *
 * Ids are case-insensitive: the store keys rows by the lower-cased id and returns each record with
 * the id as it was given when created. Cursors are lower-cased ids; a page holds the records
 * strictly after the cursor, in id order.
 *
 * Every record carries `etag`, `createdDateTimeUtc` and `lastUpdatedDateTimeUtc`, set by the
 * caller. Writes take the expected etag ('*' = any) and fail with PreconditionFailed when it moved.
 */
import type { DeviceRegistrationState, EnrollmentGroup, IndividualEnrollment } from '../core/enrollments.js';
import type { EtagCondition } from './ports.js';

/** A registration state with the group it came through (undefined: an individual enrollment). */
export interface StoredRegistration {
  state: DeviceRegistrationState;
  enrollmentGroupId: string | undefined;
}

export interface EnrollmentStore {
  /** DeviceAlreadyExists when the id (any case) is taken. */
  createIndividual(enrollment: IndividualEnrollment): Promise<void>;
  getIndividual(registrationId: string): Promise<IndividualEnrollment | undefined>;
  /** EnrollmentNotFound / PreconditionFailed. The stored id keeps its original case. */
  replaceIndividual(enrollment: IndividualEnrollment, ifMatch: EtagCondition): Promise<void>;
  /**
   * Deletes the enrollment and, in the same transaction, the registration state it produced (one
   * that came through a group stays). EnrollmentNotFound / PreconditionFailed.
   */
  deleteIndividual(registrationId: string, ifMatch: EtagCondition): Promise<void>;
  listIndividuals(opts: { after?: string; limit: number }): Promise<IndividualEnrollment[]>;

  createGroup(group: EnrollmentGroup): Promise<void>;
  getGroup(enrollmentGroupId: string): Promise<EnrollmentGroup | undefined>;
  replaceGroup(group: EnrollmentGroup, ifMatch: EtagCondition): Promise<void>;
  /** The group only; its registration states stay (as in Azure). */
  deleteGroup(enrollmentGroupId: string, ifMatch: EtagCondition): Promise<void>;
  listGroupsPage(opts: { after?: string; limit: number }): Promise<EnrollmentGroup[]>;
  /** Every group with its keys, in id order: the registration runtime's view. */
  listGroups(): Promise<EnrollmentGroup[]>;

  /** DeviceAlreadyExists when a state for the id exists. */
  createRegistration(state: DeviceRegistrationState, enrollmentGroupId: string | undefined): Promise<void>;
  getRegistration(registrationId: string): Promise<StoredRegistration | undefined>;
  /** RegistrationNotFound / PreconditionFailed. */
  replaceRegistration(state: DeviceRegistrationState, enrollmentGroupId: string | undefined, ifMatch: EtagCondition): Promise<void>;
  /** RegistrationNotFound / PreconditionFailed. */
  deleteRegistration(registrationId: string, ifMatch: EtagCondition): Promise<void>;
  /** States that came through the group (matched case-insensitively), by registration id. */
  listRegistrations(opts: { enrollmentGroupId: string; after?: string; limit: number }): Promise<DeviceRegistrationState[]>;
}
