/**
 * A small EST (RFC 7030) client: what a factory station or a device uses to reach
 * `/.well-known/est/{label}/`. Requests are base64 DER PKCS#10, answers certs-only CMS.
 * Keep-alive, so a station enrolling thousands of devices pays one TLS handshake per socket.
 */
import { Agent, request } from 'node:https';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(globalThis.crypto);

export interface EstClientOptions {
  /** host[:port] of the hub. */
  host: string;
  label: string;
  /** PEM the hub's TLS certificate chains to; absent: the system store. */
  ca?: string;
  /** HTTP basic factory credential. */
  basic?: { id: string; password: string };
  /** TLS client certificate and key (PEM): a station certificate, or a device's current one. */
  clientCert?: { cert: string; key: string };
  /** Sockets in parallel (default 8). */
  maxSockets?: number;
}

export class EstError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Certificates (PEM) from a base64 certs-only CMS body. */
export function parseCertsOnly(body: string): string[] {
  const der = Buffer.from(body.replace(/\s+/g, ''), 'base64');
  const certs = new x509.X509Certificates(der);
  return certs.map((c) => `${c.toString('pem')}\n`);
}

export class EstClient {
  readonly #agent: Agent;
  readonly #host: string;
  readonly #port: number;

  constructor(private readonly opts: EstClientOptions) {
    const m = /^(.*?)(?::(\d+))?$/.exec(opts.host);
    this.#host = m?.[1] ?? opts.host;
    this.#port = m?.[2] === undefined ? 443 : Number(m[2]);
    this.#agent = new Agent({
      keepAlive: true,
      maxSockets: opts.maxSockets ?? 8,
      ...(opts.ca === undefined ? {} : { ca: opts.ca }),
      ...(opts.clientCert === undefined ? {} : { cert: opts.clientCert.cert, key: opts.clientCert.key }),
    });
  }

  close(): void {
    this.#agent.destroy();
  }

  /** The CA chain that signs for this label (PEM each), leaf-side CA first. */
  async caCerts(): Promise<string[]> {
    return parseCertsOnly(await this.#call('GET', 'cacerts'));
  }

  /** simpleenroll: the certificate (PEM) for this CSR. */
  async enroll(csrPem: string): Promise<string> {
    return this.#first(await this.#call('POST', 'simpleenroll', csrPem));
  }

  /** simplereenroll, authenticated by the client certificate given in the options. */
  async reenroll(csrPem: string): Promise<string> {
    return this.#first(await this.#call('POST', 'simplereenroll', csrPem));
  }

  #first(body: string): string {
    const [cert] = parseCertsOnly(body);
    if (cert === undefined) throw new EstError(502, 'EmptyResponse', 'the EST server answered without a certificate');
    return cert;
  }

  #call(method: 'GET' | 'POST', op: string, csrPem?: string): Promise<string> {
    // RFC 7030 §4.2.1: the body is the base64 DER of the request.
    const body = csrPem === undefined ? undefined : Buffer.from(csrPem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'ascii');
    const servername = isIP(this.#host) === 0 ? this.#host : undefined;
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: this.#host,
          port: this.#port,
          method,
          path: `/.well-known/est/${encodeURIComponent(this.opts.label)}/${op}`,
          agent: this.#agent,
          ...(servername === undefined ? {} : { servername }),
          headers: {
            'user-agent': 'gatehouse-est',
            ...(this.opts.basic === undefined ? {} : { authorization: `Basic ${Buffer.from(`${this.opts.basic.id}:${this.opts.basic.password}`).toString('base64')}` }),
            ...(body === undefined ? {} : { 'content-type': 'application/pkcs10', 'content-transfer-encoding': 'base64', 'content-length': String(body.length) }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            if (status === 200) return resolve(text);
            const header = res.headers['iothub-errorcode'];
            const code = typeof header === 'string' ? header : `Http${status}`;
            let message = text.slice(0, 500);
            try {
              // Gatehouse's error body: {"Message": "ErrorCode:<code>;<text>"}.
              const parsed = JSON.parse(text) as { Message?: string };
              if (typeof parsed.Message === 'string') message = parsed.Message.replace(/^ErrorCode:[^;]*;/, '');
            } catch {
              // Not our JSON error body: keep the text.
            }
            reject(new EstError(status, code, `EST ${op} failed (${status} ${code}): ${message}`));
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }
}
