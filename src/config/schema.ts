/**
 * The hub's configuration: one schema, defaults with units, validated once, every error reported
 * together, then frozen. Secrets never live here: the master key comes from its own file or
 * GATEHOUSE_MASTER_KEY, database passwords from the URL given at run time.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { parseHubConnectionString } from '../dps/remote-hub.js';
import { parseNatsUrl } from '../bus/nats/nats-options.js';

const hostnamePattern = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

const port = (what: string) =>
  z.coerce
    .number({ error: `${what} must be a number` })
    .int(`${what} must be an integer`)
    .min(1, `${what} must be 1-65535`)
    .max(65535, `${what} must be 1-65535`);

export const configSchema = z
  .object({
    /** Where the SQLite database, the master key, TLS files and state live. */
    dataDir: z.string().min(1).default('./data'),
    /** The name devices and services use: DNS name or IP literal. In SAS `sr`, MQTT usernames, the server certificate. */
    hostname: z
      .string()
      .default('localhost')
      .refine((h) => isIP(h) !== 0 || hostnamePattern.test(h), 'hostname must be a DNS name or an IP address'),
    /**
     * Listen address; default loopback (a local stand-in is reached from this machine only). A
     * private hub names the address devices reach, or `::` / `0.0.0.0` for every interface (logged
     * as a warning).
     */
    bind: z
      .string()
      .default('127.0.0.1')
      .refine((h) => isIP(h) !== 0 || hostnamePattern.test(h), 'bind must be an IP address or a host name'),
    /** HTTPS (service REST, device HTTP, DPS, WebSockets). The official SDKs' HTTPS clients only reach 443. */
    httpsPort: port('https-port').default(443),
    /** MQTT over TLS. */
    mqttPort: port('mqtt-port').default(8883),
    /** AMQP 1.0 over TLS (the service client's C2D and feedback, device AMQP). */
    amqpPort: port('amqp-port').default(5671),
    /**
     * This node's name, the same across its restarts: recorded with the C2D delivery locks its
     * sessions take, so that at start it releases exactly the locks of its own earlier run. Unset:
     * made once and kept in the data dir (`node-id`), so two nodes on one machine never share one.
     */
    nodeId: z
      .string()
      .regex(/^[A-Za-z0-9._:-]{1,128}$/, 'node-id must be 1-128 characters of A-Z a-z 0-9 . _ : -')
      .optional(),
    /**
     * Processes on this machine that share the listening ports (node:cluster) and talk over the
     * bus; more than 1 needs PostgreSQL and NATS.
     */
    /**
     * On SIGTERM: seconds the node keeps serving while /health/ready answers 503, so a load
     * balancer stops sending it new clients before it closes their sessions (default 0).
     */
    drainSeconds: z.coerce.number().int('drain-seconds must be a whole number').min(0, 'drain-seconds must be 0 to 300').max(300, 'drain-seconds must be 0 to 300').default(0),
    /**
     * How long a service's feedback receiver holds a feedback batch before the batch is handed out
     * again (Azure's feedback lock duration: 5 to 300 s, default 60).
     */
    feedbackLockSeconds: z.coerce.number().int('feedback-lock-seconds must be a whole number').min(5, 'feedback-lock-seconds must be 5 to 300').max(300, 'feedback-lock-seconds must be 5 to 300').default(60),
    /** The most devices a second one job does on a node (jobs are also paced to half the node's time). */
    jobMaxRate: z.coerce.number().int('job-max-rate must be a whole number').min(1, 'job-max-rate must be 1 to 1000000').max(1_000_000, 'job-max-rate must be 1 to 1000000').default(2500),
    /** The most a stop may take (closing sessions, flushing writes) before the process exits anyway. */
    stopTimeout: z.coerce.number().int('stop-timeout must be a whole number').min(1, 'stop-timeout must be 1 to 600').max(600, 'stop-timeout must be 1 to 600').default(30),
    workers: z.coerce.number().int('workers must be a whole number').min(1, 'workers must be 1 to 64').max(64, 'workers must be 1 to 64').default(1),
    /** PostgreSQL instead of the embedded SQLite: postgres://user@host:5432/db[?schema=name]. */
    databaseUrl: z
      .string()
      .refine((u) => /^postgres(ql)?:\/\//.test(u), 'database-url must start with postgres:// or postgresql://')
      .optional(),
    /**
     * The bus on NATS instead of in-process: nats://[user:password@|token@]host:4222, or tls://...
     * for TLS. Unset: the in-process bus (one node). Credentials in the URL never reach the log.
     */
    natsUrl: z
      .string()
      .refine((u) => {
        try {
          parseNatsUrl(u);
          return true;
        } catch {
          return false;
        }
      }, 'nats-url must be nats://[user:password@|token@]host[:port] or tls://... with no path')
      .optional(),
    /** A NATS credentials file (user JWT and NKey seed) for --nats-url. */
    natsCreds: z.string().min(1).optional(),
    /**
     * The storage account file uploads go to (an Azure Storage connection string with AccountName,
     * AccountKey and an https BlobEndpoint or EndpointSuffix); unset: an embedded Azurite.
     */
    storageConnectionString: z
      .string()
      .refine((cs) => /(^|;)\s*AccountName=[^;]+/i.test(cs) && /(^|;)\s*AccountKey=[^;]+/i.test(cs), 'storage-connection-string needs AccountName and AccountKey')
      .optional(),
    /** PEM CA bundle that issued a tls:// NATS server's certificate (default: the system's CAs). */
    natsCa: z.string().min(1).optional(),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** `json` or `pretty` (readable lines); unset: pretty when stdout is a terminal, else JSON. */
    logFormat: z.enum(['json', 'pretty'], { error: 'log-format must be json or pretty' }).optional(),
    /** Issue the server certificate from this CA (PEM files) instead of a generated development CA. */
    tlsCaCert: z.string().optional(),
    tlsCaKey: z.string().optional(),
    /** Set the provisioning switch at start: only X.509 (and TPM) devices may register when true. */
    dpsDisableSymmetricKeyAttestation: z.enum(['true', 'false']).optional(),
    /** Provisioning registrations per minute for the whole service (DPS limit: 1,000). */
    dpsRegistrationsPerMinute: z.coerce.number().int().min(1).max(1_000_000).default(1000),
    /** Days a device certificate issued over EST (simpleenroll, simplereenroll) is valid. */
    deviceCertValidityDays: z.coerce.number().int().min(1).max(3650).default(365),
    /** Days after expiry a device may still renew over EST, proving it holds the old key; 0: never. */
    certRenewalGraceDays: z.coerce.number().int().min(0).max(365).default(30),
    /** Seconds a new MQTT connection gets to send CONNECT before it is closed. */
    mqttConnectTimeout: z.coerce.number().int().min(1).max(120).default(10),
    /** Seconds a new TLS connection on any listener gets to finish its handshake. */
    tlsHandshakeTimeout: z.coerce.number().int().min(1).max(120).default(10),
    /** Seconds a new AMQP connection (TLS or WebSocket) gets to send its protocol header and open frame. */
    amqpOpenTimeout: z.coerce.number().int().min(1).max(120).default(10),
    /** Seconds an AMQP connection gets after its open to authenticate (CBS put-token accepted, or a device proven by its certificate). */
    amqpAuthTimeout: z.coerce.number().int().min(1).max(600).default(30),
    /** Unauthenticated AMQP connections at once, per listener (AMQPS and AMQP over WebSocket each). */
    amqpMaxUnauthenticated: z.coerce.number().int().min(1).max(1_000_000).default(256),
    /** Unauthenticated AMQP connections at once from one address (an IPv6 /64 counts as one), per listener. */
    amqpMaxUnauthenticatedPerAddress: z.coerce.number().int().min(1).max(1_000_000).default(32),
    /** Seconds an HTTPS client gets to send a request's headers (the first request after the handshake included). */
    httpHeadersTimeout: z.coerce.number().int().min(1).max(300).default(15),
    /** Seconds an HTTPS client gets to send a whole request, body included. */
    httpRequestTimeout: z.coerce.number().int().min(1).max(3600).default(60),
    /** Open sockets from one address (an IPv6 /64 counts as one) per listener; 0: no cap. */
    maxConnectionsPerAddress: z.coerce.number().int().min(0).max(1_000_000).default(256),
    /** Renew the server certificate when it has fewer days left than this. */
    serverCertRenewDays: z.coerce.number().int().min(1).max(365).default(30),
    /** Hours the partitioned event log keeps device telemetry. */
    eventRetentionHours: z.coerce.number().int().min(1).max(168).default(24),
    /** At most this many events are kept; the oldest are pruned first. */
    eventMaxCount: z.coerce.number().int().min(1000).default(1_000_000),
    /**
     * Partitions of the event log and the Event Hubs-compatible endpoint, fixed when the hub is
     * created (Azure: 4 by default). Unset: 4 for a new hub, the stored count after; a different
     * count for an existing hub stops the start.
     */
    partitions: z.coerce.number().int('partitions must be a whole number').min(1, 'partitions must be 1 to 32').max(32, 'partitions must be 1 to 32').optional(),
    /**
     * Where the partitioned event log lives: `sql` (the store's database: SQLite, or PostgreSQL in a
     * cluster; every append fsynced before the acknowledgement) or `jetstream` (NATS JetStream, a
     * stream per partition; needs --nats-url; as durable as the NATS server's sync_interval and the
     * streams' replicas make it). Fixed for a hub's life: the two do not share records.
     */
    eventLog: z.enum(['sql', 'jetstream']).default('sql'),
    /**
     * When telemetry is acknowledged (QoS 1 PUBACK, HTTPS 204, AMQP accept): `fsync` once the log's
     * commit is synced to disk; `os-cache` once the operating system has it (survives a hub or
     * database crash, not a power cut or kernel crash). The SQL log only: JetStream syncs on the
     * server's sync_interval.
     */
    telemetryDurability: z.enum(['fsync', 'os-cache']).default('fsync'),
    /** JetStream replicas of each partition's stream (--event-log jetstream): 3 in a NATS cluster. */
    eventLogReplicas: z.coerce.number().int().min(1).max(5).default(1),
    /** Days the audit log keeps authentication decisions and changes; 0 keeps them forever. */
    auditRetentionDays: z.coerce.number().int().min(0).max(36_500).default(90),
    /**
     * Other hubs provisioning may assign devices to: their iothubowner or registryReadWrite
     * connection strings (the environment variable separates them with `|`). This hub is always linked.
     */
    linkedHubs: z
      .preprocess(
        (v) => (typeof v === 'string' ? v.split('|').map((s) => s.trim()).filter((s) => s !== '') : v),
        z.array(
          z.string().refine((cs) => {
            try {
              parseHubConnectionString(cs);
              return true;
            } catch {
              return false;
            }
          }, 'linked-hub must be a hub connection string with HostName, SharedAccessKeyName and SharedAccessKey'),
        ),
      )
      .default([]),
  })
  .refine((c) => c.workers === 1 || (c.databaseUrl !== undefined && c.natsUrl !== undefined), {
    message: 'more than one worker needs PostgreSQL (--database-url) and NATS (--nats-url): workers share no memory',
    path: ['workers'],
  })
  .refine((c) => c.eventLog === 'sql' || c.natsUrl !== undefined, {
    message: 'the JetStream event log needs NATS (--nats-url)',
    path: ['eventLog'],
  })
  .refine((c) => (c.tlsCaCert === undefined) === (c.tlsCaKey === undefined), {
    message: 'tls-ca-cert and tls-ca-key go together',
    path: ['tlsCaCert'],
  })
  .refine((c) => c.natsUrl !== undefined || (c.natsCreds === undefined && c.natsCa === undefined), {
    message: 'goes with --nats-url',
    path: ['natsCreds'],
  })
  .refine((c) => c.natsCa === undefined || c.natsUrl === undefined || c.natsUrl.startsWith('tls://'), {
    message: 'needs a tls:// --nats-url (a nats:// URL does not use TLS)',
    path: ['natsCa'],
  })
  .refine((c) => c.httpHeadersTimeout <= c.httpRequestTimeout, {
    message: 'must not exceed --http-request-timeout (the whole request includes its headers)',
    path: ['httpHeadersTimeout'],
  })
  .refine((c) => c.amqpMaxUnauthenticatedPerAddress <= c.amqpMaxUnauthenticated, {
    message: 'must not exceed --amqp-max-unauthenticated',
    path: ['amqpMaxUnauthenticatedPerAddress'],
  });

export type HubConfig = Readonly<z.infer<typeof configSchema>>;

/** GATEHOUSE_* environment variables, by config field. */
export const ENV_NAMES: Record<keyof z.input<typeof configSchema>, string> = {
  dataDir: 'GATEHOUSE_DATA_DIR',
  hostname: 'GATEHOUSE_HOSTNAME',
  bind: 'GATEHOUSE_BIND',
  httpsPort: 'GATEHOUSE_HTTPS_PORT',
  mqttPort: 'GATEHOUSE_MQTT_PORT',
  amqpPort: 'GATEHOUSE_AMQP_PORT',
  databaseUrl: 'GATEHOUSE_DATABASE_URL',
  nodeId: 'GATEHOUSE_NODE_ID',
  natsUrl: 'GATEHOUSE_NATS_URL',
  natsCreds: 'GATEHOUSE_NATS_CREDS',
  natsCa: 'GATEHOUSE_NATS_CA',
  storageConnectionString: 'GATEHOUSE_STORAGE_CONNECTION_STRING',
  workers: 'GATEHOUSE_WORKERS',
  drainSeconds: 'GATEHOUSE_DRAIN_SECONDS',
  feedbackLockSeconds: 'GATEHOUSE_FEEDBACK_LOCK_SECONDS',
  jobMaxRate: 'GATEHOUSE_JOB_MAX_RATE',
  stopTimeout: 'GATEHOUSE_STOP_TIMEOUT',
  logLevel: 'GATEHOUSE_LOG_LEVEL',
  logFormat: 'GATEHOUSE_LOG_FORMAT',
  tlsCaCert: 'GATEHOUSE_TLS_CA_CERT',
  tlsCaKey: 'GATEHOUSE_TLS_CA_KEY',
  serverCertRenewDays: 'GATEHOUSE_SERVER_CERT_RENEW_DAYS',
  mqttConnectTimeout: 'GATEHOUSE_MQTT_CONNECT_TIMEOUT',
  tlsHandshakeTimeout: 'GATEHOUSE_TLS_HANDSHAKE_TIMEOUT',
  amqpOpenTimeout: 'GATEHOUSE_AMQP_OPEN_TIMEOUT',
  amqpAuthTimeout: 'GATEHOUSE_AMQP_AUTH_TIMEOUT',
  amqpMaxUnauthenticated: 'GATEHOUSE_AMQP_MAX_UNAUTHENTICATED',
  amqpMaxUnauthenticatedPerAddress: 'GATEHOUSE_AMQP_MAX_UNAUTHENTICATED_PER_ADDRESS',
  httpHeadersTimeout: 'GATEHOUSE_HTTP_HEADERS_TIMEOUT',
  httpRequestTimeout: 'GATEHOUSE_HTTP_REQUEST_TIMEOUT',
  maxConnectionsPerAddress: 'GATEHOUSE_MAX_CONNECTIONS_PER_ADDRESS',
  deviceCertValidityDays: 'GATEHOUSE_DEVICE_CERT_VALIDITY_DAYS',
  certRenewalGraceDays: 'GATEHOUSE_CERT_RENEWAL_GRACE_DAYS',
  dpsRegistrationsPerMinute: 'GATEHOUSE_DPS_REGISTRATIONS_PER_MINUTE',
  dpsDisableSymmetricKeyAttestation: 'GATEHOUSE_DPS_DISABLE_SYMMETRIC_KEY_ATTESTATION',
  eventRetentionHours: 'GATEHOUSE_EVENT_RETENTION_HOURS',
  eventMaxCount: 'GATEHOUSE_EVENT_MAX_COUNT',
  partitions: 'GATEHOUSE_PARTITIONS',
  eventLog: 'GATEHOUSE_EVENT_LOG',
  eventLogReplicas: 'GATEHOUSE_EVENT_LOG_REPLICAS',
  telemetryDurability: 'GATEHOUSE_TELEMETRY_DURABILITY',
  auditRetentionDays: 'GATEHOUSE_AUDIT_RETENTION_DAYS',
  linkedHubs: 'GATEHOUSE_LINKED_HUBS',
};

function kebab(field: string): string {
  return field.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/**
 * defaults <- environment <- flags. Throws one Error listing every problem.
 */
export function loadConfig(flags: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): HubConfig {
  const merged: Record<string, unknown> = {};
  for (const [field, envName] of Object.entries(ENV_NAMES)) {
    const v = env[envName];
    if (v !== undefined && v !== '') merged[field] = v;
  }
  for (const [k, v] of Object.entries(flags)) if (v !== undefined && k in ENV_NAMES) merged[k] = v;
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const field = String(i.path[0] ?? '');
      return field === '' ? i.message : `--${kebab(field)}: ${i.message}`;
    });
    throw new Error(`invalid configuration: ${problems.join('; ')}`);
  }
  return Object.freeze(parsed.data);
}
