/**
 * The device CA over REST (Gatehouse's own endpoints, not Azure's): create a CA whose key
 * Gatehouse holds, sign a device CSR with it (PEM in, PEM out), list what it issued. Every change
 * is owner-level; the issued list needs RegistryRead (route-access.ts). An operator calling sign is the provisioner here: the body's
 * device id and validity are the sign options (STYLE.md principle 5).
 */
import type { FastifyInstance } from 'fastify';
import { HubError } from '../../../core/errors.js';
import { KEY_ALGS, REVOCATION_REASONS, isRevocationReason, type CertificateAuthority, type KeyAlg, type RevocationReason } from '../../../pki/authority.js';
import type { IssuedCertificateRecord } from '../../../store/authority-ports.js';
import { jsonBody } from '../body.js';
import { renderCertificate } from './certificates.js';

type NameParams = { Params: { name: string } };

/** What one sign request may ask for: at most ten years. */
const MAX_VALIDITY_DAYS = 3650;

function object(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new HubError('IotHubFormatError', `${what} must be a JSON object.`);
  return v as Record<string, unknown>;
}

function requiredString(o: Record<string, unknown>, field: string, hint: string): string {
  const v = o[field];
  if (typeof v !== 'string' || v.trim() === '') throw new HubError('ArgumentNull', `${field} is required: ${hint}.`);
  return v;
}

function optionalString(o: Record<string, unknown>, field: string): string | undefined {
  const v = o[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new HubError('ArgumentInvalid', `${field} must be a string.`);
  return v;
}

function days(o: Record<string, unknown>, field: string, fallback: number | undefined): number | undefined {
  const v = o[field];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_VALIDITY_DAYS) {
    throw new HubError('ArgumentInvalid', `${field} must be a whole number of days from 1 to ${MAX_VALIDITY_DAYS}.`);
  }
  return v;
}

function alg(o: Record<string, unknown>): KeyAlg | undefined {
  const v = o.alg;
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || !(KEY_ALGS as readonly string[]).includes(v)) {
    throw new HubError('ArgumentInvalid', `alg must be one of ${KEY_ALGS.join(', ')}.`);
  }
  return v as KeyAlg;
}

function renderIssued(r: IssuedCertificateRecord): Record<string, unknown> {
  return {
    serial: r.serial,
    caName: r.caName,
    deviceId: r.deviceId,
    registrationId: r.registrationId,
    enrollmentGroupId: r.enrollmentGroupId,
    thumbprint: r.thumbprintSha256,
    thumbprintSha1: r.thumbprintSha1,
    notBefore: r.notBefore,
    notAfter: r.notAfter,
    revokedAt: r.revokedAt,
    revocationReason: r.revocationReason,
    created: r.created,
  };
}

export function registerAuthorityRoutes(app: FastifyInstance, authority: CertificateAuthority): void {
  app.post('/certificateAuthorities', async (req, reply) => {
    const body = object(jsonBody(req), 'The body');
    const parent = optionalString(body, 'parent');
    const a = alg(body);
    const validityDays = days(body, 'validityDays', undefined);
    const commonName = optionalString(body, 'commonName');
    const record = await authority.createCa({
      name: requiredString(body, 'name', 'the CA name (1-64 of A-Z a-z 0-9 _ . -)'),
      ...(parent === undefined ? {} : { parent }),
      ...(a === undefined ? {} : { alg: a }),
      ...(validityDays === undefined ? {} : { validityDays }),
      ...(commonName === undefined ? {} : { commonName }),
    });
    return reply.code(201).header('etag', `"${record.etag}"`).send(renderCertificate(record));
  });

  app.post<NameParams>('/certificateAuthorities/:name/sign', async (req) => {
    const body = object(jsonBody(req), 'The body');
    const issued = await authority.sign(requiredString(body, 'csr', 'the PKCS#10 certificate request (PEM)'), {
      caName: req.params.name,
      deviceId: requiredString(body, 'deviceId', 'the device id, which must be the CSR subject CN'),
      validityDays: days(body, 'validityDays', 365) ?? 365,
    });
    return { serial: issued.serial, certificate: issued.certificatePem, chain: issued.chainPem, notAfter: issued.notAfter, thumbprint: issued.thumbprintSha256 };
  });

  app.get<NameParams & { Querystring: { deviceId?: string; limit?: string; after?: string } }>(
    '/certificateAuthorities/:name/issued',
    async (req) => {
      const { deviceId, limit, after } = req.query;
      if (limit !== undefined && !/^\d{1,4}$/.test(limit)) throw new HubError('ArgumentInvalid', 'limit must be an integer from 1 to 1000.');
      const records = await authority.listIssued(req.params.name, {
        ...(deviceId === undefined ? {} : { deviceId }),
        ...(limit === undefined ? {} : { limit: Number(limit) }),
        ...(after === undefined ? {} : { after }),
      });
      return { value: records.map(renderIssued) };
    },
  );

  // Key export: only with the CA's name repeated in the body, and logged as a warning.
  app.post<NameParams>('/certificateAuthorities/:name/exportKey', async (req) => {
    const body = object(jsonBody(req), 'The body');
    if (body.confirm !== req.params.name) {
      throw new HubError('ArgumentInvalid', 'Exporting a CA key needs {"confirm": "<the CA name>"}: the key leaves the hub and can sign devices.');
    }
    return { name: req.params.name, privateKey: await authority.exportKey(req.params.name) };
  });

  // Revocation (RFC 5280 §5.3.1 reasons): one certificate by serial, or every unrevoked one of a device.
  app.post<NameParams>('/certificateAuthorities/:name/revoke', async (req) => {
    const body = object(jsonBody(req), 'The body');
    const serial = optionalString(body, 'serial');
    const deviceId = optionalString(body, 'deviceId');
    const rawReason = body.reason ?? 'unspecified';
    if (!isRevocationReason(rawReason)) throw new HubError('ArgumentInvalid', `reason must be one of ${Object.keys(REVOCATION_REASONS).join(', ')}.`);
    const reason: RevocationReason = rawReason;
    if ((serial === undefined) === (deviceId === undefined)) throw new HubError('ArgumentInvalid', 'Give exactly one of serial or deviceId.');
    const revoked =
      serial !== undefined ? [await authority.revoke(serial, reason, req.params.name)] : await authority.revokeDevice(deviceId ?? '', reason, req.params.name);
    return { value: revoked.map(renderIssued) };
  });

  // The CRL is public, like any CRL distribution point (RFC 5280 §4.2.1.13): it is signed.
  app.get<{ Params: { file: string } }>('/crl/:file', async (req, reply) => {
    const m = /^(.+)\.crl$/.exec(req.params.file);
    if (m === null) throw new HubError('ResourceNotFound', 'CRLs are at /crl/<ca name>.crl.');
    const der = await authority.crl(m[1]!);
    return reply.header('content-type', 'application/pkix-crl').header('cache-control', 'public, max-age=300').send(der);
  });
}
