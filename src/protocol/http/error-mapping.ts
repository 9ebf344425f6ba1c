/**
 * HubError -> HTTP, once. The body uses the legacy shape the installed azure-iothub maps to typed
 * errors (wire doc §6.1): `Message` = `ErrorCode:<Code>;<text>`. The SDK splits Message on `;`,
 * so the text must not contain one. `errorCode` (Azure's number) rides along for other clients.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyReply } from 'fastify';
import { HubError, isHubError } from '../../core/errors.js';

export interface ErrorBody {
  Message: string;
  ExceptionMessage: string;
  errorCode: number;
}

function stamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getUTCMonth() + 1)}/${p(d.getUTCDate())}/${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
}

export function errorBody(err: HubError, trackingId: string = randomUUID()): ErrorBody {
  const text = err.message.replace(/;/g, ',');
  return {
    Message: `ErrorCode:${err.code};${text}`,
    ExceptionMessage: `Tracking ID:${trackingId}-G:0-TimeStamp:${stamp(new Date())}`,
    errorCode: err.number,
  };
}

/** Turns anything thrown by a handler or by Fastify itself into a HubError. */
export function toHubError(err: unknown): HubError {
  if (isHubError(err)) return err;
  const e = err as { code?: string; statusCode?: number; message?: string } | null;
  switch (e?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HubError('MessageTooLarge', 'The request body is too large.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HubError('UnsupportedMediaType', 'Unsupported Content-Type.');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new HubError('IotHubFormatError', 'The request body is empty or its length is wrong.');
    case 'FST_ERR_BAD_URL':
      return new HubError('ArgumentInvalid', 'The request URL is malformed.');
    default:
      break;
  }
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new HubError('ArgumentInvalid', 'The request is malformed.', { cause: err });
  }
  return new HubError('ServerError', 'An internal error occurred.', { cause: err });
}

export function sendError(reply: FastifyReply, err: HubError): FastifyReply {
  return reply
    .code(err.status)
    .header('iothub-errorcode', err.code)
    .header('content-type', 'application/json; charset=utf-8')
    .send(errorBody(err, String(reply.request.id)));
}
