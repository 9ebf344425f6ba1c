/**
 * Import and export of device identities (Azure's `/jobs` API of api-version 2021-04-12, what
 * azure-iothub's Registry.importDevicesFromBlob, exportDevicesToBlob, getJob, listJobs and
 * cancelJob call); hub/registry/import-export.ts runs the jobs.
 */
import type { FastifyInstance } from 'fastify';
import type { ImportExportJobs } from '../../../hub/registry/import-export.js';
import { jsonBody } from '../body.js';
import { byCaller } from '../caller.js';

type IdParams = { Params: { id: string } };

export function registerRegistryJobRoutes(app: FastifyInstance, jobs: ImportExportJobs): void {
  app.post('/jobs/create', async (req) => jobs.create(jsonBody(req), byCaller(req)));
  app.get('/jobs', async () => jobs.list());
  app.get<IdParams>('/jobs/:id', async (req) => jobs.get(req.params.id));
  app.delete<IdParams>('/jobs/:id', async (req) => jobs.cancel(req.params.id));
}
