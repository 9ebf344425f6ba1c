/**
 * `gatehouse message-endpoint create <type>|list|show|delete` (as `az iot hub message-endpoint`,
 * with Gatehouse's endpoint types: webhook, nats-jetstream, postgres-table, rabbitmq-exchange,
 * file) and `gatehouse message-enrichment create|list|update|delete` (as `az iot hub
 * message-enrichment`). Both edit the routing document as message-route does (GET, change, PUT
 * under the etag). Secrets go to the hub once and come back masked (`****`).
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { CliError, usage } from '../errors.js';
import { print } from '../output.js';
import { alias, connectionOptions, intInRange, withClient, type ConnOpts } from './common.js';
import { editRouting, readRouting, type RoutingDoc } from './message-route.js';

/** CLI type name -> the key of `routing.endpoints`. */
export const ENDPOINT_TYPES = {
  webhook: 'webhooks',
  'nats-jetstream': 'natsJetStream',
  'postgres-table': 'postgresTables',
  'rabbitmq-exchange': 'rabbitMqExchanges',
  file: 'files',
} as const;
type CliType = keyof typeof ENDPOINT_TYPES;
const TYPE_OF_KEY = Object.fromEntries(Object.entries(ENDPOINT_TYPES).map(([k, v]) => [v, k])) as Record<string, CliType>;

const ENDPOINT_COLUMNS = ['name', 'type', 'target'];
const ENRICHMENT_COLUMNS = ['key', 'value', 'endpointNames'];
const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

function typeOption(v: string): CliType {
  if (!(v in ENDPOINT_TYPES)) throw new InvalidArgumentError(`expected one of ${Object.keys(ENDPOINT_TYPES).join(', ')}`);
  return v as CliType;
}

/** Every endpoint with its CLI type, and where it sends (no secret: the hub masked them). */
function listEndpoints(doc: RoutingDoc): Array<Record<string, unknown> & { name: string; type: CliType; target: string }> {
  return Object.entries(doc.endpoints).flatMap(([key, list]) =>
    list.map((e) => {
      const target = [e.url, e.servers, e.connectionString, e.directory].find((v) => typeof v === 'string') as string | undefined;
      const detail = [e.subject, e.table, e.exchange].find((v) => typeof v === 'string') as string | undefined;
      return { ...e, type: TYPE_OF_KEY[key] as CliType, target: [target, detail].filter((x) => x !== undefined).join(' ') };
    }),
  );
}

function headerPairs(v: string, prev: Record<string, string> | undefined): Record<string, string> {
  const i = v.indexOf('=');
  if (i <= 0) throw new InvalidArgumentError('expected name=value');
  return { ...prev, [v.slice(0, i)]: v.slice(i + 1) };
}

type EndpointOpts = ConnOpts & Record<string, unknown> & { endpointName: string };

/** The options each type takes, and how they become its config. */
const CREATE: Record<CliType, { describe: string; options(cmd: Command): Command; config(o: EndpointOpts): Record<string, unknown> }> = {
  webhook: {
    describe: 'an HTTPS webhook (http:// only to this machine): one POST per batch',
    options: (c) =>
      c
        .requiredOption('--url <url>', 'where batches are POSTed')
        .option('--format <format>', 'json (a JSON array per batch) or raw (one POST per message, the body as is)', 'json')
        .option('--secret <secret>', 'HMAC-SHA256 key (16+ characters): requests carry x-gatehouse-signature')
        .option('--header <name=value>', 'an extra request header (repeatable; values are kept secret)', headerPairs)
        .option('--receiver-ca-file <file>', "PEM of the CA that signs the receiver's certificate"),
    config: (o) => ({ url: o.url, format: o.format, ...(o.secret === undefined ? {} : { secret: o.secret }), ...(o.header === undefined ? {} : { headers: o.header }), ...(o.receiverCaFile === undefined ? {} : { ca: readPem(o.receiverCaFile as string) }) }),
  },
  'nats-jetstream': {
    describe: 'a NATS JetStream subject (a stream must capture it)',
    options: (c) => c.requiredOption('--servers <urls>', 'nats://host:port, comma-separated').requiredOption('--subject <subject>', 'the subject published to').option('--user <user>', 'user').option('--password <password>', 'password').option('--nats-token <token>', 'token'),
    config: (o) => ({ servers: o.servers, subject: o.subject, ...(o.user === undefined ? {} : { user: o.user }), ...(o.password === undefined ? {} : { password: o.password }), ...(o.natsToken === undefined ? {} : { token: o.natsToken }) }),
  },
  'postgres-table': {
    describe: 'a PostgreSQL table (created if missing)',
    options: (c) => c.requiredOption('--pg-connection-string <url>', 'postgres://user:password@host:port/db').requiredOption('--table <table>', 'table or schema.table'),
    config: (o) => ({ connectionString: o.pgConnectionString, table: o.table }),
  },
  'rabbitmq-exchange': {
    describe: 'an AMQP 0-9-1 exchange (RabbitMQ), with publisher confirms',
    options: (c) => c.requiredOption('--url <url>', 'amqp://user:password@host:5672/vhost').requiredOption('--exchange <name>', 'the exchange').option('--routing-key <key>', 'the routing key; {deviceId} is replaced', '{deviceId}'),
    config: (o) => ({ url: o.url, exchange: o.exchange, routingKey: o.routingKey }),
  },
  file: {
    describe: 'rolled NDJSON files under a directory (Azure storage endpoint, json encoding)',
    options: (c) =>
      alias(c, '--ff <format>', 'fileNameFormat')
        .requiredOption('--directory <dir>', 'an absolute directory on the hub machine')
        .option('--file-name-format <format>', 'Azure: {iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm} (also --ff)')
        .option('-b, --batch-frequency <seconds>', 'seconds before a file is rolled (60-720, default 300)', intInRange(60, 720))
        .option('-w, --chunk-size <MB>', 'MB before a file is rolled (10-500, default 300)', intInRange(10, 500)),
    config: (o) => ({
      directory: o.directory,
      ...(o.fileNameFormat === undefined ? {} : { fileNameFormat: o.fileNameFormat }),
      ...(o.batchFrequency === undefined ? {} : { batchFrequencyInSeconds: o.batchFrequency }),
      ...(o.chunkSize === undefined ? {} : { maxChunkSizeInBytes: (o.chunkSize as number) * 1024 * 1024 }),
    }),
  },
};

function readPem(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw usage(`--receiver-ca-file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'FileUnreadable');
  }
}

export function registerMessageEndpoint(program: Command): void {
  const me = program.command('message-endpoint').description('custom routing endpoints (az iot hub message-endpoint)');
  const create = me.command('create').description('create a custom endpoint of a type');
  for (const [type, spec] of Object.entries(CREATE) as Array<[CliType, (typeof CREATE)[CliType]]>) {
    connectionOptions(spec.options(create.command(type).description(spec.describe).requiredOption('-n, --endpoint-name <name>', 'the endpoint name'))).action(async (o: EndpointOpts) => {
      const endpoint = { name: o.endpointName, ...spec.config(o) };
      const key = ENDPOINT_TYPES[type];
      await withClient(o, (c) =>
        editRouting(c, (doc) => {
          if (listEndpoints(doc).some((e) => same(e.name, o.endpointName))) throw usage(`An endpoint named ${o.endpointName} exists; delete it first.`);
          (doc.endpoints[key] ??= []).push(endpoint);
        }),
      );
      const { doc } = await withClient(o, readRouting);
      print(listEndpoints(doc).find((e) => same(e.name, o.endpointName)), o.output, ENDPOINT_COLUMNS);
    });
  }
  connectionOptions(me.command('list').description('list the custom endpoints').option('-t, --endpoint-type <type>', `only this type: ${Object.keys(ENDPOINT_TYPES).join(', ')}`, typeOption)).action(
    async (o: ConnOpts & { endpointType?: CliType }) => {
      const { doc } = await withClient(o, readRouting);
      print(
        listEndpoints(doc).filter((e) => o.endpointType === undefined || e.type === o.endpointType),
        o.output,
        ENDPOINT_COLUMNS,
      );
    },
  );
  connectionOptions(me.command('show').description('show a custom endpoint (secrets masked)').requiredOption('-n, --endpoint-name <name>', 'the endpoint name')).action(async (o: EndpointOpts) => {
    const { doc } = await withClient(o, readRouting);
    const e = listEndpoints(doc).find((x) => same(x.name, o.endpointName));
    if (e === undefined) throw new CliError('ResourceNotFound', `No endpoint named ${o.endpointName}.`);
    print(e, o.output, ENDPOINT_COLUMNS);
  });
  connectionOptions(
    me
      .command('delete')
      .description('delete a custom endpoint (refused while a route or enrichment names it)')
      .requiredOption('-n, --endpoint-name <name>', 'the endpoint name'),
  ).action(async (o: EndpointOpts) => {
    await withClient(o, (c) =>
      editRouting(c, (doc) => {
        let found = false;
        for (const key of Object.keys(doc.endpoints)) {
          const list = doc.endpoints[key] ?? [];
          const rest = list.filter((e) => !same(e.name, o.endpointName));
          found ||= rest.length !== list.length;
          doc.endpoints[key] = rest;
        }
        if (!found) throw new CliError('ResourceNotFound', `No endpoint named ${o.endpointName}.`);
      }),
    );
  });
}

type EnrichmentOpts = ConnOpts & { key: string; value?: string; endpoints?: string[] };

function endpointsOption(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), ...v.split(/[\s,]+/).filter((x) => x !== '')];
}

export function registerMessageEnrichment(program: Command): void {
  const en = program.command('message-enrichment').description('message enrichments per endpoint (az iot hub message-enrichment)');
  const fields = (c: Command, required: boolean) =>
    (required ? c.requiredOption('-v, --value <value>', 'a static string, $twin.<path> or $iothubname') : c.option('-v, --value <value>', 'a static string, $twin.<path> or $iothubname'))
      [required ? 'requiredOption' : 'option']('-e, --endpoints <names...>', 'the endpoints it is added for (space- or comma-separated)', endpointsOption);
  connectionOptions(fields(en.command('create').description('add an enrichment').requiredOption('-k, --key <key>', 'the application property it adds'), true)).action(async (o: EnrichmentOpts) => {
    const item = { key: o.key, value: o.value as string, endpointNames: o.endpoints as string[] };
    await withClient(o, (c) =>
      editRouting(c, (doc) => {
        if (doc.enrichments.some((e) => same(e.key, o.key))) throw usage(`An enrichment with key ${o.key} exists; use message-enrichment update.`);
        doc.enrichments.push(item);
      }),
    );
    print(item, o.output, ENRICHMENT_COLUMNS);
  });
  connectionOptions(en.command('list').description('list the enrichments')).action(async (o: ConnOpts) => {
    const { doc } = await withClient(o, readRouting);
    print(doc.enrichments, o.output, ENRICHMENT_COLUMNS);
  });
  connectionOptions(fields(en.command('update').description('change an enrichment').requiredOption('-k, --key <key>', 'the key'), false)).action(async (o: EnrichmentOpts) => {
    const item = await withClient(o, (c) =>
      editRouting(c, (doc) => {
        const e = doc.enrichments.find((x) => same(x.key, o.key));
        if (e === undefined) throw new CliError('ResourceNotFound', `No enrichment with key ${o.key}.`);
        if (o.value !== undefined) e.value = o.value;
        if (o.endpoints !== undefined) e.endpointNames = o.endpoints;
        return e;
      }),
    );
    print(item, o.output, ENRICHMENT_COLUMNS);
  });
  connectionOptions(en.command('delete').description('delete an enrichment').requiredOption('-k, --key <key>', 'the key')).action(async (o: EnrichmentOpts) => {
    await withClient(o, (c) =>
      editRouting(c, (doc) => {
        const rest = doc.enrichments.filter((x) => !same(x.key, o.key));
        if (rest.length === doc.enrichments.length) throw new CliError('ResourceNotFound', `No enrichment with key ${o.key}.`);
        doc.enrichments = rest;
      }),
    );
  });
}
