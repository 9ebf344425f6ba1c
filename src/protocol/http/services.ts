import type { Lifecycle } from '../../hub/lifecycle.js';
import type { RegistryService } from '../../hub/registry/registry-service.js';
import type { TwinService } from '../../hub/twins/twin-service.js';
import type { QueryService } from '../../hub/query/query-service.js';
import type { MethodService } from '../../hub/methods/method-service.js';
import type { DigitalTwinService } from '../../hub/twins/digital-twin-service.js';
import type { ConnectionTable } from '../../hub/connections.js';
import type { C2dService } from '../../hub/c2d/c2d-service.js';
import type { AccessGate } from '../../access/gate.js';
import type { SettingsService } from '../../settings/settings-service.js';
import type { OperatorService } from '../../access/operators.js';
import type { PolicyService } from '../../policies/policy-service.js';
import type { PolicyUsage } from '../../policies/policy-usage.js';
import type { Finding } from '../../posture/posture.js';
import type { DpsDeps, TelemetrySink } from '../transport/device-ports.js';
import type { CaCertificates } from '../../pki/ca-certificates.js';
import type { CertificateAuthority } from '../../pki/authority.js';
import type { EventLog } from '../../log/log-ports.js';
import type { ConsumerGroups } from '../../hub/telemetry/consumer-groups.js';
import type { RoutingEngine } from '../../routing/routing-engine.js';
import type { EnrollmentService } from '../../dps/enrollment-service.js';
import type { EstService } from '../../dps/est.js';
import type { SecurityEvents } from '../../core/security-events.js';
import type { AuditLog } from '../../audit/audit-log.js';
import type { HubMetrics } from '../../metrics/metrics.js';
import type { AlertEngine } from '../../alerts/alerts.js';
import type { ConfigurationService } from '../../hub/configurations/configuration-service.js';
import type { JobService } from '../../hub/jobs/job-service.js';
import type { FileUploadService } from '../../hub/files/file-upload-service.js';
import type { ImportExportJobs } from '../../hub/registry/import-export.js';

/** What the HTTP edge may call. Built in hub.ts; handlers never reach the store directly. */
export interface HubServices {
  registry: RegistryService;
  twins: TwinService;
  query: QueryService;
  methods: MethodService;
  /** IoT Plug and Play: digital twins and their commands (routes/digital-twins.ts). */
  digitalTwins: DigitalTwinService;
  connections: ConnectionTable;
  /** Cloud-to-device queues and feedback. */
  c2d: C2dService;
  /** File upload: SAS URIs for devices, their reports, the notifications (routes/files.ts). */
  files: FileUploadService;
  /** Import and export of device identities through blob containers (routes/registry-jobs.ts). */
  registryJobs: ImportExportJobs;
  /** The access gate: device and service authentication under the hub settings, lockout, events. */
  gate: AccessGate;
  /** Hub settings: the security switches, IP filter, TLS minimum, C2D defaults. */
  settings: SettingsService;
  /** Operators, their bearer tokens and role assignments. */
  operators: OperatorService;
  /** Shared access policies management. */
  policies: PolicyService;
  /** Which rights each policy uses (evidence for the posture audit). */
  policyUsage: PolicyUsage;
  /** The posture audit over the live store. */
  posture(expiringDays: number): Promise<Finding[]>;
  /** Durable intake of device messages (into the partitioned log). */
  telemetry: TelemetrySink;
  /** X.509 CA certificates: registration, proof of possession, device chain checks. */
  cas: CaCertificates;
  /** The device CA: Gatehouse-held CA keys, signing device CSRs under sign options. */
  authority: CertificateAuthority;
  /** EST (RFC 7030) enrollment and renewal, and factory credentials. */
  est: EstService;
  /** The partitioned log of device messages, for the built-in endpoint's readers (GET /events). */
  eventLog: EventLog;
  /** Consumer groups of the Event Hubs-compatible endpoint. */
  consumerGroups: ConsumerGroups;
  /** Automatic device and module configurations (routes/configurations.ts). */
  configurations: ConfigurationService;
  /** Jobs: scheduled twin updates and direct methods over many devices (routes/jobs.ts). */
  jobs: JobService;
  /** Message routing (routes/routing.ts). */
  routing: RoutingEngine;
  /** DPS enrollments and registration states (service side). */
  enrollments: EnrollmentService;
  /** DPS device registration (MQTT and HTTPS). */
  dps: DpsDeps;
  /** Auth decisions, changes, sessions and C2D outcomes, for the audit log, metrics, alerts and lockout. */
  securityEvents: SecurityEvents;
  /** The tamper-evident record of auth decisions and changes: query and verify. */
  auditLog: AuditLog;
  /** The hub's Prometheus registry (GET /metrics) and the message tally the edges bump. */
  metrics: HubMetrics;
  /** Alert rules over the security events, their history and notifications. */
  alerts: AlertEngine;
  health(): Promise<{ status: 'ok' | 'degraded'; store: string; checks: Record<string, string> }>;
  /** Starting, ready, draining: what a load balancer's readiness probe reads. */
  lifecycle: Lifecycle;
}
