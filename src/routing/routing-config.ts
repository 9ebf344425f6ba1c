/**
 * The routing model (issue 17, decision 0006), in the shape of the `routing` section of Azure's
 * IoT hub properties: endpoints by type, routes, the fallback route and enrichments. Gatehouse's
 * endpoint types replace Azure's (Service Bus, Event Hubs, Storage, Cosmos DB) with endpoints
 * users run themselves; the built-in endpoint is `events`, as in Azure.
 *
 * This file is the contract between the routing engine (store, evaluation, dispatch) and the
 * endpoint sinks (src/routing/endpoints/): the endpoint types and their fields are defined here
 * once. Which fields are secrets is said here too (SECRET_FIELDS): they are sealed at rest and
 * masked in responses.
 */
import { z } from 'zod';

/** The built-in endpoint's name (Azure's): the Event Hubs-compatible endpoint, SSE, monitor-events. */
export const BUILTIN_ENDPOINT = 'events';
/** Names no custom endpoint may take (Azure reserves these too). */
export const RESERVED_ENDPOINT_NAMES = ['events', 'fileNotifications', '$default'];
export const ROUTE_SOURCES = ['DeviceMessages', 'TwinChangeEvents', 'DeviceLifecycleEvents', 'DeviceConnectionStateEvents', 'DeviceJobLifecycleEvents'] as const;
export type RouteSource = (typeof ROUTE_SOURCES)[number];
/** The `iothub-message-source` value of each source's messages (Azure's). */
export const MESSAGE_SOURCE: Record<RouteSource, string> = {
  DeviceMessages: 'Telemetry',
  TwinChangeEvents: 'twinChangeEvents',
  DeviceLifecycleEvents: 'deviceLifecycleEvents',
  DeviceConnectionStateEvents: 'deviceConnectionStateEvents',
  DeviceJobLifecycleEvents: 'deviceJobLifecycleEvents',
};

/** Azure's limits (standard tier). */
export const MAX_ROUTES = 100;
export const MAX_ENDPOINTS_PER_TYPE = 10;
export const MAX_ENRICHMENTS = 10;
export const MAX_CONDITION_LENGTH = 1024;

/** Azure: endpoint and route names are up to 64 letters, digits, periods, underscores and hyphens. */
const NAME = /^[A-Za-z0-9._-]{1,64}$/;
const name = z.string().regex(NAME, 'up to 64 letters, digits, periods, underscores and hyphens');

/** Fields every endpoint has. */
const endpointBase = {
  name,
};

/** An HTTPS (or HTTP, for a receiver on this machine) webhook: one POST per batch. */
export const webhookEndpoint = z
  .object({
    ...endpointBase,
    /** http:// or https:// URL the batches are POSTed to. */
    url: z.string().url().refine((u) => /^https?:\/\//i.test(u), 'an http:// or https:// URL'),
    /** `json`: one POST per batch, a JSON array of message envelopes (body as UTF-8 text when valid, else base64); `raw`: one POST per message with the body as is, properties as headers. */
    format: z.enum(['json', 'raw']).default('json'),
    /**
     * HMAC-SHA256 key: each request carries `x-gatehouse-timestamp: <unix seconds>` and
     * `x-gatehouse-signature: sha256=<hex HMAC of "<timestamp>.<body>">` (docs/routing-endpoints.md). Secret.
     */
    secret: z.string().min(16).max(256).optional(),
    /** PEM of the CA(s) that sign the receiver's certificate (a private CA); replaces the public roots for this endpoint. Not secret. */
    ca: z.string().max(65_536).optional(),
    /** Extra request headers (e.g. an API key). Values are secrets. */
    headers: z.record(z.string().regex(/^[A-Za-z0-9-]{1,64}$/), z.string().max(1024)).optional(),
  })
  .strict();

/** A NATS JetStream subject: each message published and acknowledged by the stream. */
export const natsJetStreamEndpoint = z
  .object({
    ...endpointBase,
    /** `nats://host:port`, comma-separated for several. */
    servers: z.string().min(1).max(1024),
    /** The subject published to; a stream must capture it. */
    subject: z.string().regex(/^[^\s*>]+$/, 'a NATS subject without wildcards'),
    user: z.string().max(256).optional(),
    /** Secret. */
    password: z.string().max(256).optional(),
    /** Secret. */
    token: z.string().max(1024).optional(),
  })
  .strict();

/** A PostgreSQL table the endpoint creates if missing and inserts each message into. */
export const postgresTableEndpoint = z
  .object({
    ...endpointBase,
    /** `postgres://user:password@host:port/db`. The password part is a secret. */
    connectionString: z.string().regex(/^postgres(ql)?:\/\//i, 'a postgres:// URL'),
    /** Unquoted identifier, optionally schema-qualified: `telemetry` or `iot.telemetry`. */
    table: z.string().regex(/^([a-z_][a-z0-9_]{0,62}\.)?[a-z_][a-z0-9_]{0,62}$/, 'a lower-case table name, optionally schema.table'),
  })
  .strict();

/** An AMQP 0-9-1 exchange (RabbitMQ), published with publisher confirms. */
export const rabbitMqExchangeEndpoint = z
  .object({
    ...endpointBase,
    /** `amqp://user:password@host:5672/vhost`. The password part is a secret. */
    url: z.string().regex(/^amqps?:\/\//i, 'an amqp:// or amqps:// URL'),
    exchange: z.string().min(1).max(255),
    /** Routing key; `{deviceId}` is replaced by the message's device id. Default: the device id. */
    routingKey: z.string().max(255).default('{deviceId}'),
  })
  .strict();

/** Rolled NDJSON files under a directory (Azure's storage endpoint, its `json` encoding). */
export const fileEndpoint = z
  .object({
    ...endpointBase,
    /** An absolute directory on the hub's machine. */
    directory: z.string().min(1).refine((d) => d.startsWith('/') || /^[A-Za-z]:[\\/]/.test(d), 'an absolute path'),
    /** Azure's default: `{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}`; all of those tokens must appear. */
    fileNameFormat: z.string().max(256).default('{iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}'),
    /** A file is closed and a new one started after this many seconds (Azure: 60-720, default 300). */
    batchFrequencyInSeconds: z.number().int().min(60).max(720).default(300),
    /** ... or this many bytes (Azure: 10 MB-500 MB, default 300 MB). */
    maxChunkSizeInBytes: z.number().int().min(10_485_760).max(524_288_000).default(314_572_800),
    encoding: z.enum(['json']).default('json'),
  })
  .strict();

export type WebhookEndpoint = z.infer<typeof webhookEndpoint>;
export type NatsJetStreamEndpoint = z.infer<typeof natsJetStreamEndpoint>;
export type PostgresTableEndpoint = z.infer<typeof postgresTableEndpoint>;
export type RabbitMqExchangeEndpoint = z.infer<typeof rabbitMqExchangeEndpoint>;
export type FileEndpoint = z.infer<typeof fileEndpoint>;

/** Endpoint types by their key in `routing.endpoints` (Azure: serviceBusQueues, eventHubs, storageContainers, ...). */
export const ENDPOINT_TYPES = {
  webhooks: webhookEndpoint,
  natsJetStream: natsJetStreamEndpoint,
  postgresTables: postgresTableEndpoint,
  rabbitMqExchanges: rabbitMqExchangeEndpoint,
  files: fileEndpoint,
} as const;
export type EndpointType = keyof typeof ENDPOINT_TYPES;
export const ENDPOINT_TYPE_NAMES = Object.keys(ENDPOINT_TYPES) as EndpointType[];

export interface EndpointOfType {
  webhooks: WebhookEndpoint;
  natsJetStream: NatsJetStreamEndpoint;
  postgresTables: PostgresTableEndpoint;
  rabbitMqExchanges: RabbitMqExchangeEndpoint;
  files: FileEndpoint;
}

/** One custom endpoint with its type, as the engine hands it to a sink factory. */
export type AnyEndpoint = { [T in EndpointType]: { type: T; config: EndpointOfType[T] } }[EndpointType];

/**
 * Secret fields per type: sealed at rest, masked in responses. A `url` secret masks only the
 * password inside it; `headers` masks every value.
 */
export const SECRET_FIELDS: { [T in EndpointType]: readonly string[] } = {
  webhooks: ['secret', 'headers'],
  natsJetStream: ['password', 'token'],
  postgresTables: ['connectionString'],
  rabbitMqExchanges: ['url'],
  files: [],
};

export const routeSchema = z
  .object({
    name,
    source: z.enum(ROUTE_SOURCES),
    /** Azure's routing query language; `true` when absent. */
    condition: z.string().max(MAX_CONDITION_LENGTH).default('true'),
    /** Exactly one endpoint (Azure allows one per route). */
    endpointNames: z.array(name).length(1, 'a route names exactly one endpoint'),
    isEnabled: z.boolean(),
  })
  .strict();

export const fallbackRouteSchema = z
  .object({
    name: z.string().max(64).default('$fallback'),
    source: z.literal('DeviceMessages').default('DeviceMessages'),
    condition: z.literal('true').default('true'),
    endpointNames: z.tuple([z.literal(BUILTIN_ENDPOINT)]).default([BUILTIN_ENDPOINT]),
    isEnabled: z.boolean(),
  })
  .strict();

export const enrichmentSchema = z
  .object({
    /** Added as an application property; up to 64 characters, not `iothub-` or `$`-prefixed. */
    key: z
      .string()
      .min(1)
      .max(64)
      .refine((k) => !/^(iothub-|\$)/i.test(k), 'must not start with iothub- or $'),
    /** A static string, `$twin.<path>`, or `$iothubname`; up to 128 characters. */
    value: z.string().min(1).max(128),
    /** The endpoints it is added for (the built-in `events` included). */
    endpointNames: z.array(name).min(1),
  })
  .strict();

const endpointsSchema = z
  .object({
    webhooks: z.array(webhookEndpoint).max(MAX_ENDPOINTS_PER_TYPE).default([]),
    natsJetStream: z.array(natsJetStreamEndpoint).max(MAX_ENDPOINTS_PER_TYPE).default([]),
    postgresTables: z.array(postgresTableEndpoint).max(MAX_ENDPOINTS_PER_TYPE).default([]),
    rabbitMqExchanges: z.array(rabbitMqExchangeEndpoint).max(MAX_ENDPOINTS_PER_TYPE).default([]),
    files: z.array(fileEndpoint).max(MAX_ENDPOINTS_PER_TYPE).default([]),
  })
  .strict();

export const routingSchema = z
  .object({
    endpoints: endpointsSchema.default({ webhooks: [], natsJetStream: [], postgresTables: [], rabbitMqExchanges: [], files: [] }),
    routes: z.array(routeSchema).max(MAX_ROUTES).default([]),
    fallbackRoute: fallbackRouteSchema.default({ name: '$fallback', source: 'DeviceMessages', condition: 'true', endpointNames: [BUILTIN_ENDPOINT], isEnabled: true }),
    enrichments: z.array(enrichmentSchema).max(MAX_ENRICHMENTS).default([]),
  })
  .strict();

export type Route = z.infer<typeof routeSchema>;
export type FallbackRoute = z.infer<typeof fallbackRouteSchema>;
export type Enrichment = z.infer<typeof enrichmentSchema>;
export type RoutingEndpoints = z.infer<typeof endpointsSchema>;
/** `properties.routing` as Azure shapes it (with Gatehouse's endpoint types). */
export type RoutingProperties = z.infer<typeof routingSchema>;

export function defaultRouting(): RoutingProperties {
  return routingSchema.parse({});
}

/** Every custom endpoint with its type, in the order the document lists them. */
export function endpointList(r: RoutingProperties): AnyEndpoint[] {
  return ENDPOINT_TYPE_NAMES.flatMap((type) => (r.endpoints[type] as EndpointOfType[typeof type][]).map((config) => ({ type, config }) as AnyEndpoint));
}
