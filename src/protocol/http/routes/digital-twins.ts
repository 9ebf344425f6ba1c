/**
 * Service REST: IoT Plug and Play digital twins (wire doc §6.5), as `azure-iothub`'s
 * DigitalTwinClient calls them:
 *
 * - `GET /digitaltwins/{id}`: the digital twin, `ETag` header;
 * - `PATCH /digitaltwins/{id}`: a JSON Patch of desired properties, optional `If-Match` → 202,
 *   `ETag` and `Location`;
 * - `POST /digitaltwins/{id}/commands/{command}` and
 *   `POST /digitaltwins/{id}/components/{component}/commands/{command}`, query
 *   `connectTimeoutInSeconds`, `responseTimeoutInSeconds`: the device's answer as the body, its
 *   status in `x-ms-command-statuscode`, and `x-ms-request-id`.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { parseIfMatch } from '../../../core/ids.js';
import type { JsonValue } from '../../../core/json.js';
import { parseDigitalTwinPatch } from '../../../hub/twins/digital-twin.js';
import type { CommandCall, DigitalTwinService } from '../../../hub/twins/digital-twin-service.js';
import { jsonBody } from '../body.js';

type Timeouts = { connectTimeoutInSeconds?: string; responseTimeoutInSeconds?: string };

/** A timeout from the query string; a value that is not a number fails the method call's range check. */
function seconds(raw: string | undefined): number | undefined {
  return raw === undefined || raw === '' ? undefined : Number(raw);
}

async function command(digitalTwins: DigitalTwinService, reply: FastifyReply, call: CommandCall): Promise<FastifyReply> {
  const result = await digitalTwins.invoke(call);
  return reply
    .header('x-ms-command-statuscode', String(result.status))
    .header('x-ms-request-id', randomUUID())
    .type('application/json; charset=utf-8')
    .send(JSON.stringify(result.payload ?? null));
}

export function registerDigitalTwinRoutes(app: FastifyInstance, digitalTwins: DigitalTwinService): void {
  app.get<{ Params: { id: string } }>('/digitaltwins/:id', async (req, reply) => {
    const { doc, etag } = await digitalTwins.get(req.params.id);
    return reply.header('etag', `"${etag}"`).send(doc);
  });

  app.patch<{ Params: { id: string } }>('/digitaltwins/:id', async (req, reply) => {
    const ops = parseDigitalTwinPatch(jsonBody(req));
    const etag = await digitalTwins.update(req.params.id, ops, parseIfMatch(req.headers['if-match']));
    return reply
      .code(202)
      .header('etag', `"${etag}"`)
      .header('location', `/digitaltwins/${encodeURIComponent(req.params.id)}`)
      .send();
  });

  app.post<{ Params: { id: string; command: string }; Querystring: Timeouts }>('/digitaltwins/:id/commands/:command', async (req, reply) =>
    command(digitalTwins, reply, {
      deviceId: req.params.id,
      component: undefined,
      command: req.params.command,
      payload: (jsonBody(req, false) ?? null) as JsonValue,
      connectTimeoutInSeconds: seconds(req.query.connectTimeoutInSeconds),
      responseTimeoutInSeconds: seconds(req.query.responseTimeoutInSeconds),
    }),
  );

  app.post<{ Params: { id: string; component: string; command: string }; Querystring: Timeouts }>(
    '/digitaltwins/:id/components/:component/commands/:command',
    async (req, reply) =>
      command(digitalTwins, reply, {
        deviceId: req.params.id,
        component: req.params.component,
        command: req.params.command,
        payload: (jsonBody(req, false) ?? null) as JsonValue,
        connectTimeoutInSeconds: seconds(req.query.connectTimeoutInSeconds),
        responseTimeoutInSeconds: seconds(req.query.responseTimeoutInSeconds),
      }),
  );
}
