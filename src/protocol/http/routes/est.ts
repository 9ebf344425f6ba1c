/**
 * EST (RFC 7030) on the HTTPS port, one label per enrollment group:
 *
 *   GET  /.well-known/est/{group}/cacerts         public: the group's CA chain (§4.1)
 *   GET  /.well-known/est/{group}/csrattrs        204: no attributes required (§4.5)
 *   POST /.well-known/est/{group}/simpleenroll    factory credential (basic or client cert) (§4.2.1)
 *   POST /.well-known/est/{group}/simplereenroll  the device's current certificate (§4.2.2)
 *
 * Bodies are base64 DER as the RFC says (PEM is accepted too); answers are certs-only CMS,
 * base64. The same operations take and return PEM in JSON at /est/{group}/enroll|reenroll, and
 * factory credentials are managed at /est/credentials (owner-level: each can mint device
 * certificates; route-access.ts).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { HubError } from '../../../core/errors.js';
import { certsOnlyBase64, csrFromBody, type EstCaller, type EstService } from '../../../dps/est.js';
import type { IssuedCertificate } from '../../../pki/authority.js';
import type { EstCredentialRecord } from '../../../store/authority-ports.js';
import { peerChain } from '../../transport/peer.js';
import { jsonBody } from '../body.js';
import { credentialHash, type AccessGate } from '../../../access/gate.js';

type LabelParams = { Params: { label: string } };

const PKCS7 = 'application/pkcs7-mime; smime-type=certs-only';

function callerOf(req: FastifyRequest): EstCaller {
  return { authorization: req.headers.authorization, peerChain: peerChain(req.socket as TLSSocket), remote: req.ip };
}

function renderCredential(c: EstCredentialRecord): Record<string, unknown> {
  return {
    id: c.id,
    enrollmentGroupId: c.enrollmentGroupId,
    password: c.secretHash !== null,
    clientCertificateThumbprint: c.clientThumbprint,
    registrationIds: c.registrationIds,
    expiresAt: c.expiresAt,
    created: c.created,
  };
}

function renderIssued(i: IssuedCertificate): Record<string, unknown> {
  return { serial: i.serial, certificate: i.certificatePem, chain: i.chainPem, notAfter: i.notAfter, thumbprint: i.thumbprintSha256 };
}

export function registerEstRoutes(app: FastifyInstance, est: EstService, logger: Logger, gate?: Pick<AccessGate, 'guarded'>): void {
  /**
   * Runs an EST operation under the lockout, reported to the security events; a refusal is logged
   * with its reason and, for 401, names the scheme (RFC 7030 §3.2.3).
   */
  async function guarded<T>(req: FastifyRequest<LabelParams>, reply: FastifyReply, op: string, fn: () => Promise<T>): Promise<T> {
    try {
      if (gate === undefined) return await fn();
      const header = req.headers.authorization;
      const leaf = peerChain(req.socket as TLSSocket)?.[0];
      return await gate.guarded(
        {
          subject: 'est-credential',
          identity: req.params.label,
          credential: header !== undefined && header !== '' ? credentialHash(header) : leaf === undefined ? undefined : credentialHash(leaf.raw),
          method: header !== undefined && header !== '' ? 'basic' : 'x509',
        },
        { remote: req.ip, protocol: 'est', tls: (req.socket as TLSSocket).getProtocol?.() ?? undefined },
        fn,
      );
    } catch (err) {
      if (err instanceof HubError && (err.status === 401 || err.status === 403)) {
        logger.warn(
          { event: 'auth.denied', protocol: 'est', op, label: req.params.label.slice(0, 128), remote: req.ip, reason: String(err.cause ?? err.message) },
          'EST request denied',
        );
        if (err.status === 401) reply.header('www-authenticate', 'Basic realm="gatehouse-est", charset="UTF-8"');
      }
      throw err;
    }
  }

  function sendCerts(reply: FastifyReply, pems: string[]): FastifyReply {
    return reply.header('content-type', PKCS7).header('content-transfer-encoding', 'base64').send(certsOnlyBase64(pems));
  }

  app.get<LabelParams>('/.well-known/est/:label/cacerts', async (req, reply) => sendCerts(reply, await est.caCerts(req.params.label)));

  app.get<LabelParams>('/.well-known/est/:label/csrattrs', async (_req, reply) => reply.code(204).send());

  app.post<LabelParams>('/.well-known/est/:label/simpleenroll', async (req, reply) => {
    const issued = await guarded(req, reply, 'simpleenroll', () => est.enroll(req.params.label, callerOf(req), csrFromBody(req.body as Buffer | undefined)));
    return sendCerts(reply, [issued.certificatePem]);
  });

  app.post<LabelParams>('/.well-known/est/:label/simplereenroll', async (req, reply) => {
    const issued = await guarded(req, reply, 'simplereenroll', () => est.reenroll(req.params.label, callerOf(req), csrFromBody(req.body as Buffer | undefined)));
    return sendCerts(reply, [issued.certificatePem]);
  });

  // The same with PEM in JSON, for clients without a CMS parser.
  for (const [path, op] of [
    ['enroll', 'enroll'],
    ['reenroll', 'reenroll'],
  ] as const) {
    app.post<LabelParams>(`/est/:label/${path}`, async (req, reply) => {
      const body = jsonBody(req) as { csr?: unknown } | null;
      if (typeof body !== 'object' || body === null || typeof body.csr !== 'string') throw new HubError('ArgumentNull', 'csr is required: the PKCS#10 certificate request (PEM).');
      const csr = csrFromBody(body.csr);
      const issued = await guarded(req, reply, op, () => (op === 'enroll' ? est.enroll(req.params.label, callerOf(req), csr) : est.reenroll(req.params.label, callerOf(req), csr)));
      return renderIssued(issued);
    });
  }

  app.post('/est/credentials', async (req, reply) => {
    const b = jsonBody(req) as Record<string, unknown> | null;
    if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new HubError('IotHubFormatError', 'The body must be a JSON object.');
    const group = b.enrollmentGroupId;
    if (typeof group !== 'string' || group === '') throw new HubError('ArgumentNull', 'enrollmentGroupId is required: the group this factory credential may enroll into.');
    for (const f of ['id', 'clientCertificate'] as const) {
      if (b[f] !== undefined && typeof b[f] !== 'string') throw new HubError('ArgumentInvalid', `${f} must be a string.`);
    }
    if (b.validityDays !== undefined && typeof b.validityDays !== 'number') throw new HubError('ArgumentInvalid', 'validityDays must be a number.');
    if (b.password !== undefined && typeof b.password !== 'boolean') throw new HubError('ArgumentInvalid', 'password must be true or false.');
    const scope = b.registrationIds;
    if (!Array.isArray(scope) || !scope.every((x): x is string => typeof x === 'string')) {
      throw new HubError('ArgumentNull', `registrationIds is required: the registration ids or patterns this credential may enroll, e.g. ["${group.slice(0, 64)}-*"].`);
    }
    const created = await est.createCredential(group, {
      registrationIds: scope,
      ...(typeof b.id === 'string' ? { id: b.id } : {}),
      ...(typeof b.validityDays === 'number' ? { validityDays: b.validityDays } : {}),
      ...(typeof b.clientCertificate === 'string' ? { clientCertificatePem: b.clientCertificate } : {}),
      ...(typeof b.password === 'boolean' ? { password: b.password } : {}),
    });
    return reply.code(201).send({ ...renderCredential(created.record), ...(created.password === undefined ? {} : { password: created.password }) });
  });

  app.get<{ Querystring: { enrollmentGroupId?: string } }>('/est/credentials', async (req) => ({
    value: (await est.listCredentials(req.query.enrollmentGroupId)).map(renderCredential),
  }));

  app.delete<{ Params: { id: string } }>('/est/credentials/:id', async (req, reply) => {
    await est.deleteCredential(req.params.id);
    return reply.code(204).send();
  });
}
