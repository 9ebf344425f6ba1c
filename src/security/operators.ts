/**
 * Operators: people and pipelines that manage the hub without a shared access key. Each has an
 * id, holds bearer tokens the hub signs (ES256 JWTs, via `jose`), and gets rights only through
 * role assignments. Tokens expire (at most 30 days), name their operator, and stop working at
 * once when the operator is deleted or disabled or its tokens are revoked (`tokensValidAfter`).
 *
 * Operators and role assignments are small sets (tens); each is one JSON document in the meta
 * table, read at start and rewritten on change; a change goes out on the bus
 * (`operators.changed`) and every other node reads the documents again. The signing key is sealed
 * under the master key.
 */
import { createHash, createPrivateKey, createPublicKey, randomUUID } from 'node:crypto';
import { SignJWT, errors, exportPKCS8, generateKeyPair, importPKCS8, importSPKI, jwtVerify, type CryptoKey as JoseKey, type JWTPayload } from 'jose';
import type { AuthFailureCode } from '../core/auth-failure.js';
import { HubError, unauthorized } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { MetaStore } from '../store/ports.js';
import { SUBJECTS, type HubBus, type OperatorsChanged } from '../bus/subjects.js';
import { isRoleName, roleByName, type RoleName } from './roles.js';

export interface Operator {
  id: string;
  displayName: string;
  enabled: boolean;
  createdAt: string;
  /** Tokens issued before this instant (ms) are refused. */
  tokensValidAfter: number;
}

export interface RoleAssignment {
  /** A GUID, as `az role assignment` shows. */
  id: string;
  principalId: string;
  roleDefinitionName: RoleName;
  /** Always `/` (the whole hub) for now. */
  scope: string;
  createdAt: string;
  createdBy: string;
}

export interface OperatorPrincipal {
  kind: 'operator';
  name: string;
  roles: ReadonlySet<RoleName>;
  /** Token expiry, ms. */
  expiresAt: number;
}

const OPERATORS_KEY = 'operators';
const ASSIGNMENTS_KEY = 'role-assignments';
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

export class OperatorService {
  #operators = new Map<string, Operator>();
  #assignments: RoleAssignment[] = [];
  #privateKey: JoseKey | undefined;
  #publicKey: JoseKey | undefined;
  #kid = '';
  /** Verified tokens by SHA-256, so a busy pipeline costs one signature check per token. */
  readonly #verified = new Map<string, { sub: string; iat: number; exp: number }>();
  #writes: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: MetaStore,
    private readonly clock: Clock,
    private readonly audience: () => string,
    private readonly bus: HubBus,
  ) {
    bus.subscribe(SUBJECTS.operatorsChanged, async (_change, meta) => {
      if (meta.local) return;
      await this.#serial(async () => {
        await this.#readDocs();
        this.#verified.clear();
      });
    });
  }

  async #readDocs(): Promise<void> {
    const ops = JSON.parse((await this.store.getMeta(OPERATORS_KEY)) ?? '[]') as Operator[];
    this.#operators = new Map(ops.map((o) => [o.id.toLowerCase(), o]));
    this.#assignments = JSON.parse((await this.store.getMeta(ASSIGNMENTS_KEY)) ?? '[]') as RoleAssignment[];
  }

  async load(): Promise<void> {
    await this.#readDocs();
    let pem = await this.store.getSecretMeta(SIGNING_KEY);
    if (pem === undefined) {
      const pair = await generateKeyPair('ES256', { extractable: true });
      pem = await exportPKCS8(pair.privateKey);
      await this.store.setSecretMeta(SIGNING_KEY, pem);
    }
    this.#privateKey = await importPKCS8(pem, 'ES256', { extractable: true });
    const pub = createPublicKey(createPrivateKey(pem));
    this.#publicKey = await importSPKI(pub.export({ type: 'spki', format: 'pem' }).toString(), 'ES256');
    this.#kid = createHash('sha256').update(pub.export({ type: 'spki', format: 'der' })).digest('base64url').slice(0, 16);
  }

  /** Serializes read-modify-write of the documents. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#writes.then(fn, fn);
    this.#writes = run.catch(() => undefined);
    return run;
  }

  async #saveOperators(id: string): Promise<void> {
    await this.store.setMeta(OPERATORS_KEY, JSON.stringify([...this.#operators.values()]));
    this.#announce({ what: 'operator', id });
  }

  async #saveAssignments(id: string): Promise<void> {
    await this.store.setMeta(ASSIGNMENTS_KEY, JSON.stringify(this.#assignments));
    this.#announce({ what: 'role-assignment', id });
  }

  #announce(change: OperatorsChanged): void {
    this.bus.publish(SUBJECTS.operatorsChanged, change);
  }

  list(): Operator[] {
    return [...this.#operators.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  get(id: string): Operator | undefined {
    return this.#operators.get(id.toLowerCase());
  }

  create(id: string, displayName?: string): Promise<Operator> {
    if (!OPERATOR_ID.test(id)) throw new HubError('ArgumentInvalid', `Operator id '${id.slice(0, 130)}' must be 1-128 of letters, digits, . _ @ - and start with a letter or digit.`);
    return this.#serial(async () => {
      if (this.#operators.has(id.toLowerCase())) throw new HubError('OperatorAlreadyExists', `Operator ${id} already exists.`);
      const op: Operator = { id, displayName: displayName ?? id, enabled: true, createdAt: new Date(this.clock.now()).toISOString(), tokensValidAfter: 0 };
      this.#operators.set(id.toLowerCase(), op);
      await this.#saveOperators(op.id);
      return op;
    });
  }

  /** Enable, disable, or revoke every token issued so far. */
  update(id: string, change: { enabled?: boolean; revokeTokens?: boolean }): Promise<{ before: Operator; after: Operator }> {
    return this.#serial(async () => {
      const before = this.#must(id);
      // Whole seconds: JWT `iat` is in seconds, so a token minted in this second is refused too.
      const after: Operator = {
        ...before,
        ...(change.enabled === undefined ? {} : { enabled: change.enabled }),
        ...(change.revokeTokens === true ? { tokensValidAfter: Math.ceil((this.clock.now() + 1) / 1000) * 1000 } : {}),
      };
      this.#operators.set(before.id.toLowerCase(), after);
      this.#verified.clear();
      await this.#saveOperators(before.id);
      return { before, after };
    });
  }

  delete(id: string): Promise<Operator> {
    return this.#serial(async () => {
      const op = this.#must(id);
      this.#operators.delete(op.id.toLowerCase());
      this.#assignments = this.#assignments.filter((a) => a.principalId.toLowerCase() !== op.id.toLowerCase());
      this.#verified.clear();
      await this.#saveOperators(op.id);
      await this.#saveAssignments(op.id);
      return op;
    });
  }

  #must(id: string): Operator {
    const op = this.#operators.get(id.toLowerCase());
    if (op === undefined) throw new HubError('OperatorNotFound', `Operator ${id} does not exist.`);
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
    const op = this.#operators.get(claims.sub.toLowerCase());
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
    return this.#serial(async () => {
      const op = this.#must(assignee);
      const existing = this.#assignments.find((a) => a.principalId.toLowerCase() === op.id.toLowerCase() && a.roleDefinitionName === role);
      if (existing !== undefined) return existing;
      const a: RoleAssignment = { id: randomUUID(), principalId: op.id, roleDefinitionName: role, scope, createdAt: new Date(this.clock.now()).toISOString(), createdBy: by };
      this.#assignments.push(a);
      await this.#saveAssignments(a.id);
      return a;
    });
  }

  /** Deletes by id, or every assignment matching assignee and role. */
  deleteAssignments(match: { id?: string; assignee?: string; role?: string }): Promise<RoleAssignment[]> {
    return this.#serial(async () => {
      const role = match.role === undefined ? undefined : roleByName(match.role);
      if (match.role !== undefined && role === undefined) throw new HubError('ArgumentInvalid', `Unknown role '${match.role}'.`);
      if (match.id === undefined && match.assignee === undefined) throw new HubError('ArgumentInvalid', 'Give an assignment id or an assignee.');
      const hit = (a: RoleAssignment) =>
        (match.id === undefined || a.id === match.id) &&
        (match.assignee === undefined || a.principalId.toLowerCase() === match.assignee.toLowerCase()) &&
        (role === undefined || a.roleDefinitionName === role);
      const removed = this.#assignments.filter(hit);
      if (removed.length === 0) throw new HubError('RoleAssignmentNotFound', 'No role assignment matches.');
      this.#assignments = this.#assignments.filter((a) => !hit(a));
      await this.#saveAssignments(removed.map((a) => a.id).join(','));
      return removed;
    });
  }

  /** Is there an enabled operator holding Owner? (Turning local auth off without one locks everyone out.) */
  hasEnabledOwner(): boolean {
    return this.#assignments.some((a) => a.roleDefinitionName === 'Owner' && this.#operators.get(a.principalId.toLowerCase())?.enabled === true);
  }
}

/** The stored operators and role assignments, read without loading the signing key (posture audit). */
export async function readOperatorDocs(store: MetaStore): Promise<{ operators: Operator[]; assignments: RoleAssignment[] }> {
  return {
    operators: JSON.parse((await store.getMeta(OPERATORS_KEY)) ?? '[]') as Operator[],
    assignments: JSON.parse((await store.getMeta(ASSIGNMENTS_KEY)) ?? '[]') as RoleAssignment[],
  };
}
