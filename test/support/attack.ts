/**
 * What the attack suite (test/attack-*.test.ts) shares: raw clients for each door of a hub that
 * the other helpers do not cover (MQTT over WebSocket, AMQP CBS put-token and links, a TLS
 * handshake at one chosen version), one normalized answer per door so that "an unknown device and
 * a bad key look alike" is a string comparison, and the check every attack ends with: the refusal
 * is in GET /auditLog as an auth failure with its reason, remote address and protocol, and no
 * credential.
 */
import assert from 'node:assert/strict';
import { connect as tlsConnect } from 'node:tls';
import mqttPacket, { type IConnectPacket, type Packet } from 'mqtt-packet';
import rhea from 'rhea';
import { WebSocket } from 'ws';
import { connectRaw } from './raw-mqtt.js';
import { errorCode, errorMessage, restClient, type Rest } from './rest.js';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- audit log -------------------------------------------------------------------------------

export interface AuditEntry {
  seq: number;
  at: string;
  type: string;
  subject?: string | null;
  identity?: string | null;
  outcome?: string | null;
  reason?: string | null;
  reasonCode?: string | null;
  remote?: string | null;
  protocol?: string | null;
  method?: string | null;
  tls?: string | null;
  action?: string | null;
  actor?: string | null;
  target?: string | null;
}

/** One refusal the audit log must show. */
export interface ExpectedRow {
  subject: string;
  identity: string;
  protocol: string;
  /** The bounded category; a pattern where another branch decides the exact code; absent: not checked. */
  reasonCode?: string | RegExp;
  reason?: RegExp;
  /** The exact remote address, when the test chose it (default: some loopback address). */
  remote?: string;
}

async function entries(rest: Rest, query: string, limit = 1000): Promise<AuditEntry[]> {
  const r = await rest('GET', `/auditLog?${query}${query === '' ? '' : '&'}limit=${limit}`);
  assert.equal(r.status, 200, `GET /auditLog: ${r.raw.toString()}`);
  return (r.body as { entries: AuditEntry[] }).entries;
}

/** The newest seq in the audit log: rows after it belong to what the test does next. */
export async function auditMark(rest: Rest): Promise<number> {
  return (await entries(rest, '', 1))[0]?.seq ?? 0;
}

const key = (e: { subject?: string | null; identity?: string | null; protocol?: string | null }) => `${e.subject ?? ''}|${e.identity ?? ''}|${e.protocol ?? ''}`;

/**
 * Waits (entries are committed within ~100 ms; up to `waitMs`) until every expected refusal has its own
 * auth failure row after `mark`, oldest first for the same subject, identity and protocol, then
 * checks each: reason code and reason, remote address, and that no row after the mark carries any
 * of `secrets` (tokens, their signatures, keys) or a credential digest.
 */
export async function expectAuditFailures(rest: Rest, mark: number, expected: ExpectedRow[], secrets: readonly string[] = [], waitMs = 5000): Promise<AuditEntry[]> {
  let rows: AuditEntry[] = [];
  let matched: Array<AuditEntry | undefined> = [];
  for (let i = 0; i < waitMs / 100; i += 1) {
    rows = (await entries(rest, 'type=auth&outcome=failure')).filter((e) => e.seq > mark).sort((a, b) => a.seq - b.seq);
    const used = new Set<number>();
    matched = expected.map((x) => {
      const row = rows.find((e) => !used.has(e.seq) && key(e) === key(x));
      if (row !== undefined) used.add(row.seq);
      return row;
    });
    if (matched.every((m) => m !== undefined)) break;
    await sleep(100);
  }
  const summary = () => JSON.stringify(rows.map((e) => [e.seq, key(e), e.reasonCode, e.reason]), null, 1);
  expected.forEach((x, i) => {
    const row = matched[i];
    assert.ok(row !== undefined, `no audit row for ${key(x)} after seq ${mark}; rows: ${summary()}`);
    assert.equal(row.type, 'auth');
    assert.equal(row.outcome, 'failure');
    const why = `${key(x)}: reason code (reason: ${row.reason ?? ''})`;
    if (typeof x.reasonCode === 'string') assert.equal(row.reasonCode, x.reasonCode, why);
    else if (x.reasonCode !== undefined) assert.match(row.reasonCode ?? '', x.reasonCode, why);
    if (x.reason !== undefined) assert.match(row.reason ?? '', x.reason, `${key(x)}: reason`);
    if (x.remote !== undefined) assert.equal(row.remote?.replace(/^::ffff:/, ''), x.remote, `${key(x)}: remote`);
    else assert.match(row.remote ?? '', /^(::ffff:)?127\.\d+\.\d+\.\d+$/, `${key(x)}: remote`);
  });
  const shown = JSON.stringify(rows);
  for (const s of secrets) assert.ok(s.length > 0 && !shown.includes(s), 'a credential reached the audit log');
  for (const r of rows) assert.ok(!('credential' in r), 'the audit log shows a credential digest');
  return matched as AuditEntry[];
}

/** The parts of a SAS token that must never be shown: the token and its signature, raw and decoded. */
export function tokenSecrets(token: string): string[] {
  const sig = /(?:^|[ &])sig=([^&]*)/.exec(token)?.[1] ?? '';
  return [token, sig, decodeURIComponent(sig)].filter((s) => s.length > 0);
}

/** A policy's primary key over REST (quicker than a CLI process). */
export async function policyKeyOf(rest: Rest, name: string): Promise<string> {
  const r = await rest('GET', `/policies/${name}`);
  assert.equal(r.status, 200, r.raw.toString());
  return (r.body as { primaryKey: string }).primaryKey;
}

/** Raises the lockout limits: these tests refuse one identity many times and must see each real reason, not "locked out". */
export async function relaxLockout(rest: Rest): Promise<void> {
  const r = await rest('PATCH', '/settings', { lockout: { maxFailures: 1000, maxFailuresPerAddress: 100_000 } });
  assert.equal(r.status, 200, r.raw.toString());
}

// ---- MQTT over WebSocket ---------------------------------------------------------------------

export interface RawMqttWs {
  send(packet: Packet): void;
  next(timeoutMs?: number): Promise<Packet | undefined>;
  closed: Promise<void>;
  isClosed(): boolean;
  end(): void;
}

/** A raw MQTT client over `wss://<host>/$iothub/websocket` (subprotocol mqtt), as MqttWs uses it. */
export async function rawMqttWs(host: string, ca: string, tlsCert?: { cert: string; key: string }): Promise<RawMqttWs> {
  const ws = new WebSocket(`wss://${host}:443/$iothub/websocket`, 'mqtt', { ca, ...(tlsCert === undefined ? {} : { cert: tlsCert.cert, key: tlsCert.key }) });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  const queue: Packet[] = [];
  const waiters: Array<(p: Packet | undefined) => void> = [];
  let closed = false;
  parser.on('packet', (p: Packet) => {
    const w = waiters.shift();
    if (w !== undefined) w(p);
    else queue.push(p);
  });
  ws.on('message', (data: Buffer) => parser.parse(data));
  ws.on('error', () => undefined);
  const closedP = new Promise<void>((resolve) =>
    ws.once('close', () => {
      closed = true;
      for (const w of waiters.splice(0)) w(undefined);
      resolve();
    }),
  );
  return {
    send: (p) => ws.send(mqttPacket.generate(p)),
    next(timeoutMs = 5000) {
      const q = queue.shift();
      if (q !== undefined) return Promise.resolve(q);
      if (closed) return Promise.resolve(undefined);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no packet in time')), timeoutMs);
        waiters.push((p) => {
          clearTimeout(t);
          resolve(p);
        });
      });
    },
    closed: closedP,
    isClosed: () => closed,
    end: () => ws.terminate(),
  };
}

// ---- AMQP ------------------------------------------------------------------------------------

export interface AmqpClient {
  conn: rhea.Connection;
  /** CBS put-token on `$cbs`: the reply's status-code and status-description. */
  putToken(name: string, token: string): Promise<{ status: number; description: string }>;
  /**
   * Attaches a link (our sender or receiver) and resolves with the condition the hub detached it
   * with, or 'attached' when it is still attached after `ms`.
   */
  attach(role: 'sender' | 'receiver', address: string, ms?: number): Promise<string>;
  /** Attaches a link that must stay; resolves once it is attached, with when and how the hub detaches it. */
  hold(role: 'sender' | 'receiver', address: string): Promise<{ detached: Promise<string> }>;
  close(): void;
}

/** A raw AMQP 1.0 client over TLS on port 5671 (rhea, the library the SDKs use). */
export async function amqpClient(host: string, ca: string, tlsCert?: { cert: string; key: string }): Promise<AmqpClient> {
  const container = rhea.create_container();
  const conn = container.connect({ host, port: 5671, transport: 'tls', ca, reconnect: false, ...(tlsCert === undefined ? {} : { cert: tlsCert.cert, key: tlsCert.key }) } as never);
  await new Promise<void>((resolve, reject) => {
    conn.once('connection_open', () => resolve());
    conn.once('connection_error', (ctx: rhea.EventContext) => reject(new Error(String(ctx.connection.error))));
    conn.once('disconnected', (ctx: rhea.EventContext & { error?: Error }) => reject(ctx.error ?? new Error('disconnected')));
  });
  conn.on('disconnected', () => undefined);
  let cbs: { out: rhea.Sender; replies: Map<string, (m: rhea.Message) => void> } | undefined;
  const openLink = (role: 'sender' | 'receiver', address: string) => {
    const link = role === 'sender' ? conn.open_sender(address) : conn.open_receiver(address);
    const detached = new Promise<string>((resolve) => {
      link.once(role === 'sender' ? 'sender_close' : 'receiver_close', (ctx: rhea.EventContext) => {
        // The error is a described AMQP type: read its field by name.
        const error = (role === 'sender' ? ctx.sender?.error : ctx.receiver?.error) as { condition?: string } | undefined;
        resolve(error?.condition ?? 'detached');
      });
      conn.once('disconnected', () => resolve('disconnected'));
    });
    return { detached };
  };
  let n = 0;
  return {
    conn,
    async putToken(name, token) {
      if (cbs === undefined) {
        const replies = new Map<string, (m: rhea.Message) => void>();
        const cbsIn = conn.open_receiver('$cbs');
        cbsIn.on('message', (ctx: rhea.EventContext) => {
          const m = ctx.message;
          if (m !== undefined) replies.get(String(m.correlation_id))?.(m);
        });
        const out = conn.open_sender('$cbs');
        await new Promise<void>((resolve) => out.once('sendable', () => resolve()));
        cbs = { out, replies };
      }
      const id = `put-${++n}`;
      const { out, replies } = cbs;
      const reply = new Promise<rhea.Message>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no put-token reply in 5 s')), 5000);
        replies.set(id, (m) => {
          clearTimeout(t);
          resolve(m);
        });
      });
      out.send({ to: '$cbs', reply_to: 'cbs', message_id: id, application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name }, body: token });
      const m = await reply;
      const props = (m.application_properties ?? {}) as Record<string, unknown>;
      return { status: Number(props['status-code']), description: String(props['status-description']) };
    },
    attach(role, address, ms = 500) {
      const { detached } = openLink(role, address);
      return Promise.race([detached, sleep(ms).then(() => 'attached')]);
    },
    async hold(role, address) {
      const { detached } = openLink(role, address);
      const first = await Promise.race([detached, sleep(300).then(() => 'attached')]);
      assert.equal(first, 'attached', `${role} ${address}`);
      return { detached };
    },
    close: () => conn.close(),
  };
}

// ---- device doors ------------------------------------------------------------------------------

/** Where a device can present a SAS token. Names are the audit log's protocol values. */
export type DeviceDoor = 'mqtt' | 'mqtt-ws' | 'https-device' | 'amqp';
export const DEVICE_DOORS: readonly DeviceDoor[] = ['mqtt', 'mqtt-ws', 'https-device', 'amqp'];

function mqttConnect(host: string, deviceId: string, moduleId: string | null, token: string | undefined): IConnectPacket {
  const clientId = moduleId === null ? deviceId : `${deviceId}/${moduleId}`;
  return {
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId,
    keepalive: 60,
    username: `${host}/${clientId}/?api-version=2021-04-12`,
    ...(token === undefined ? {} : { password: Buffer.from(token) }),
  };
}

/**
 * Presents a device credential (a SAS token, or a TLS client certificate when `token` is
 * undefined) at one door and returns what the client sees, normalized: `CONNACK 4`,
 * `HTTP 401 IotHubUnauthorizedAccess Unauthorized`, `put-token 401 Unauthorized`,
 * `link amqp:unauthorized-access`. The session, when one opened, is closed again.
 */
export async function presentDevice(
  door: DeviceDoor,
  host: string,
  ca: string,
  id: { deviceId: string; moduleId?: string | null },
  token: string | undefined,
  tlsCert?: { cert: string; key: string },
): Promise<string> {
  const moduleId = id.moduleId ?? null;
  switch (door) {
    case 'mqtt': {
      const { code, client } = await connectRaw(host, ca, mqttConnect(host, id.deviceId, moduleId, token), tlsCert);
      client.end();
      await client.closed;
      return `CONNACK ${String(code)}`;
    }
    case 'mqtt-ws': {
      const client = await rawMqttWs(host, ca, tlsCert);
      client.send(mqttConnect(host, id.deviceId, moduleId, token));
      const p = await client.next();
      client.end();
      await client.closed;
      return `CONNACK ${p?.cmd === 'connack' ? String(p.returnCode) : 'none'}`;
    }
    case 'https-device': {
      // The device HTTPS API has no module routes: a module credential is tried on its device.
      const http = restClient(host, ca, 'unused');
      const r = await http('POST', `/devices/${encodeURIComponent(id.deviceId)}/messages/events`, undefined, {
        auth: false,
        raw: 'attack',
        headers: token === undefined ? {} : { authorization: token },
        ...(tlsCert === undefined ? {} : { tlsCert }),
      });
      return r.status < 400 ? `HTTP ${r.status}` : `HTTP ${r.status} ${errorCode(r) ?? '-'} ${errorMessage(r)} ${(r.body as { errorCode?: number } | undefined)?.errorCode ?? '-'}`;
    }
    case 'amqp': {
      const client = await amqpClient(host, ca, tlsCert);
      try {
        const path = moduleId === null ? `/devices/${encodeURIComponent(id.deviceId)}` : `/devices/${encodeURIComponent(id.deviceId)}/modules/${encodeURIComponent(moduleId)}`;
        if (token !== undefined) {
          const r = await client.putToken(`${host}${path}`, token);
          return `put-token ${r.status} ${r.description}`;
        }
        // A certificate: the device proves itself by attaching its telemetry link.
        return `link ${await client.attach('sender', `${path}/messages/events`)}`;
      } finally {
        client.close();
      }
    }
  }
}

/** What each door answers a bad device credential. */
export const REFUSED: Readonly<Record<DeviceDoor, string>> = {
  mqtt: 'CONNACK 4',
  'mqtt-ws': 'CONNACK 4',
  'https-device': 'HTTP 401 IotHubUnauthorizedAccess Unauthorized 401002',
  amqp: 'put-token 401 Unauthorized',
};

/** What each door answers a good device credential. */
export const ACCEPTED: Readonly<Record<DeviceDoor, string>> = {
  mqtt: 'CONNACK 0',
  'mqtt-ws': 'CONNACK 0',
  'https-device': 'HTTP 204',
  amqp: 'put-token 200 OK',
};

// ---- TLS -------------------------------------------------------------------------------------

export type HandshakeResult = { ok: true; protocol: string } | { ok: false; code: string };

/**
 * A TLS handshake offering exactly one version. The client runs at security level 0 so that it is
 * able to offer TLS 1.0/1.1 at all (OpenSSL 3 refuses them by default): a refusal is the server's.
 */
export function tlsHandshake(host: string, port: number, ca: string, version: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3', localAddress?: string): Promise<HandshakeResult> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host, port, ca, minVersion: version, maxVersion: version, ciphers: 'DEFAULT:@SECLEVEL=0', ...(localAddress === undefined ? {} : { localAddress }) }, () => {
      const protocol = s.getProtocol() ?? '';
      s.destroy();
      resolve({ ok: true, protocol });
    });
    s.once('error', (e: Error & { code?: string }) => resolve({ ok: false, code: e.code ?? e.message }));
  });
}
