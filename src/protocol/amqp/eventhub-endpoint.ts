/**
 * The built-in Event Hubs-compatible endpoint (issue 17) on the AMQP listeners, for the unmodified
 * `@azure/event-hubs` `EventHubConsumerClient` with the connection string `gatehouse info` prints:
 *
 * - CBS put-token for the Event Hubs audiences (`sb://{host}/{hub}/...`), signed by a shared access
 *   policy; a link is attached only under a live token whose audience covers it, from a policy
 *   with ServiceConnect (or an operator allowed `events/read`), and detached when that token lapses
 *   without renewal.
 * - `$management`: READ of `com.microsoft:eventhub` (name, created_at, partition ids) and
 *   `com.microsoft:partition` (begin and last sequence number, last offset, last enqueued time).
 * - Receivers on `{hub}/ConsumerGroups/{group}/Partitions/{n}`, starting where the selector filter
 *   says, sending only while the client gives credit; epoch receivers (`com.microsoft:epoch`) take a
 *   partition of a group over as Event Hubs does: a higher or equal epoch closes the others with
 *   `amqp:link:stolen`, a lower epoch or a plain receiver is refused while an epoch receiver holds it,
 *   across the nodes of a cluster (eventhub-claims.ts). The limit of plain receivers is per node.
 * - Messages carry the enrichments configured for `events` (the RecordEnricher port, routing's).
 * - Deliveries go settled (Event Hubs has no settlement) unless the receiver asks otherwise, and
 *   never faster than the connection takes them: credit says how many, not how many bytes, and a
 *   window of large messages must not overrun the connection's output bound (amqp-backpressure.ts).
 */
import type { Logger } from 'pino';
import rhea, { type Connection, type EventContext, type Message, type Receiver, type Sender } from 'rhea';
import type { AccessGate, PeerContext, Principal } from '../../access/gate.js';
import { authorize } from '../../access/access.js';
import { HubError } from '../../core/errors.js';
import type { Clock } from '../../core/clock.js';
import type { LatencySeries } from '../../core/delivery-latency.js';
import { eventHubsName, isEventHubsEntity } from '../../core/hub-name.js';
import { parseSasToken, pathCovers } from '../../auth/sas.js';
import { BUILTIN_ENDPOINT_NAME, isRoutedTo, type EventLog, type LogPosition, type LogRecord, type RecordEnricher } from '../../log/log-ports.js';
import { LogPositionError } from '../../log/positions.js';
import type { ConnectionPressure } from './amqp-backpressure.js';
import type { ReceiverClaims } from './eventhub-claims.js';
import { encodeEventHubMessage } from './eventhub-encode.js';
import { EPOCH_PROPERTY, RUNTIME_METRIC_CAPABILITY, echoedSource, isManagementAddress, parsePartitionAddress, positionFromFilter } from './eventhub-message.js';
import { localAttach, remoteAttach } from './rhea-link.js';

type Link = Sender | Receiver;
type AmqpError = { condition: string; description: string };

export interface EventHubDeps {
  log: EventLog;
  consumerGroups: { exists(name: string): Promise<boolean> };
  hostname(): string;
  gate: AccessGate;
  clock: Clock;
  logger: Logger;
  /** When the endpoint was created (`created_at` of getEventHubProperties). */
  createdAt: string;
  /** Epoch receivers' claims across the cluster. */
  claims: ReceiverClaims;
  /** The built-in endpoint's message enrichments (routing's, through the composition root). */
  enrich: RecordEnricher;
  /** Observes each transfer's time from the record's enqueue (the metrics' series of `events`). */
  latency?: LatencySeries;
}

/** Receivers per partition of a consumer group without an epoch (Event Hubs: 5). */
const MAX_RECEIVERS_PER_PARTITION = 5;
const TAIL_BATCH = 100;

interface Grant {
  principal: Principal;
  expiresAt: number;
  timer: NodeJS.Timeout | undefined;
  links: Set<Link>;
}

interface ConnState {
  peer: PeerContext;
  /** By the token's audience path (`/{hub}/ConsumerGroups/...`, lower case, the hub's canonical name). */
  grants: Map<string, Grant>;
  management: Set<Sender>;
  /** The connection's output bound, once a reader attached (the AMQP server's). */
  pressure: ConnectionPressure | undefined;
  /** Bytes the readers of this connection handed rhea since the last flush (all partitions together). */
  unsent: number;
  /** A flush under way: rhea writes what it was handed, then the output drains below its mark. */
  flushing: Promise<void> | undefined;
}

/**
 * What the readers of one connection hand rhea before they let it write and wait for the output
 * to drain. rhea writes a pass's deliveries at once; a credit window of large messages (500 of
 * 200 KB is 100 MB) would otherwise pass the connection's output cap (4 MiB) and close a client
 * that reads. Well above a batch of ordinary telemetry, so a reader of small messages never waits.
 */
export const READER_FLUSH_BYTES = 256 * 1024;

interface Reader {
  sender: Sender;
  key: string;
  epoch: number | undefined;
  /** The cluster claim an epoch receiver holds (eventhub-claims.ts); undefined for a plain receiver. */
  claim: { generation: number; claimId: string } | undefined;
  stop: AbortController;
  wake: (() => void) | undefined;
}

export class EventHubEndpoint {
  readonly #conns = new WeakMap<Connection, ConnState>();
  readonly #readers = new Map<Sender, Reader>();
  /** `{group}|{partition}` -> the receivers on it. */
  readonly #byPartition = new Map<string, Set<Reader>>();

  constructor(private readonly deps: EventHubDeps) {
    // Another node's receiver claimed a partition: this node's older receivers on it are stolen.
    deps.claims.onClaimed((key, epoch, generation) => {
      for (const r of this.#byPartition.get(key) ?? []) {
        if (r.claim !== undefined && r.claim.generation >= generation) continue;
        this.#close(r.sender, { condition: 'amqp:link:stolen', description: `A new receiver with epoch '${epoch}' was created, so this receiver${r.epoch === undefined ? '' : ` with epoch '${r.epoch}'`} is disconnected.` });
      }
    });
  }

  /** Whether a CBS audience is one of this endpoint's (`sb://{host}[:port]/...`). */
  isAudience(audience: string): boolean {
    const m = /^(?:sb|amqps?):\/\/([^/]+)\//i.exec(audience);
    return m?.[1] !== undefined && m[1].toLowerCase().replace(/:\d{1,5}$/, '') === this.deps.hostname().toLowerCase();
  }

  #state(conn: Connection, peer: PeerContext): ConnState {
    let st = this.#conns.get(conn);
    if (st === undefined) this.#conns.set(conn, (st = { peer, grants: new Map(), management: new Set(), pressure: undefined, unsent: 0, flushing: undefined }));
    return st;
  }

  /** `/{entity}/rest` with the entity in its canonical name, lower case; undefined for another entity. */
  #canonical(path: string): string | undefined {
    const parts = path.replace(/^\/+/, '').replace(/\/+$/, '').split('/');
    const host = this.deps.hostname();
    if (parts[0] === undefined || !isEventHubsEntity(parts[0], host)) return undefined;
    parts[0] = eventHubsName(host);
    return `/${parts.join('/')}`.toLowerCase();
  }

  /** A put-token for an Event Hubs audience: the CBS reply's status and description. */
  async putToken(conn: Connection, peer: PeerContext, audience: string, token: string): Promise<{ status: number; description: string }> {
    const st = this.#state(conn, peer);
    const raw = audience.replace(/^(?:sb|amqps?):\/\/[^/]+/i, '');
    const path = this.#canonical(raw);
    if (path === undefined) return { status: 404, description: `The messaging entity '${audience.slice(0, 200)}' could not be found.` };
    let principal: Principal;
    try {
      // The token's own scope is checked against the audience as the client wrote it (either name of the hub).
      principal = await this.deps.gate.authenticateService(token, raw, peer);
    } catch (err) {
      if (err instanceof HubError && err.code === 'IotHubUnauthorizedAccess') {
        this.deps.logger.warn({ event: 'auth.denied', protocol: peer.protocol, remote: peer.remote, audience: audience.slice(0, 200), reason: String(err.cause) }, 'Event Hubs put-token refused');
        return { status: 401, description: 'Unauthorized' };
      }
      throw err;
    }
    const expiresAt = principal.kind === 'operator' ? principal.expiresAt : parseSasToken(token).expiry * 1000;
    let grant = st.grants.get(path);
    if (grant === undefined) st.grants.set(path, (grant = { principal, expiresAt, timer: undefined, links: new Set() }));
    grant.principal = principal;
    grant.expiresAt = expiresAt;
    if (grant.timer !== undefined) clearTimeout(grant.timer);
    const g = grant;
    grant.timer = setTimeout(() => {
      st.grants.delete(path);
      for (const l of g.links) this.#close(l, { condition: 'amqp:unauthorized-access', description: 'The token expired and was not renewed.' });
    }, Math.max(0, Math.min(expiresAt - this.deps.clock.now(), 2 ** 31 - 1)));
    grant.timer.unref();
    return { status: 202, description: 'Accepted' };
  }

  /** The live grant covering `path` that may read events, or why not. */
  #grantFor(st: ConnState, path: string): Grant | AmqpError {
    const now = this.deps.clock.now();
    let found: Grant | undefined;
    for (const [scope, g] of st.grants) if (g.expiresAt > now && pathCovers(scope, path)) found = g;
    if (found === undefined) {
      this.deps.gate.refusedBeforeAuth({ subject: 'policy', identity: '', failure: { code: 'malformed', reason: `Event Hubs link ${path.slice(0, 200)} without a token on $cbs` } }, st.peer);
      return { condition: 'amqp:unauthorized-access', description: `Put a token for sb://${this.deps.hostname()}${path} on $cbs first.` };
    }
    const decision = authorize(found.principal, { kind: 'service', action: 'events/read', anyOf: ['ServiceConnect'] });
    if (!decision.allowed) {
      this.deps.gate.denied(found.principal, decision.reason, st.peer);
      return { condition: 'amqp:unauthorized-access', description: `${found.principal.kind} ${found.principal.name} may not read events (ServiceConnect is needed).` };
    }
    if (found.principal.kind === 'policy') this.deps.gate.policyUsed(found.principal.name, decision.used);
    return found;
  }

  // ---- links ---------------------------------------------------------------------------------

  /** The client attached a receiver (we send): a partition or the `$management` replies. False: not ours. */
  senderOpened(conn: Connection, peer: PeerContext, sender: Sender, address: string, pressure?: ConnectionPressure): boolean {
    if (isManagementAddress(address)) {
      const st = this.#state(conn, peer);
      const grant = this.#grantFor(st, `/${eventHubsName(this.deps.hostname())}/$management`.toLowerCase());
      if ('condition' in grant) return this.#refuse(sender, peer, address, grant);
      st.management.add(sender);
      grant.links.add(sender);
      return true;
    }
    const a = parsePartitionAddress(address);
    if (a === undefined) return false;
    settleAsAsked(sender);
    // Echo the source with its filter, as Event Hubs does, in the attach rhea answers with next tick.
    const remote = remoteAttach(sender);
    sender.set_source(echoedSource(address, remote?.source?.filter) as Parameters<Sender['set_source']>[0]);
    const st = this.#state(conn, peer);
    st.pressure ??= pressure;
    void this.#openReader(st, sender, address, a).catch((err: unknown) => {
      this.deps.logger.error({ err, event: 'eventhub.attach-failed' }, 'Event Hubs receiver attach failed');
      this.#close(sender, { condition: 'amqp:internal-error', description: 'internal error' });
    });
    return true;
  }

  /** The client attached a sender: only `$management` requests are taken. */
  receiverOpened(conn: Connection, peer: PeerContext, receiver: Receiver, address: string): boolean {
    if (!isManagementAddress(address)) {
      if (parsePartitionAddress(address) === undefined && !/^\/?[^/]+\/Partitions\//i.test(address)) return false;
      return this.#refuse(receiver, peer, address, { condition: 'amqp:not-allowed', description: 'The built-in endpoint of an IoT hub is read-only: devices send telemetry.' });
    }
    const st = this.#state(conn, peer);
    const grant = this.#grantFor(st, `/${eventHubsName(this.deps.hostname())}/$management`.toLowerCase());
    if ('condition' in grant) return this.#refuse(receiver, peer, address, grant);
    grant.links.add(receiver);
    return true;
  }

  async #openReader(st: ConnState, sender: Sender, address: string, a: { entity: string; consumerGroup: string; partition: string }): Promise<void> {
    const entity = a.entity.toLowerCase() === 'messages/events' ? eventHubsName(this.deps.hostname()) : a.entity;
    const path = this.#canonical(`/${entity}/ConsumerGroups/${a.consumerGroup}/Partitions/${a.partition}`);
    if (path === undefined) return void this.#refuse(sender, st.peer, address, { condition: 'amqp:not-found', description: `The messaging entity '${a.entity.slice(0, 100)}' could not be found.` });
    const grant = this.#grantFor(st, path);
    if ('condition' in grant) return void this.#refuse(sender, st.peer, address, grant);
    if (!(await this.deps.consumerGroups.exists(a.consumerGroup))) {
      // Event Hubs' words: the SDK makes MessagingEntityNotFoundError (not retried) of this sentence only.
      const entity = `sb://${this.deps.hostname()}/${eventHubsName(this.deps.hostname())}/consumergroups/${a.consumerGroup.slice(0, 60)}`;
      return void this.#refuse(sender, st.peer, address, { condition: 'amqp:not-found', description: `The messaging entity '${entity}' could not be found: no such consumer group.` });
    }
    const partition = /^\d{1,3}$/.test(a.partition) ? Number(a.partition) : NaN;
    if (!(partition >= 0 && partition < this.deps.log.partitionCount)) {
      return void this.#refuse(sender, st.peer, address, { condition: 'com.microsoft:argument-out-of-range', description: `The partition '${a.partition.slice(0, 20)}' does not exist (0-${this.deps.log.partitionCount - 1}).` });
    }
    const remote = remoteAttach(sender);
    let position: LogPosition;
    try {
      position = positionFromFilter(remote?.source?.filter);
    } catch (err) {
      if (err instanceof LogPositionError) return void this.#refuse(sender, st.peer, address, { condition: 'amqp:invalid-field', description: err.message });
      throw err;
    }
    const rawEpoch = remote?.properties?.[EPOCH_PROPERTY];
    const epoch = rawEpoch === undefined || rawEpoch === null ? undefined : Number(rawEpoch);
    if (epoch !== undefined && !Number.isSafeInteger(epoch)) return void this.#refuse(sender, st.peer, address, { condition: 'amqp:invalid-field', description: 'com.microsoft:epoch must be a long.' });
    const caps = remote?.desired_capabilities;
    const metrics = (Array.isArray(caps) ? caps : [caps]).some((c) => String(c) === RUNTIME_METRIC_CAPABILITY);
    if (sender.is_closed()) return;

    const key = `${a.consumerGroup.toLowerCase()}|${partition}`;
    let claim: Reader['claim'];
    if (this.deps.claims.shared) {
      if (epoch === undefined) {
        const other = await this.deps.claims.heldEpoch(key);
        if (other !== undefined) return void this.#refuse(sender, st.peer, address, { condition: 'amqp:link:stolen', description: `A receiver with epoch '${other}' already exists on this partition; a receiver without an epoch cannot be created.` });
      } else {
        const outcome = await this.deps.claims.claimEpoch(key, epoch);
        if (!outcome.ok) return void this.#refuse(sender, st.peer, address, { condition: 'amqp:link:stolen', description: `A receiver with a higher epoch '${outcome.heldEpoch}' already exists; a receiver with epoch ${epoch} cannot be created.` });
        claim = { generation: outcome.generation, claimId: outcome.claimId };
      }
      if (sender.is_closed()) {
        if (claim !== undefined) await this.deps.claims.release(key, claim.claimId);
        return;
      }
    }
    const holders = this.#byPartition.get(key) ?? new Set<Reader>();
    const held = [...holders].map((r) => r.epoch).filter((e): e is number => e !== undefined);
    const top = held.length === 0 ? undefined : Math.max(...held);
    if (epoch === undefined) {
      if (top !== undefined) return void this.#refuse(sender, st.peer, address, { condition: 'amqp:link:stolen', description: `A receiver with epoch '${top}' already exists on this partition; a receiver without an epoch cannot be created.` });
      if (holders.size >= MAX_RECEIVERS_PER_PARTITION) return void this.#refuse(sender, st.peer, address, { condition: 'amqp:resource-limit-exceeded', description: `At most ${MAX_RECEIVERS_PER_PARTITION} receivers per partition per consumer group.` });
    } else {
      if (top !== undefined && top > epoch) return void this.#refuse(sender, st.peer, address, { condition: 'amqp:link:stolen', description: `A receiver with a higher epoch '${top}' already exists; a receiver with epoch ${epoch} cannot be created.` });
      for (const r of holders) this.#close(r.sender, { condition: 'amqp:link:stolen', description: `A new receiver with epoch '${epoch}' was created, so this receiver${r.epoch === undefined ? '' : ` with epoch '${r.epoch}'`} is disconnected.` });
    }
    const reader: Reader = { sender, key, epoch, claim, stop: new AbortController(), wake: undefined };
    this.#readers.set(sender, reader);
    this.#byPartition.set(key, holders.add(reader));
    grant.links.add(sender);
    void this.#pump(st, reader, partition, position, metrics);
  }

  async #pump(st: ConnState, reader: Reader, partition: number, position: LogPosition, metrics: boolean): Promise<void> {
    const { sender, stop } = reader;
    const latency = this.deps.latency;
    try {
      for await (const batch of this.deps.log.tail(partition, position, { signal: stop.signal, maxBatch: TAIL_BATCH })) {
        // Records routed elsewhere only are not the built-in endpoint's (decision 0006).
        const mine = batch.filter((r) => isRoutedTo(r, BUILTIN_ENDPOINT_NAME));
        if (mine.length === 0) continue;
        const runtime = metrics ? { ...(await this.deps.log.partitionProperties(partition)), retrievedAt: new Date(this.deps.clock.now()) } : undefined;
        const enriched = this.deps.enrich.enrich(BUILTIN_ENDPOINT_NAME, mine);
        const records: readonly LogRecord[] = enriched instanceof Promise ? await enriched : enriched;
        for (const r of records) {
          // Encoded by our own encoder (rhea's bytes, without its generic wrapping) and sent as is (format 0).
          const enqueuedMs = Date.parse(r.enqueuedTime);
          const bytes = encodeEventHubMessage(r, runtime, enqueuedMs);
          // Credit-based flow: nothing is sent beyond what the client asked for; and no more bytes
          // at once than the connection's output takes (one message always goes).
          for (;;) {
            if (stop.signal.aborted) return;
            if (!sender.sendable()) await new Promise<void>((resolve) => (reader.wake = resolve));
            else if (st.unsent > 0 && st.unsent + bytes.length > READER_FLUSH_BYTES) await flush(st);
            else break;
          }
          sender.send(bytes, undefined, 0);
          handed(st, bytes.length);
          latency?.observe(this.deps.clock.now() - enqueuedMs);
        }
      }
    } catch (err) {
      if (stop.signal.aborted) return;
      this.deps.logger.error({ err, event: 'eventhub.read-failed', partition }, 'Event Hubs receiver failed reading the log');
      this.#close(sender, { condition: err instanceof LogPositionError ? 'amqp:invalid-field' : 'amqp:internal-error', description: err instanceof LogPositionError ? err.message : 'reading the event log failed' });
    }
  }

  sendable(sender: Sender): void {
    const r = this.#readers.get(sender);
    if (r?.wake !== undefined) {
      const w = r.wake;
      r.wake = undefined;
      w();
    }
  }

  /** A link closed (by either side): stop its reader, forget it. */
  detached(conn: Connection, link: Link): void {
    const r = this.#readers.get(link as Sender);
    if (r !== undefined) {
      this.#readers.delete(r.sender);
      const set = this.#byPartition.get(r.key);
      set?.delete(r);
      if (set?.size === 0) this.#byPartition.delete(r.key);
      if (r.claim !== undefined) void this.deps.claims.release(r.key, r.claim.claimId);
      r.stop.abort();
      this.sendable(r.sender);
    }
    const st = this.#conns.get(conn);
    if (st === undefined) return;
    st.management.delete(link as Sender);
    for (const g of st.grants.values()) g.links.delete(link);
  }

  connectionGone(conn: Connection): void {
    const st = this.#conns.get(conn);
    for (const r of [...this.#readers.values()]) if (r.sender.connection === conn) this.detached(conn, r.sender);
    if (st === undefined) return;
    for (const g of st.grants.values()) if (g.timer !== undefined) clearTimeout(g.timer);
    this.#conns.delete(conn);
  }

  closeAll(): void {
    this.deps.claims.stop();
    for (const r of this.#readers.values()) r.stop.abort();
  }

  // ---- $management -----------------------------------------------------------------------------

  /** A request on `$management`. False: the address is not ours. */
  onMessage(ctx: EventContext, address: string): boolean {
    if (!isManagementAddress(address)) return false;
    const st = this.#conns.get(ctx.connection);
    const delivery = ctx.delivery;
    const request = ctx.message;
    delivery?.accept();
    if (st === undefined || request === undefined) return true;
    void this.#answer(st, request).then(
      (reply) => this.#reply(st, request, reply),
      (err: unknown) => {
        this.deps.logger.error({ err, event: 'eventhub.management-failed' }, 'Event Hubs management request failed');
        this.#reply(st, request, { status: 500, description: 'internal error', condition: 'amqp:internal-error' });
      },
    );
    return true;
  }

  async #answer(st: ConnState, request: Message): Promise<{ status: number; description: string; condition?: string; body?: Record<string, unknown> }> {
    const grant = this.#grantFor(st, `/${eventHubsName(this.deps.hostname())}/$management`.toLowerCase());
    if ('condition' in grant) return { status: 401, description: grant.description, condition: grant.condition };
    const props = (request.application_properties ?? {}) as Record<string, unknown>;
    const name = typeof props.name === 'string' ? props.name : '';
    if (props.operation !== 'READ') return { status: 400, description: `Unsupported operation '${String(props.operation).slice(0, 40)}': only READ.`, condition: 'amqp:not-implemented' };
    if (!isEventHubsEntity(name, this.deps.hostname())) return { status: 404, description: `The messaging entity '${name.slice(0, 100)}' could not be found.`, condition: 'amqp:not-found' };
    const log = this.deps.log;
    if (props.type === 'com.microsoft:eventhub') {
      return {
        status: 200,
        description: 'OK',
        body: { name, created_at: new Date(this.deps.createdAt), partition_count: log.partitionCount, partition_ids: Array.from({ length: log.partitionCount }, (_, i) => String(i)) },
      };
    }
    if (props.type === 'com.microsoft:partition') {
      const id = String(props.partition ?? '');
      const partition = /^\d{1,3}$/.test(id) ? Number(id) : NaN;
      if (!(partition >= 0 && partition < log.partitionCount)) {
        return { status: 400, description: `The partition '${id.slice(0, 20)}' does not exist (0-${log.partitionCount - 1}).`, condition: 'com.microsoft:argument-out-of-range' };
      }
      const p = await log.partitionProperties(partition);
      return {
        status: 200,
        description: 'OK',
        body: {
          name,
          partition: id,
          begin_sequence_number: rhea.types.wrap_long(p.beginningSequenceNumber),
          last_enqueued_sequence_number: rhea.types.wrap_long(p.lastEnqueuedSequenceNumber),
          last_enqueued_offset: p.lastEnqueuedOffset,
          last_enqueued_time_utc: new Date(p.lastEnqueuedTimeUtc),
          is_partition_empty: p.isEmpty,
        },
      };
    }
    return { status: 400, description: `Unsupported type '${String(props.type).slice(0, 60)}'.`, condition: 'amqp:not-implemented' };
  }

  #reply(st: ConnState, request: Message, r: { status: number; description: string; condition?: string; body?: Record<string, unknown> }): void {
    const senders = [...st.management].filter((s) => s.is_open());
    const sender = senders.find((s) => remoteAttach(s)?.target?.address === request.reply_to) ?? senders[0];
    if (sender === undefined) return;
    sender.send({
      to: request.reply_to,
      correlation_id: request.message_id,
      application_properties: { 'status-code': r.status, 'status-description': r.description, ...(r.condition === undefined ? {} : { 'error-condition': r.condition }) },
      body: r.body ?? null,
    });
  }

  #refuse(link: Link, peer: PeerContext, address: string, error: AmqpError): true {
    this.deps.logger.warn({ event: 'amqp.link-refused', protocol: peer.protocol, remote: peer.remote, address: address.slice(0, 200), condition: error.condition, reason: error.description }, 'AMQP link refused');
    this.#close(link, error);
    return true;
  }

  #close(link: Link, error: AmqpError): void {
    try {
      link.close(error);
    } catch {
      // already closed
    }
    this.detached(link.connection, link);
  }
}

/** AMQP sender-settle-mode values (AMQP 1.0 2.8.2). */
const SND_UNSETTLED = 0;
const SND_SETTLED = 1;

/**
 * Event Hubs has no settlement: a reader's place is the position it asks from, and what it does
 * with an event is its own business. So partition deliveries go settled unless the receiver asked
 * for them unsettled: the .NET client attaches with snd-settle-mode settled and never settles one
 * (rhea's session keeps 2,048 unsettled deliveries, and the reader would stop there), and
 * @azure/event-hubs leaves the mode to the sender (mixed) and would only send accepts back. Set
 * before rhea answers the attach (the next tick), so the answer says the mode in use.
 */
function settleAsAsked(sender: Sender): void {
  const asked = remoteAttach(sender)?.snd_settle_mode;
  const local = localAttach(sender);
  local.snd_settle_mode = asked === SND_UNSETTLED ? SND_UNSETTLED : SND_SETTLED;
}

/** Counts bytes handed to rhea; once it wrote them (the next turn), an output under its mark starts the count again. */
function handed(st: ConnState, bytes: number): void {
  if (st.unsent === 0 && st.flushing === undefined) {
    setImmediate(() => {
      if (st.flushing === undefined && st.pressure?.blocked !== true) st.unsent = 0;
    });
  }
  st.unsent += bytes;
}

/**
 * Lets rhea write what the connection's readers handed it (its pass runs on the next tick, before
 * setImmediate), then waits until the output is under its mark. One flush for all the readers.
 */
function flush(st: ConnState): Promise<void> {
  st.flushing ??= new Promise<void>((resolve) => setImmediate(resolve))
    .then(() => st.pressure?.drained())
    .then(() => {
      st.unsent = 0;
      st.flushing = undefined;
    });
  return st.flushing;
}
