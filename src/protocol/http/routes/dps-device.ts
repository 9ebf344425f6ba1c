/**
 * Device provisioning over HTTPS (wire doc §4.2), on the hub's HTTPS port:
 * `PUT /{idScope}/registrations/{registrationId}/register` and
 * `GET /{idScope}/registrations/{registrationId}/operations/{operationId}`, each authorized by the
 * device's DPS SAS token. An unknown scope, enrollment or key is the same 401, and each is audited.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RetryLater } from '../../../dps/throttle.js';
import { HubError, unauthorized } from '../../../core/errors.js';
import { isJsonObject } from '../../../core/json.js';
import type { Attested } from '../../../dps/registration-service.js';
import type { DpsDeps } from '../../transport/device-ports.js';
import { jsonBody } from '../body.js';
import { peerChain } from '../../transport/peer.js';
import type { TLSSocket } from 'node:tls';
import { credentialHash } from '../../../access/gate.js';

type RegisterParams = { Params: { idScope: string; registrationId: string } };
type OperationParams = { Params: { idScope: string; registrationId: string; operationId: string } };

async function attest(req: FastifyRequest, dps: DpsDeps, idScope: string, registrationId: string): Promise<Attested> {
  const header = req.headers.authorization;
  // No Authorization header: X.509, the client certificate of this TLS connection.
  const token = Array.isArray(header) ? header[0] : header;
  const symmetric = token !== undefined && token !== '';
  const peer = { remote: req.ip, protocol: 'dps-https' as const, tls: (req.socket as TLSSocket).getProtocol?.() ?? undefined };
  try {
    if (idScope.toLowerCase() !== (await dps.idScope()).toLowerCase()) {
      // Refused before any credential is checked: audited, not counted toward lockout (gate.ts).
      const failure = { code: 'scope', reason: `unknown ID scope ${idScope.slice(0, 64)}` } as const;
      dps.gate?.refusedBeforeAuth({ subject: 'registration', identity: registrationId, method: symmetric ? 'symmetricKey' : 'x509', failure }, peer);
      throw unauthorized(failure.code, failure.reason);
    }
    const chain = symmetric ? undefined : peerChain(req.socket as TLSSocket);
    const attestNow = () => (symmetric ? dps.registration.attestSymmetricKey(registrationId, token) : dps.registration.attestX509(registrationId, chain));
    if (dps.gate === undefined) return await attestNow();
    const leaf = chain?.[0];
    return await dps.gate.guarded(
      {
        subject: 'registration',
        identity: registrationId,
        credential: symmetric ? credentialHash(token) : leaf === undefined ? undefined : credentialHash(leaf.raw),
        method: symmetric ? 'symmetricKey' : 'x509',
      },
      peer,
      attestNow,
    );
  } catch (err) {
    req.log.warn(
      { event: 'auth.denied', protocol: 'dps-https', remote: req.ip, registrationId: registrationId.slice(0, 128), reason: String((err as Error).cause ?? (err as Error).message) },
      'provisioning request denied',
    );
    throw err;
  }
}

/** A throttled request gets its `retry-after` header (seconds) with the 429. */
async function withRetryAfter<T>(reply: FastifyReply, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof RetryLater) reply.header('retry-after', String(err.retryAfterSeconds));
    throw err;
  }
}

export function registerDpsDeviceRoutes(app: FastifyInstance, dps: DpsDeps): void {
  app.put<RegisterParams>('/:idScope/registrations/:registrationId/register', async (req, reply) => {
    const who = await attest(req, dps, req.params.idScope, req.params.registrationId);
    const body = jsonBody(req, false);
    if (isJsonObject(body) && body.registrationId !== undefined && body.registrationId !== req.params.registrationId) {
      throw new HubError('ArgumentInvalid', 'registrationId in the body does not match the path.');
    }
    const payload = isJsonObject(body) ? body.payload : undefined;
    const peer = { remote: req.ip, protocol: 'dps-https' as const, tls: (req.socket as TLSSocket).getProtocol?.() ?? undefined };
    return withRetryAfter(reply, () => dps.registration.register(who, payload === undefined ? undefined : payload, peer));
  });

  app.get<OperationParams>('/:idScope/registrations/:registrationId/operations/:operationId', async (req, reply) => {
    const who = await attest(req, dps, req.params.idScope, req.params.registrationId);
    const op = await withRetryAfter(reply, async () => dps.registration.operation(who.registrationId, req.params.operationId));
    if (op === undefined) throw new HubError('ResourceNotFound', 'No such operation.');
    return op;
  });
}
