/**
 * The hub's background work, started once its listeners are up (startHub in hub.ts): C2D expiry and
 * delivery, file-notification pruning, log retention, routing dispatchers, automatic
 * configurations, jobs, import/export takeover, the audit log and policy usage.
 */
import type { Logger } from 'pino';
import type { PreparedHub } from './hub.js';

export async function startBackgroundWork(prepared: PreparedHub, logger: Logger): Promise<void> {
  const { services } = prepared;
  services.c2d.start();
  services.files.startPruning((err) => logger.warn({ err, event: 'files.prune-failed' }, 'could not prune file upload notifications'));
  prepared.eventLog.start();
  await prepared.routing.start();
  await prepared.configurationEngine.start();
  prepared.jobRunner.start();
  services.registryJobs.start();
  await services.auditLog.start();
  services.policyUsage.start();
}
