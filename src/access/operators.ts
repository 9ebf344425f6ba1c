/**
 * Operators: people and pipelines that manage the hub without a shared access key. Each has an
 * id, holds bearer tokens the hub signs (ES256 JWTs, via `jose`), and gets rights only through
 * role assignments. Tokens expire (at most 30 days), name their operator, and stop working at
 * once when the operator is deleted or disabled or its tokens are revoked (`tokensValidAfter`).
 *
 * Operators and role assignments are rows in the store (schema v14), each with an etag: a change
 * names the etag it was made on (If-Match) and fails with PreconditionFailed when another node or
 * operator changed the row first, instead of rewriting one document over their change. They are
 * small sets (tens), so each node keeps them in memory for the token check on every request and
 * re-reads them after each of its own writes, when told another node wrote (`operators.changed` on
 * the bus), and every few seconds whatever it was told (a lost message must not leave a deleted
 * operator's tokens working on one node); a valid token naming an operator this node has not seen
 * yet is looked up once.
 * The signing key is sealed under the master key and created once, whichever node starts first.
 */
import { createHash, createPrivateKey, createPublicKey, randomUUID } from 'node:crypto';
import { SignJWT, errors, exportPKCS8, generateKeyPair, importPKCS8, importSPKI, jwtVerify, type CryptoKey as JoseKey, type JWTPayload } from 'jose';
import type { AuthFailureCode } from '../core/auth-failure.js';
import { HubError, unauthorized } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { EtagCondition, MetaStore, OperatorRecord, OperatorStore, RoleAssignmentRecord } from '../store/ports.js';
import { newEtag } from '../core/ids.js';
import { SUBJECTS, type HubBus, type OperatorsChanged } from '../bus/subjects.js';
import { isRoleName, roleByName, type RoleName } from './roles.js';

export type Operator = OperatorRecord;

export interface RoleAssignment extends Omit<RoleAssignmentRecord, 'roleDefinitionName'> {
  roleDefinitionName: RoleName;
}

export interface OperatorPrincipal {
  kind: 'operator';
  name: string;
  roles: ReadonlySet<RoleName>;
  /** Token expiry, ms. */
  expiresAt: number;
}

const SIGNING_KEY = 'operators.signing-key';
const OPERATOR_ID = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/;
export const MAX_TOKEN_SECONDS = 30 * 86_400;

/** A token jose refused, categorized by jose's error class (never its message). */
function joseFailure(err: unknown): AuthFailureCode {
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) return err.claim === 'nbf' ? 'not_yet_valid' : err.claim === 'aud' || err.claim === 'iss' ? 'scope' : 'malformed';
  if (err instanceof errors.JWSSignatureVerificationFailed || err instanceof errors.JOSEAlgNotAllowed) return 'bad_credentials';
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return 'malformed';
  return 'other';
}

/** Rows of a role this version does not know (written by a newer one) grant nothing here. */
function known(rows: readonly RoleAssignmentRecord[]): RoleAssignment[] {
  return rows.flatMap((a) => (isRoleName(a.roleDefinitionName) ? [{ ...a, roleDefinitionName: a.roleDefinitionName }] : []));
}

function isPreconditionFailed(err: unknown): boolean {
  return err instanceof HubError && err.code === 'PreconditionFailed';
}

/** Writes made without an etag (no If-Match) read the row and retry this often when it moved meanwhile. */
const UNCONDITIONAL_TRIES = 3;

export class OperatorService {
  #operators = new Map<string, Operator>();
  #assignments: RoleAssignment[] = [];
  #privateKey: JoseKey | undefined;
  #publicKey: JoseKey | undefined;
  #kid = '';
  /** Verified tokens by SHA-256, so a busy pipeline costs one signature check per token. */
  readonly #verified = new Map<string, { sub: string; iat: number; exp: number }>();
  #writes: Promise<unknown> = Promise.resolve();
  /** What was last read, to tell whether a reload changed anything. */
  #fingerprint = '';
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: MetaStore & { readonly operators: OperatorStore },
    private readonly clock: Clock,
    private readonly audience: () => string,
    private readonly bus: HubBus,
    private readonly opts: { refreshMs?: number } = {},
  ) {
    // Another node wrote: read the rows again (the periodic re-read covers a message the bus lost).
    bus.subscribe(SUBJECTS.busResync, () => this.refresh());
    bus.subscribe(SUBJECTS.operatorsChanged, async (_change, meta) => {
      if (!meta.local) await this.refresh();
    });
  }

  get #rows(): OperatorStore {
    return this.store.operators;
  }

  async load(): Promise<void> {
    let pem = await this.store.getSecretMeta(SIGNING_KEY);
    if (pem === undefined) {
      const pair = await generateKeyPair('ES256', { extractable: true });
      // Nodes starting together: every one signs with the key that was kept.
      pem = await this.store.insertSecretMetaIfAbsent(SIGNING_KEY, await exportPKCS8(pair.privateKey));
    }
    this.#privateKey = await importPKCS8(pem, 'ES256', { extractable: true });
    const pub = createPublicKey(createPrivateKey(pem));
    this.#publicKey = await importSPKI(pub.export({ type: 'spki', format: 'pem' }).toString(), 'ES256');
    this.#kid = createHash('sha256').update(pub.export({ type: 'spki', format: 'der' })).digest('base64url').slice(0, 16);
    await this.refresh();
    const every = this.opts.refreshMs ?? 5000;
    if (every > 0 && this.#timer === undefined) {
      this.#timer = setInterval(() => void this.refresh().catch(() => undefined), every);
      this.#timer.unref();
    }
  }

  /** Stops the periodic re-read. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Re-reads every operator and assignment (another node changed them). */
  refresh(): Promise<void> {
    return this.#serial(() => this.#reload());
  }

  async #reload(): Promise<void> {
    const [ops, assignments] = await Promise.all([this.#rows.listOperators(), this.#rows.listAssignments()]);
    const fingerprint = JSON.stringify([ops, assignments]);
    if (fingerprint === this.#fingerprint) return;
    this.#fingerprint = fingerprint;
    this.#operators = new Map(ops.map((o) => [o.id.toLowerCase(), o]));
    this.#assignments = known(assignments);
    this.#verified.clear();
  }

  /** Serializes writes with the reloads that follow them, so an older read never lands last. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#writes.then(fn, fn);
    this.#writes = run.catch(() => undefined);
    return run;
  }

  /** A write, then the rows read again whatever its outcome (a refused write means the cache was stale). */
  #write<T>(change: OperatorsChanged, fn: () => Promise<T>): Promise<T> {
    return this.#serial(async () => {
      try {
        const result = await fn();
        this.bus.publish(SUBJECTS.operatorsChanged, change);
        return result;
      } finally {
        await this.#reload();
      }
    });
  }

  list(): Operator[] {
    return [...this.#operators.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  get(id: string): Operator | undefined {
    return this.#operators.get(id.toLowerCase());
  }

  create(id: string, displayName?: string): Promise<Operator> {
    if (!OPERATOR_ID.test(id)) throw new HubError('ArgumentInvalid', `Operator id '${id.slice(0, 130)}' must be 1-128 of letters, digits, . _ @ - and start with a letter or digit.`);
    return this.#write({ what: 'operator', id }, async () => {
      const op: Operator = { id, displayName: displayName ?? id, enabled: true, createdAt: new Date(this.clock.now()).toISOString(), tokensValidAfter: 0, etag: newEtag() };
      await this.#rows.createOperator(op);
      return op;
    });
  }

  /**
   * Enable, disable, or revoke every token issued so far. With `ifMatch` the change applies only
   * to that version of the operator (PreconditionFailed otherwise); without, to the current one.
   */
  update(id: string, change: { enabled?: boolean; revokeTokens?: boolean }, ifMatch?: EtagCondition): Promise<{ before: Operator; after: Operator }> {
    return this.#write({ what: 'operator', id }, async () => {
      for (let attempt = 1; ; attempt++) {
        const before = await this.#mustRead(id);
        // Whole seconds: JWT `iat` is in seconds, so a token minted in this second is refused too.
        const after: Operator = {
          ...before,
          ...(change.enabled === undefined ? {} : { enabled: change.enabled }),
          ...(change.revokeTokens === true ? { tokensValidAfter: Math.ceil((this.clock.now() + 1) / 1000) * 1000 } : {}),
          etag: newEtag(),
        };
        try {
          await this.#rows.replaceOperator(after, ifMatch ?? before.etag);
          return { before, after };
        } catch (err) {
          if (ifMatch !== undefined || !isPreconditionFailed(err) || attempt >= UNCONDITIONAL_TRIES) throw err;
        }
      }
    });
  }

  /** Deletes the operator with its role assignments; under `ifMatch` when given. */
  delete(id: string, ifMatch?: EtagCondition): Promise<Operator> {
    return this.#write({ what: 'operator', id }, async () => {
      const op = await this.#mustRead(id);
      await this.#rows.deleteOperator(op.id, ifMatch ?? op.etag);
      return op;
    });
  }

  /** The operator as the store has it now (not this node's copy). */
  async #mustRead(id: string): Promise<Operator> {
    const op = await this.#rows.getOperator(id);
    if (op === undefined) throw new HubError('OperatorNotFound', `Operator ${id.slice(0, 128)} does not exist.`);
    return op;
  }

  #must(id: string): Operator {
    const op = this.#operators.get(id.toLowerCase());
    if (op === undefined) throw new HubError('OperatorNotFound', `Operator ${id.slice(0, 128)} does not exist.`);
    return op;
  }

  /** An operator another node created since this one last read: one lookup, then cached. */
  async #lookUp(id: string): Promise<Operator | undefined> {
    const op = await this.#rows.getOperator(id);
    if (op === undefined) return undefined;
    const roles = known(await this.#rows.assignmentsOf(op.id));
    this.#operators.set(op.id.toLowerCase(), op);
    this.#assignments = [...this.#assignments.filter((a) => a.principalId.toLowerCase() !== op.id.toLowerCase()), ...roles];
    this.#fingerprint = ''; // the next reload replaces this partial view whatever it reads
    return op;
  }

  /** Mints a bearer token for an operator. */
  async issueToken(id: string, seconds: number): Promise<{ token: string; expiresAt: string }> {
    const op = this.#must(id);
    if (!op.enabled) throw new HubError('ArgumentInvalid', `Operator ${op.id} is disabled.`);
    if (!(Number.isInteger(seconds) && seconds >= 60 && seconds <= MAX_TOKEN_SECONDS)) {
      throw new HubError('ArgumentInvalid', `Token lifetime must be 60 s to ${MAX_TOKEN_SECONDS / 86_400} days.`);
    }
    if (this.#privateKey === undefined) throw new Error('operator service not loaded');
    const now = Math.floor(this.clock.now() / 1000);
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: this.#kid, typ: 'JWT' })
      .setIssuer('gatehouse')
      .setAudience(this.audience())
      .setSubject(op.id)
      .setIssuedAt(now)
      .setNotBefore(now - 5)
      .setExpirationTime(now + seconds)
      .setJti(randomUUID())
      .sign(this.#privateKey);
    return { token, expiresAt: new Date((now + seconds) * 1000).toISOString() };
  }

  /** Verifies a bearer token; any doubt is the same 401 with the reason as its cause. */
  async authenticate(token: string): Promise<OperatorPrincipal> {
    const digest = createHash('sha256').update(token).digest('hex');
    let claims = this.#verified.get(digest);
    const nowMs = this.clock.now();
    if (claims === undefined) {
      if (this.#publicKey === undefined) throw unauthorized('other', 'operator service not loaded');
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, this.#publicKey, {
          issuer: 'gatehouse',
          audience: this.audience(),
          algorithms: ['ES256'],
          currentDate: new Date(nowMs),
          clockTolerance: 5,
        }));
      } catch (err) {
        throw unauthorized(joseFailure(err), `operator token refused: ${(err as Error).message}`);
      }
      if (typeof payload.sub !== 'string' || typeof payload.iat !== 'number' || typeof payload.exp !== 'number') throw unauthorized('malformed', 'operator token refused: missing sub, iat or exp');
      // Signed with the hub's key, yet longer-lived than the hub issues: not a token it made.
      if (payload.exp - payload.iat > MAX_TOKEN_SECONDS + 60) throw unauthorized('bad_credentials', 'operator token refused: lifetime beyond the maximum');
      claims = { sub: payload.sub, iat: payload.iat, exp: payload.exp };
      if (this.#verified.size > 1000) this.#verified.clear();
      this.#verified.set(digest, claims);
    }
    if (claims.exp * 1000 <= nowMs) throw unauthorized('expired', `expired operator token for ${claims.sub}`);
    const op = this.#operators.get(claims.sub.toLowerCase()) ?? (await this.#lookUp(claims.sub));
    if (op === undefined) throw unauthorized('unknown_identity', `unknown operator ${claims.sub}`);
    if (!op.enabled) throw unauthorized('disabled', `operator ${op.id} is disabled`);
    if (claims.iat * 1000 < op.tokensValidAfter) throw unauthorized('revoked', `operator ${op.id} token was revoked`);
    return { kind: 'operator', name: op.id, roles: this.rolesOf(op.id), expiresAt: claims.exp * 1000 };
  }

  rolesOf(principalId: string): Set<RoleName> {
    const id = principalId.toLowerCase();
    return new Set(this.#assignments.filter((a) => a.principalId.toLowerCase() === id).map((a) => a.roleDefinitionName));
  }

  listAssignments(filter: { assignee?: string; role?: string } = {}): RoleAssignment[] {
    const role = filter.role === undefined ? undefined : roleByName(filter.role);
    if (filter.role !== undefined && role === undefined) throw new HubError('ArgumentInvalid', `Unknown role '${filter.role}'.`);
    return this.#assignments.filter(
      (a) => (filter.assignee === undefined || a.principalId.toLowerCase() === filter.assignee.toLowerCase()) && (role === undefined || a.roleDefinitionName === role),
    );
  }

  createAssignment(assignee: string, roleName: string, scope: string, by: string): Promise<RoleAssignment> {
    const role = roleByName(roleName);
    if (role === undefined || !isRoleName(role)) throw new HubError('ArgumentInvalid', `Unknown role '${roleName.slice(0, 80)}'.`);
    if (scope !== '/') throw new HubError('ArgumentInvalid', `Scope must be '/' (the whole hub).`);
    return this.#write({ what: 'role-assignment', id: assignee }, async () => {
      // Assigning a role the operator holds returns the assignment it has.
      const a = await this.#rows.createAssignment({ id: randomUUID(), principalId: assignee, roleDefinitionName: role, scope, createdAt: new Date(this.clock.now()).toISOString(), createdBy: by, etag: newEtag() });
      return { ...a, roleDefinitionName: role };
    });
  }

  /**
   * Deletes by id (under `ifMatch` when given), or every assignment matching assignee and role
   * (each under the etag it was read with). Returns what was deleted.
   */
  deleteAssignments(match: { id?: string; assignee?: string; role?: string }, ifMatch?: EtagCondition): Promise<RoleAssignment[]> {
    const role = match.role === undefined ? undefined : roleByName(match.role);
    if (match.role !== undefined && role === undefined) throw new HubError('ArgumentInvalid', `Unknown role '${match.role}'.`);
    if (match.id === undefined && match.assignee === undefined) throw new HubError('ArgumentInvalid', 'Give an assignment id or an assignee.');
    return this.#write({ what: 'role-assignment', id: match.id ?? match.assignee ?? '' }, async () => {
      const hit = (a: RoleAssignment) =>
        (match.id === undefined || a.id === match.id) &&
        (match.assignee === undefined || a.principalId.toLowerCase() === match.assignee.toLowerCase()) &&
        (role === undefined || a.roleDefinitionName === role);
      const rows = match.assignee === undefined ? await this.#rows.listAssignments() : await this.#rows.assignmentsOf(match.assignee);
      const matching = known(rows).filter(hit);
      if (matching.length === 0) throw new HubError('RoleAssignmentNotFound', 'No role assignment matches.');
      const removed: RoleAssignment[] = [];
      for (const a of matching) {
        try {
          await this.#rows.deleteAssignment(a.id, ifMatch ?? a.etag);
          removed.push(a);
        } catch (err) {
          // Gone meanwhile (deleted on another node): nothing left to remove.
          if (!(err instanceof HubError && err.code === 'RoleAssignmentNotFound' && matching.length > 1)) throw err;
        }
      }
      return removed;
    });
  }

  /** Is there an enabled operator holding Owner? (Turning local auth off without one locks everyone out.) */
  hasEnabledOwner(): boolean {
    return this.#assignments.some((a) => a.roleDefinitionName === 'Owner' && this.#operators.get(a.principalId.toLowerCase())?.enabled === true);
  }
}

/** The stored operators and role assignments, read without loading the signing key (posture audit). */
export async function readOperators(store: { readonly operators: OperatorStore }): Promise<{ operators: Operator[]; assignments: RoleAssignment[] }> {
  return { operators: await store.operators.listOperators(), assignments: known(await store.operators.listAssignments()) };
}
