/**
 * The webhook endpoint against a real HTTPS receiver (node:https, a certificate from a CA made for
 * the test), written as a user would write one: it checks the HMAC signature over
 * `<timestamp>.<raw body>` and the replay window before it accepts anything, and answers 401
 * otherwise. Both formats pass the sink contract; then TLS, redirects, timeouts, statuses and
 * config refusals.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { describe, it, before } from 'node:test';
import { createDevRootCa, issueServerCertificate, type ServerCertMaterial } from '../src/pki/dev-ca.js';
import { decodeBody, type MessageEnvelope } from '../src/routing/endpoints/envelope.js';
import { EndpointConfigError } from '../src/routing/endpoints/sink.js';
import { CASE_HUB, deliveredFromHeaders, endpointSinkConformance, routedBatch, type Delivered } from '../src/routing/endpoints/sink.case.js';
import { createWebhookSink } from '../src/routing/endpoints/webhook-sink.js';
import type { WebhookEndpoint } from '../src/routing/routing-config.js';
import { ROOT } from './support/hub-process.js';
import { decisionProblems, extractBlocks } from './support/readme-blocks.js';

interface Tls {
  caPem: string;
  server: ServerCertMaterial;
}

let tlsReady: Promise<Tls> | undefined;
function testTls(): Promise<Tls> {
  tlsReady ??= (async () => {
    const ca = await createDevRootCa({ commonName: 'Webhook Receiver Test CA', validityDays: 2 });
    return { caPem: ca.certPem, server: await issueServerCertificate(ca, { hostname: '127.0.0.1', validityDays: 2 }) };
  })();
  return tlsReady;
}

type Verify = (secret: string, headers: Record<string, string | string[] | undefined>, rawBody: Buffer, nowSeconds?: number) => boolean;

const DOC = join(ROOT, 'docs', 'routing-endpoints.md');
let verifyFromDoc: Verify | undefined;
/** The receiver's check from the docs' js block. */
function documentedVerify(): Verify {
  if (verifyFromDoc !== undefined) return verifyFromDoc;
  const { blocks } = extractBlocks(DOC, readFileSync(DOC, 'utf8'));
  const block = blocks.find((b) => b.lang === 'js' && b.text.includes('function verifyGatehouseSignature'));
  assert.ok(block !== undefined, 'docs/routing-endpoints.md shows verifyGatehouseSignature');
  verifyFromDoc = new Function('require', `${block.text}\nreturn verifyGatehouseSignature;`)(createRequire(import.meta.url)) as Verify;
  return verifyFromDoc;
}

type Answer = (req: { body: Buffer }) => { status: number; headers?: Record<string, string> } | 'hang';

/** A user's receiver: verifies the signature and the timestamp, then keeps what it got. */
class Receiver {
  readonly got: Delivered[] = [];
  readonly requests: { headers: Map<string, string>; body: Buffer }[] = [];
  private server: https.Server | undefined;
  private readonly sockets = new Set<Duplex>();
  port = 0;
  answer: Answer = () => ({ status: 204 });

  constructor(
    private readonly tls: Tls,
    private readonly secret: string | undefined,
  ) {}

  async up(): Promise<void> {
    const server = https.createServer({ key: this.tls.server.keyPem, cert: this.tls.server.chainPem }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const headers = new Map<string, string>();
        for (let i = 0; i < req.rawHeaders.length; i += 2) headers.set(decodeURIComponent(req.rawHeaders[i]!), req.rawHeaders[i + 1]!);
        this.requests.push({ headers, body });
        if (this.secret !== undefined && !this.verify(req.headers, body)) {
          res.writeHead(401).end('bad signature');
          return;
        }
        const a = this.answer({ body });
        if (a === 'hang') return;
        if (a.status >= 200 && a.status < 300) this.keep(headers, body, String(req.headers['content-type']));
        res.writeHead(a.status, a.headers).end();
      });
    });
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    server.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  async down(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    for (const sock of this.sockets) sock.destroy();
    if (s !== undefined) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** What docs/routing-endpoints.md tells a receiver to do: its code block, run as written. */
  private verify(h: Record<string, string | string[] | undefined>, body: Buffer): boolean {
    return documentedVerify()(this.secret!, h, body);
  }

  private keep(headers: Map<string, string>, body: Buffer, contentType: string): void {
    if (contentType.startsWith('application/json') && headers.has('x-gatehouse-partition') === false) {
      for (const e of JSON.parse(body.toString('utf8')) as MessageEnvelope[]) {
        this.got.push({
          partition: e.partition,
          sequenceNumber: e.sequenceNumber,
          deviceId: e.deviceId,
          body: decodeBody(e),
          properties: { ...e.properties, ...e.enrichments },
          systemProperties: e.systemProperties,
        });
      }
      return;
    }
    const decoded = new Map([...headers].map(([k, v]) => [k, decodeURIComponent(v)]));
    this.got.push(deliveredFromHeaders(decoded, body));
  }
}

const SECRET = `whsec-${randomBytes(12).toString('hex')}`;
const API_KEY = `key-${randomBytes(12).toString('hex')}`;

async function receiverAndConfig(format: 'json' | 'raw', over: Partial<WebhookEndpoint> = {}): Promise<{ rx: Receiver; config: WebhookEndpoint; tls: Tls }> {
  const tls = await testTls();
  const rx = new Receiver(tls, SECRET);
  await rx.up();
  const config: WebhookEndpoint = {
    name: `hook-${format}`,
    url: `https://127.0.0.1:${rx.port}/ingest?code=${API_KEY}`,
    format,
    secret: SECRET,
    ca: tls.caPem,
    headers: { 'x-api-key': API_KEY },
    ...over,
  };
  return { rx, config, tls };
}

for (const format of ['json', 'raw'] as const) {
  endpointSinkConformance(`webhook (${format})`, async () => {
    const { rx, config } = await receiverAndConfig(format);
    return {
      open: (deps) => createWebhookSink(config, { hubName: CASE_HUB, timeoutMs: 3000, ...deps }),
      received: async () => rx.got,
      dedupes: false,
      down: () => rx.down(),
      up: () => rx.up(),
      downReason: /ECONNREFUSED|ECONNRESET|socket hang up/,
      endpointName: config.name,
      secrets: [SECRET, API_KEY],
      close: () => rx.down(),
    };
  });
}

describe('webhook endpoint', () => {
  before(async () => {
    await testTls();
  });

  it('signs each request: a receiver with another secret refuses it, and the error shows no secret', async () => {
    const { rx, config } = await receiverAndConfig('json', { secret: `other-${randomBytes(12).toString('hex')}` });
    const sink = createWebhookSink(config, { hubName: CASE_HUB, timeoutMs: 3000 });
    try {
      const err = await sink.deliver(routedBatch(0, 0, 2)).then(
        () => assert.fail('delivered with a wrong signature'),
        (e: Error) => e,
      );
      assert.match(err.message, /answered 401/);
      assert.ok(!err.message.includes(config.secret!) && !err.message.includes(API_KEY), err.message);
      assert.match(err.message, /https:\/\/127\.0\.0\.1:\d+\/ingest/);
      const req = rx.requests[0]!;
      assert.match(req.headers.get('x-gatehouse-signature')!, /^sha256=[0-9a-f]{64}$/);
      assert.ok(Math.abs(Number(req.headers.get('x-gatehouse-timestamp')) - Date.now() / 1000) < 5);
      assert.equal(req.headers.get('x-api-key'), API_KEY);
      assert.equal(rx.got.length, 0);
    } finally {
      await sink.close();
      await rx.down();
    }
  });

  it("the docs' receiver check refuses a stale timestamp, a changed body and another secret; its code blocks are marked", () => {
    const verify = documentedVerify();
    const body = Buffer.from('[{"n":1}]');
    const ts = '1790000000';
    const headers = { 'x-gatehouse-timestamp': ts, 'x-gatehouse-signature': `sha256=${createHmac('sha256', SECRET).update(`${ts}.`).update(body).digest('hex')}` };
    assert.equal(verify(SECRET, headers, body, 1_790_000_100), true);
    assert.equal(verify(SECRET, headers, body, 1_790_000_301), false, 'outside the 5-minute window');
    assert.equal(verify(SECRET, headers, Buffer.from('[{"n":2}]'), 1_790_000_100), false, 'another body');
    assert.equal(verify(`${SECRET}x`, headers, body, 1_790_000_100), false, 'another secret');
    assert.equal(verify(SECRET, { ...headers, 'x-gatehouse-timestamp': '1790000001' }, body, 1_790_000_100), false, 'another timestamp');
    const { blocks, problems } = extractBlocks(DOC, readFileSync(DOC, 'utf8'));
    assert.deepEqual([...problems, ...decisionProblems(blocks, new Set())], []);
  });

  it('json: one POST per batch; raw: one POST per message with its content type', async () => {
    for (const format of ['json', 'raw'] as const) {
      const { rx, config } = await receiverAndConfig(format);
      const sink = createWebhookSink(config, { hubName: CASE_HUB, timeoutMs: 3000 });
      try {
        await sink.deliver(routedBatch(0, 0, 3));
        assert.equal(rx.requests.length, format === 'json' ? 1 : 3);
        if (format === 'raw') {
          assert.equal(rx.requests[0]!.headers.get('content-type'), 'application/json');
          assert.equal(rx.requests[1]!.headers.get('content-type'), 'application/octet-stream');
          assert.equal(decodeURIComponent(rx.requests[0]!.headers.get('iothub-app-temp alert')!), 'yes');
        } else {
          const envelopes = JSON.parse(rx.requests[0]!.body.toString()) as MessageEnvelope[];
          assert.deepEqual(
            envelopes.map((e) => [e.iothub, e.partition, e.sequenceNumber, e.bodyEncoding]),
            [
              [CASE_HUB, 0, 0, 'utf-8'],
              [CASE_HUB, 0, 1, 'base64'],
              [CASE_HUB, 0, 2, 'utf-8'],
            ],
          );
        }
      } finally {
        await sink.close();
        await rx.down();
      }
    }
  });

  it('verifies TLS: without the private CA the receiver is refused', async () => {
    const { rx, config } = await receiverAndConfig('json');
    const { ca: _ca, ...noCa } = config;
    const sink = createWebhookSink(noCa, { hubName: CASE_HUB, timeoutMs: 3000 });
    try {
      await assert.rejects(sink.deliver(routedBatch(0, 0, 1)), /certificate/i);
      assert.equal(rx.requests.length, 0);
    } finally {
      await sink.close();
      await rx.down();
    }
  });

  it('does not follow a redirect, to another host or anywhere', async () => {
    const { rx, config, tls } = await receiverAndConfig('json');
    const elsewhere = new Receiver(tls, undefined);
    await elsewhere.up();
    rx.answer = () => ({ status: 307, headers: { location: `https://127.0.0.1:${elsewhere.port}/steal` } });
    const sink = createWebhookSink(config, { hubName: CASE_HUB, timeoutMs: 3000 });
    try {
      await assert.rejects(sink.deliver(routedBatch(0, 0, 1)), /answered 307 .*do not follow redirects/);
      assert.equal(elsewhere.requests.length, 0);
    } finally {
      await sink.close();
      await rx.down();
      await elsewhere.down();
    }
  });

  it('rejects on a non-2xx status and on no answer within the timeout', async () => {
    const { rx, config } = await receiverAndConfig('json');
    const sink = createWebhookSink(config, { hubName: CASE_HUB, timeoutMs: 500 });
    try {
      rx.answer = () => ({ status: 503 });
      await assert.rejects(sink.deliver(routedBatch(0, 0, 1)), /answered 503 Service Unavailable/);
      rx.answer = () => 'hang';
      const started = Date.now();
      await assert.rejects(sink.deliver(routedBatch(0, 0, 1)), /no answer within 500 ms/);
      assert.ok(Date.now() - started < 3000);
      rx.answer = () => ({ status: 200 });
      await sink.deliver(routedBatch(0, 0, 1));
      assert.deepEqual(
        rx.got.map((d) => d.sequenceNumber),
        [0],
      );
    } finally {
      await sink.close();
      await rx.down();
    }
  });

  it('refuses bad configs with the reason, before anything is sent', () => {
    const base: WebhookEndpoint = { name: 'h', url: 'https://hooks.example.com/x', format: 'json' };
    const refused = (over: Record<string, unknown>, why: RegExp) =>
      assert.throws(
        () => createWebhookSink({ ...base, ...over } as WebhookEndpoint, { hubName: CASE_HUB }),
        (e: unknown) => e instanceof EndpointConfigError && why.test(e.message),
      );
    refused({ url: 'http://hooks.example.com/x' }, /http:\/\/ is allowed only to a receiver on this machine/);
    refused({ url: 'https://user:pw@hooks.example.com/x' }, /may not hold a user or password/);
    refused({ url: 'ftp://hooks.example.com/x' }, /^webhook endpoint 'h': url: /);
    refused({ headers: { 'Content-Type': 'text/plain' } }, /header 'Content-Type' is set by the endpoint itself/);
    refused({ headers: { 'x-gatehouse-signature': 'x' } }, /set by the endpoint itself/);
    refused({ ca: 'not a pem' }, /ca holds no PEM certificate/);
    refused({ secret: 'short' }, /secret: /);
    refused({ name: 'bad name!' }, /name: /);
    // A receiver on this machine may use plain HTTP.
    void createWebhookSink({ ...base, url: 'http://127.0.0.1:9/x' }, { hubName: CASE_HUB }).close();
  });
});
