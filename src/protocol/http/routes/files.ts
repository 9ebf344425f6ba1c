/**
 * File upload, device side [DOCS: Upload files from your device to the cloud with IoT Hub]: the
 * device (its SAS token or client certificate, as for telemetry) asks for a SAS URI for one blob,
 * then reports how the upload went; hub/files/file-upload-service.ts decides.
 */
import type { FastifyInstance } from 'fastify';
import type { FileUploadService } from '../../../hub/files/file-upload-service.js';
import { jsonBody } from '../body.js';

type IdParams = { Params: { id: string } };
type NotificationParams = { Params: { id: string; correlationId: string } };

export function registerFileRoutes(app: FastifyInstance, files: FileUploadService): void {
  app.post<IdParams>('/devices/:id/files', async (req) => files.start(req.params.id, jsonBody(req)));

  // The current API names the upload in the body; azure-iot-device 1.18 still puts it in the path.
  app.post<IdParams>('/devices/:id/files/notifications', async (req, reply) => {
    await files.complete(req.params.id, undefined, jsonBody(req));
    return reply.code(204).send();
  });
  app.post<NotificationParams>('/devices/:id/files/notifications/:correlationId', async (req, reply) => {
    await files.complete(req.params.id, req.params.correlationId, jsonBody(req));
    return reply.code(204).send();
  });
}
