/**
 * X.509 CA certificates (wire doc §7.2), shaped like Azure's ARM certificate resource
 * (Microsoft.Devices/IotHubs/certificates): upload, list, show, delete, generate a verification
 * code, verify by proof of possession. Reads need RegistryRead; changes are owner-level, as ARM's
 * are in Azure (route-access.ts).
 */
import type { FastifyInstance } from 'fastify';
import { HubError } from '../../../core/errors.js';
import { parseIfMatch } from '../../../core/ids.js';
import type { CaCertificateRecord } from '../../../store/certificate-ports.js';
import type { CaCertificates } from '../../../pki/ca-certificates.js';
import { jsonBody } from '../body.js';

type NameParams = { Params: { name: string } };


export interface CertificateResource {
  name: string;
  etag: string;
  type: 'Microsoft.Devices/IotHubs/Certificates';
  properties: {
    subject: string;
    /** RFC 1123 dates, as ARM renders them. */
    expiry: string;
    thumbprint: string;
    isVerified: boolean;
    created: string;
    updated: string;
    certificate: string;
    verificationCode?: string;
  };
}

const rfc1123 = (iso: string): string => new Date(iso).toUTCString();

export function renderCertificate(r: CaCertificateRecord): CertificateResource {
  return {
    name: r.name,
    etag: r.etag,
    type: 'Microsoft.Devices/IotHubs/Certificates',
    properties: {
      subject: r.subject,
      expiry: rfc1123(r.expiry),
      thumbprint: r.thumbprint,
      isVerified: r.isVerified,
      created: rfc1123(r.created),
      updated: rfc1123(r.updated),
      certificate: r.certificatePem,
    },
  };
}

function object(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new HubError('IotHubFormatError', `${what} must be a JSON object.`);
  return v as Record<string, unknown>;
}

function certificateField(o: Record<string, unknown>, where: string): string {
  const c = o.certificate;
  if (typeof c !== 'string' || c.trim() === '') throw new HubError('ArgumentNull', `${where}certificate is required: the PEM or base64 DER certificate.`);
  return c;
}

export function registerCertificateRoutes(app: FastifyInstance, cas: CaCertificates, deleteCa?: (name: string, ifMatch: string) => Promise<void>): void {
  app.put<NameParams>('/certificates/:name', async (req, reply) => {
    const props = object(object(jsonBody(req), 'The body').properties, 'properties');
    const certificate = certificateField(props, 'properties.');
    const isVerified = props.isVerified;
    if (isVerified !== undefined && typeof isVerified !== 'boolean') throw new HubError('ArgumentInvalid', 'properties.isVerified must be true or false.');
    const opts = { verified: isVerified === true };
    const ifMatch = parseIfMatch(req.headers['if-match']);
    // No If-Match: create, and refuse to overwrite. If-Match: replace under that etag ('*' = any).
    const record =
      ifMatch === undefined
        ? await cas.add(req.params.name, certificate, opts)
        : await cas.replace(req.params.name, certificate, ifMatch, opts);
    return reply.header('etag', `"${record.etag}"`).send(renderCertificate(record));
  });

  app.get('/certificates', async () => ({ value: (await cas.list()).map(renderCertificate) }));

  app.get<NameParams>('/certificates/:name', async (req, reply) => {
    const record = await cas.get(req.params.name);
    return reply.header('etag', `"${record.etag}"`).send(renderCertificate(record));
  });

  app.delete<NameParams>('/certificates/:name', async (req, reply) => {
    const ifMatch = parseIfMatch(req.headers['if-match']) ?? '*';
    // A CA Gatehouse created goes with its key; an imported one has none.
    if (deleteCa !== undefined) await deleteCa(req.params.name, ifMatch);
    else await cas.delete(req.params.name, ifMatch);
    return reply.code(204).send();
  });

  app.post<NameParams>('/certificates/:name/generateVerificationCode', async (req, reply) => {
    const record = await cas.generateVerificationCode(req.params.name, parseIfMatch(req.headers['if-match']) ?? '*');
    const body = renderCertificate(record);
    body.properties.verificationCode = record.verificationCode;
    return reply.header('etag', `"${record.etag}"`).send(body);
  });

  app.post<NameParams>('/certificates/:name/verify', async (req, reply) => {
    const certificate = certificateField(object(jsonBody(req), 'The body'), '');
    const record = await cas.verify(req.params.name, certificate, parseIfMatch(req.headers['if-match']) ?? '*');
    return reply.header('etag', `"${record.etag}"`).send(renderCertificate(record));
  });
}
