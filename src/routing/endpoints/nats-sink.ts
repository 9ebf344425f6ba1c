/**
 * The NATS JetStream endpoint: each message published to the subject and acknowledged by the
 * stream that captures it (the user creates the stream: its retention, replicas and storage are
 * theirs to choose). The body is the message as the device sent it; properties travel as headers
 * (envelope.ts `messageHeaders`, percent-encoded: NATS trims values and refuses line breaks).
 *
 * `Nats-Msg-Id` is `<hub>/<partition>/<sequenceNumber>`, so a batch delivered again (a retry, a
 * restart, another node taking over the partition) is dropped by the stream as a duplicate within
 * its `duplicate_window` (2 minutes by default; the window should exceed the longest outage you
 * want deduplicated across, or readers dedupe on the id too).
 *
 * Publishes go one at a time, each awaiting its acknowledgement: a failed publish in the middle of
 * a pipelined batch could be retried after later ones were stored, which would reorder a device's
 * messages. The connection is made on the first deliver and again on the next deliver after it
 * broke (the client's own reconnect is off, so a dead server fails a deliver at once with the
 * reason instead of buffering).
 */
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { natsJetStreamEndpoint, type NatsJetStreamEndpoint } from '../routing-config.js';
import { configError, parseEndpointConfig } from './config-check.js';
import { messageHeaders, mimeHeader, reasonOf, recordId, redact } from './envelope.js';
import type { EndpointSink, RoutedMessage } from './sink.js';
import { timeoutOf, type SinkDeps } from './sink-deps.js';

/**
 * NATS servers find their own headers (`Nats-Msg-Id`, `Nats-Expected-*`) by searching the header
 * block for the name (2.9 matches it inside a longer name too: a property `x-Nats-Msg-Id` was
 * taken as the message id), so no name or value a device controls may hold `Nats-`: its hyphen
 * is percent-encoded, which decodeURIComponent undoes like the rest of the encoding.
 */
function noNatsHeader(s: string): string {
  return s.replace(/(nats)-/gi, '$1%2D');
}

function checkConfig(raw: NatsJetStreamEndpoint): { config: NatsJetStreamEndpoint; servers: string[] } {
  const config = parseEndpointConfig(natsJetStreamEndpoint, raw, 'natsJetStream');
  const servers = config.servers.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const problem = (p: string) => configError('natsJetStream', config.name, p);
  if (servers.length === 0) throw problem('servers names no server');
  for (const s of servers) {
    if (!/^(nats|tls):\/\/[^/\s@]+$|^[^/\s@:]+(:\d{1,5})?$/.test(s)) throw problem(`server '${s.slice(0, 80)}' is not nats://host:port (credentials go in user/password or token)`);
  }
  if (config.token !== undefined && (config.user !== undefined || config.password !== undefined)) throw problem('give a token or a user and password, not both');
  if ((config.user === undefined) !== (config.password === undefined)) throw problem('user and password go together');
  if (config.subject.startsWith('$') || config.subject.startsWith('_INBOX.')) throw problem(`subject '${config.subject}' is reserved by NATS`);
  return { config, servers };
}

export function createNatsSink(raw: NatsJetStreamEndpoint, deps: SinkDeps): EndpointSink {
  const { config, servers } = checkConfig(raw);
  const where = `natsJetStream '${config.name}' (subject ${config.subject})`;
  const secrets = [config.password, config.token];
  const timeoutMs = timeoutOf(deps);
  let conn: { nc: NatsConnection; js: JetStreamClient } | undefined;
  let connecting: Promise<{ nc: NatsConnection; js: JetStreamClient }> | undefined;
  let closed = false;

  const fail = (err: unknown): Error => new Error(redact(`${where}: ${reasonOf(err)}`, secrets));

  async function open(): Promise<{ nc: NatsConnection; js: JetStreamClient }> {
    if (conn !== undefined && !conn.nc.isClosed()) return conn;
    connecting ??= (async () => {
      const nc = await connect({
        servers,
        reconnect: false,
        timeout: timeoutMs,
        name: `gatehouse-route-${config.name}`,
        ...(config.user !== undefined ? { user: config.user, pass: config.password } : {}),
        ...(config.token !== undefined ? { token: config.token } : {}),
      });
      const opened = { nc, js: jetstream(nc, { timeout: timeoutMs }) };
      void nc.closed().then(() => {
        if (conn === opened) conn = undefined;
      });
      if (closed) {
        await nc.close();
        throw new Error('closed');
      }
      conn = opened;
      return opened;
    })().finally(() => {
      connecting = undefined;
    });
    return connecting;
  }

  return {
    async deliver(batch: readonly RoutedMessage[]): Promise<void> {
      if (closed) throw new Error(`${where}: closed`);
      if (batch.length === 0) return;
      let c: { nc: NatsConnection; js: JetStreamClient };
      try {
        c = await open();
      } catch (err) {
        throw fail(err);
      }
      for (const m of batch) {
        const h = headers();
        for (const [k, v] of messageHeaders(m, deps.hubName)) {
          const [name, value] = mimeHeader(k, v);
          h.set(noNatsHeader(name), noNatsHeader(value));
        }
        try {
          await c.js.publish(config.subject, m.record.body, { msgID: recordId(deps.hubName, m.record), headers: h, timeout: timeoutMs });
        } catch (err) {
          const reason = reasonOf(err);
          if (/no responders|503|jetstream is not enabled/i.test(reason)) throw fail(new Error(`no stream captures the subject (the server says: ${reason})`));
          throw fail(err);
        }
      }
    },
    async close(): Promise<void> {
      closed = true;
      const c = conn;
      conn = undefined;
      if (c !== undefined && !c.nc.isClosed()) await c.nc.close().catch(() => undefined);
    },
  };
}
