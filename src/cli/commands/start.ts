import type { Command } from 'commander';
import { loadConfig } from '../../config/schema.js';
import { createLogger, defaultLogFormat, routeConsoleToLog } from '../../log.js';
import { CliError } from '../errors.js';
import type { Logger } from 'pino';
import type { HubConfig } from '../../config/schema.js';
import { closePrepared, prepareHub, startHub, type RunningHub } from '../../hub.js';
import { isWorker, reportReady, superviseWorkers, workerNodeId } from '../workers.js';

function hubOptions(cmd: Command): Command {
  return cmd
    .option('--data-dir <dir>', 'data directory (env GATEHOUSE_DATA_DIR)', undefined)
    .option('--hostname <name>', 'the name devices and services use: DNS name or IP (env GATEHOUSE_HOSTNAME)')
    .option('--bind <address>', 'listen address, default 127.0.0.1 (loopback only); :: or 0.0.0.0 for every interface (env GATEHOUSE_BIND)')
    .option('--https-port <port>', 'HTTPS port, default 443 (env GATEHOUSE_HTTPS_PORT)')
    .option('--mqtt-port <port>', 'MQTT over TLS port, default 8883 (env GATEHOUSE_MQTT_PORT)')
    .option('--amqp-port <port>', 'AMQP 1.0 over TLS port, default 5671 (env GATEHOUSE_AMQP_PORT)')
    .option('--database-url <url>', 'PostgreSQL instead of SQLite: postgres://user@host/db[?schema=s] (env GATEHOUSE_DATABASE_URL)')
    .option('--workers <n>', 'hub processes on this machine sharing the ports, default 1; more needs --database-url and --nats-url (env GATEHOUSE_WORKERS)')
    .option('--drain-seconds <s>', 'on SIGTERM, keep serving this long while /health/ready answers 503, default 0 (env GATEHOUSE_DRAIN_SECONDS)')
    .option('--feedback-lock-seconds <s>', 'how long a feedback receiver holds a batch before it is handed out again, 5 to 300, default 60 (env GATEHOUSE_FEEDBACK_LOCK_SECONDS)')
    .option('--job-max-rate <n>', 'the most devices a second one job does on this node, default 2500 (env GATEHOUSE_JOB_MAX_RATE)')
    .option('--stop-timeout <s>', 'the most a stop may take before the process exits anyway, default 30 (env GATEHOUSE_STOP_TIMEOUT)')
    .option('--node-id <name>', 'this node of a cluster, the same across restarts; default local on SQLite, the host name on PostgreSQL (env GATEHOUSE_NODE_ID)')
    .option('--nats-url <url>', 'the bus on NATS for a cluster: nats://[user:password@]host:4222 or tls://...; default in-process (env GATEHOUSE_NATS_URL)')
    .option('--nats-creds <file>', 'NATS credentials file (user JWT + NKey seed) for --nats-url (env GATEHOUSE_NATS_CREDS)')
    .option('--storage-connection-string <cs>', 'an Azure Storage account for file upload; default an embedded Azurite on this node (env GATEHOUSE_STORAGE_CONNECTION_STRING)')
    .option('--nats-ca <file>', 'CA certificate (PEM) of a tls:// NATS server (env GATEHOUSE_NATS_CA)')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (env GATEHOUSE_LOG_LEVEL)')
    .option('--log-format <format>', 'pretty (readable lines) or json; default pretty on a terminal, json otherwise (env GATEHOUSE_LOG_FORMAT)')
    .option('--tls-ca-cert <file>', 'issue the server certificate from this CA certificate (PEM) (env GATEHOUSE_TLS_CA_CERT)')
    .option('--tls-ca-key <file>', 'the key of --tls-ca-cert (PEM) (env GATEHOUSE_TLS_CA_KEY)')
    .option('--dps-disable-symmetric-key-attestation <bool>', 'true: only X.509 devices may register with provisioning (env GATEHOUSE_DPS_DISABLE_SYMMETRIC_KEY_ATTESTATION)')
    .option('--dps-registrations-per-minute <n>', 'provisioning registrations per minute, default 1000 (env GATEHOUSE_DPS_REGISTRATIONS_PER_MINUTE)')
    .option('--mqtt-connect-timeout <seconds>', 'time a new MQTT connection gets to send CONNECT, default 10 (env GATEHOUSE_MQTT_CONNECT_TIMEOUT)')
    .option('--tls-handshake-timeout <seconds>', 'time a new TLS connection on any port gets to finish its handshake, default 10 (env GATEHOUSE_TLS_HANDSHAKE_TIMEOUT)')
    .option('--amqp-open-timeout <seconds>', 'time a new AMQP connection gets to send its header and open, default 10 (env GATEHOUSE_AMQP_OPEN_TIMEOUT)')
    .option('--amqp-auth-timeout <seconds>', 'time an AMQP connection gets after its open to authenticate, default 30 (env GATEHOUSE_AMQP_AUTH_TIMEOUT)')
    .option('--amqp-max-unauthenticated <n>', 'unauthenticated AMQP connections at once per listener, default 256 (env GATEHOUSE_AMQP_MAX_UNAUTHENTICATED)')
    .option('--amqp-max-unauthenticated-per-address <n>', 'unauthenticated AMQP connections at once from one address, default 32 (env GATEHOUSE_AMQP_MAX_UNAUTHENTICATED_PER_ADDRESS)')
    .option('--http-headers-timeout <seconds>', "time an HTTPS client gets to send a request's headers, default 15 (env GATEHOUSE_HTTP_HEADERS_TIMEOUT)")
    .option('--http-request-timeout <seconds>', 'time an HTTPS client gets to send a whole request, default 60 (env GATEHOUSE_HTTP_REQUEST_TIMEOUT)')
    .option('--max-connections-per-address <n>', 'open sockets from one address per port, 0 = no cap, default 256 (env GATEHOUSE_MAX_CONNECTIONS_PER_ADDRESS)')
    .option('--device-cert-validity-days <days>', 'validity of device certificates issued over EST, default 365 (env GATEHOUSE_DEVICE_CERT_VALIDITY_DAYS)')
    .option('--cert-renewal-grace-days <days>', 'days after expiry a device may still renew over EST with its old key, default 30 (env GATEHOUSE_CERT_RENEWAL_GRACE_DAYS)')
    .option('--event-retention-hours <h>', 'hours the event log keeps telemetry, 1-168, default 24 (env GATEHOUSE_EVENT_RETENTION_HOURS)')
    .option('--event-max-count <n>', 'the event log\'s size bound in messages, at least 1000, default 1000000: a byte budget per partition at 1 KiB a message (env GATEHOUSE_EVENT_MAX_COUNT)')
    .option('--partitions <n>', 'partitions of the event log and the Event Hubs-compatible endpoint, 1-32, set when the hub is created, default 4 (env GATEHOUSE_PARTITIONS)')
    .option('--event-log <store>', "where the event log lives: 'sql' (the store's database, default) or 'jetstream' (needs --nats-url) (env GATEHOUSE_EVENT_LOG)")
    .option('--telemetry-durability <mode>', "when telemetry is acknowledged: 'fsync' (synced to disk, default) or 'os-cache' (the OS has it; a power cut may lose it) (env GATEHOUSE_TELEMETRY_DURABILITY)")
    .option('--event-log-replicas <n>', 'JetStream replicas of each partition stream, 1-5, default 1; 3 in a NATS cluster (env GATEHOUSE_EVENT_LOG_REPLICAS)')
    .option('--audit-retention-days <days>', 'days the audit log keeps auth decisions and changes, 0 = forever, default 90 (env GATEHOUSE_AUDIT_RETENTION_DAYS)')
    .option(
      '--linked-hub <connection-string>',
      "another hub provisioning may assign devices to: its iothubowner or registryReadWrite connection string; repeatable (env GATEHOUSE_LINKED_HUBS, '|'-separated)",
      (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
    );
}

/** Commander names the repeatable flag after its singular form. */
function configFrom(opts: Record<string, unknown>) {
  const { linkedHub, ...rest } = opts;
  try {
    return loadConfig(linkedHub === undefined ? rest : { ...rest, linkedHubs: linkedHub });
  } catch (err) {
    throw new CliError('ConfigInvalid', (err as Error).message.replace(/^invalid configuration: /, ''));
  }
}

/**
 * SIGTERM: readiness goes to 503 at once, the node keeps serving for --drain-seconds (the balancer
 * stops sending it clients), then closes its listeners and sessions (devices reconnect elsewhere)
 * and flushes what it accepted. Past --stop-timeout the process exits anyway, with a log line.
 */
async function drainAndStop(hub: RunningHub, config: HubConfig, logger: Logger, signalledAgain: Promise<void>): Promise<void> {
  hub.services.lifecycle.advance('draining');
  logger.info({ event: 'hub.draining', seconds: config.drainSeconds }, 'draining');
  if (config.drainSeconds > 0) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise((r) => (timer = setTimeout(r, config.drainSeconds * 1000))), signalledAgain]);
    clearTimeout(timer);
  }
  logger.info({ event: 'hub.stopping' }, 'stopping');
  const bound = setTimeout(() => {
    logger.error({ event: 'hub.stop-timeout', seconds: config.stopTimeout }, `the stop took over ${config.stopTimeout} s; exiting`);
    process.exit(1);
  }, config.stopTimeout * 1000);
  await hub.stop();
  clearTimeout(bound);
  logger.info({ event: 'hub.stopped' }, 'stopped');
}

export function registerStart(program: Command): void {
  hubOptions(program.command('start').description('start the hub (creates the data dir, keys and certificates on first start)')).action(
    async (opts: Record<string, unknown>) => {
      const configured = configFrom(opts);
      const logger = createLogger(configured.logLevel, undefined, configured.logFormat ?? defaultLogFormat());
      routeConsoleToLog(logger);
      if (configured.workers > 1 && !isWorker()) {
        const { readyLine, stopped } = await superviseWorkers(configured, logger);
        process.stdout.write(`${readyLine}\n`);
        await stopped;
        return;
      }
      const nodeId = workerNodeId();
      const config = nodeId === undefined ? configured : { ...configured, nodeId };
      const hub = await startHub(config, logger);
      const host = hub.state.hostname;
      // Listening for a stop before saying ready: a supervisor may send SIGTERM the moment it reads the line.
      // A second signal ends the drain delay early; the stop itself stays graceful.
      const signals = { next: () => undefined as void };
      const onSignal = () => signals.next();
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      const stopRequested = new Promise<void>((resolve) => {
        signals.next = resolve;
      });
      const ready = `Gatehouse ready: https://${host}${config.httpsPort === 443 ? '' : `:${config.httpsPort}`} mqtts://${host}:${config.mqttPort} amqps://${host}:${config.amqpPort} (bind ${config.bind}, store ${hub.store.kind}, CA ${hub.tls.caFile})`;
      if (isWorker()) reportReady(ready);
      else process.stdout.write(`${ready}\n`);
      await stopRequested;
      const again = new Promise<void>((resolve) => {
        signals.next = resolve;
      });
      await drainAndStop(hub, config, logger, again);
    },
  );

  hubOptions(program.command('init').description('create the data dir, master key, policies and certificates without starting')).action(
    async (opts: Record<string, unknown>) => {
      const config = configFrom(opts);
      const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, undefined, config.logFormat ?? defaultLogFormat());
      const hub = await prepareHub(config, logger);
      await hub.bus.bus.close();
      await closePrepared(hub);
      process.stdout.write(`initialized ${hub.dataDir} (CA ${hub.tls.caFile})\n`);
    },
  );
}
