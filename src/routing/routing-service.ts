/**
 * The routing document (decision 0006): one JSON document in the store's meta table, written with
 * compare-and-set under an etag (as consumer groups and settings are), endpoint secrets sealed in
 * it (routing-secrets.ts). A change is announced on the bus (`routing.changed`); every node reads
 * the document again and hands the new routing to what follows it (the router, the dispatchers).
 * A bus resync (NATS came back) reads it again too, so a node that missed a change catches up.
 */
import type { Logger } from 'pino';
import { SUBJECTS, type HubBus } from '../bus/subjects.js';
import type { Clock } from '../core/clock.js';
import { HubError } from '../core/errors.js';
import { newEtag } from '../core/ids.js';
import type { MetaStore } from '../store/ports.js';
import { checkEndpoint } from './endpoints/create-sink.js';
import { EndpointConfigError } from './endpoints/sink.js';
import { defaultRouting, endpointList, type RoutingProperties } from './routing-config.js';
import { findMasked, maskSecrets, openSecrets, restoreMasked, sealSecrets, type Sealer } from './routing-secrets.js';
import { parseRouting } from './routing-validate.js';

const KEY = 'routing';
const MAX_ATTEMPTS = 8;

/** The routing in effect, secrets open: only for the engine, never for a response. */
export interface RoutingState {
  routing: RoutingProperties;
  /**
   * When each custom endpoint first appeared in the document (ms, the saving node's clock): no
   * record stored before can be routed to it, so a new endpoint's delivery starts reading the log
   * there (dispatcher.ts), not at the oldest record retained. Absent for endpoints saved before this
   * was kept.
   */
  endpointsSince?: Readonly<Record<string, number>>;
  etag: string;
  version: number;
  updatedAt: string;
  updatedBy: string;
}

interface StoredDoc extends Omit<RoutingState, 'routing'> {
  /** Secrets sealed. */
  routing: RoutingProperties;
}

export type RoutingListener = (state: RoutingState, previous: RoutingState) => void;

export class RoutingService {
  #state: RoutingState;
  readonly #listeners: RoutingListener[] = [];
  #reading: Promise<void> | undefined;
  #again = false;

  constructor(
    private readonly meta: MetaStore,
    private readonly box: Sealer,
    private readonly bus: HubBus,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.#state = { routing: defaultRouting(), etag: 'none', version: 0, updatedAt: new Date(0).toISOString(), updatedBy: 'hub' };
  }

  /** Reads the stored document and follows changes from every node from now on. */
  async load(): Promise<RoutingState> {
    await this.#reload();
    this.bus.subscribe(SUBJECTS.routingChanged, () => this.refresh());
    this.bus.subscribe(SUBJECTS.busResync, () => this.refresh());
    return this.#state;
  }

  get current(): RoutingState {
    return this.#state;
  }

  /** Called with the new routing after every change this node learns of (its own included). */
  onChange(listener: RoutingListener): void {
    this.#listeners.push(listener);
  }

  /** What a response shows: the document with secrets masked, and its etag. */
  view(): { routing: RoutingProperties; etag: string } {
    return { routing: maskSecrets(this.#state.routing), etag: this.#state.etag };
  }

  /** Reads the store again (a change on another node); never throws. */
  refresh(): Promise<void> {
    if (this.#reading !== undefined) {
      this.#again = true;
      return this.#reading;
    }
    this.#reading = (async () => {
      try {
        do {
          this.#again = false;
          await this.#reload();
        } while (this.#again);
      } catch (err) {
        this.logger.error({ err, event: 'routing.reload-failed' }, 'reading the routing document failed; the routes in effect stay');
      } finally {
        this.#reading = undefined;
      }
    })();
    return this.#reading;
  }

  /**
   * Replaces the routing document. `ifMatch`: the etag the caller read (`*` or absent: whatever is
   * stored). Masked secrets (`****`) keep the stored ones. RoutingInvalid, RoutingQueryInvalid,
   * PreconditionFailed.
   */
  async replace(body: unknown, ifMatch: string | undefined, by: string): Promise<{ routing: RoutingProperties; etag: string }> {
    const pinned = ifMatch === undefined || ifMatch.trim() === '*' ? undefined : ifMatch.replace(/^W\//, '').replace(/"/g, '').trim();
    for (let attempt = 1; ; attempt++) {
      const { raw, doc } = await this.#read();
      const stored = doc === undefined ? undefined : this.#open(doc);
      const currentEtag = stored?.etag ?? 'none';
      if (pinned !== undefined && pinned !== currentEtag) throw new HubError('PreconditionFailed', `The routing changed (etag ${currentEtag}); read it again.`);
      const routing = parseRouting(restoreMasked(body, stored?.routing ?? defaultRouting()));
      const masked = findMasked(routing);
      if (masked.length > 0) throw new HubError('RoutingInvalid', `Invalid routing: ${masked.join(', ')} is masked (****) and no secret is stored for it: send the secret.`);
      checkEndpoints(routing);
      const now = this.clock.now();
      const next: RoutingState = { routing, endpointsSince: endpointsSince(routing, stored, now), etag: newEtag(), version: (stored?.version ?? 0) + 1, updatedAt: new Date(now).toISOString(), updatedBy: by };
      const sealed: StoredDoc = { ...next, routing: sealSecrets(routing, this.box) };
      if (await this.meta.compareAndSetMeta(KEY, raw, JSON.stringify(sealed))) {
        this.logger.info({ event: 'routing.changed', version: next.version, by, routes: routing.routes.length }, 'routing changed');
        this.#apply(next);
        this.bus.publish(SUBJECTS.routingChanged, { etag: next.etag, version: next.version });
        return { routing: maskSecrets(routing), etag: next.etag };
      }
      if (attempt >= MAX_ATTEMPTS) throw new HubError('ServiceUnavailable', 'The routing is being changed by others; try again.');
    }
  }

  async #reload(): Promise<void> {
    const { doc } = await this.#read();
    if (doc === undefined || doc.etag === this.#state.etag) return;
    this.#apply(this.#open(doc));
  }

  #apply(next: RoutingState): void {
    const previous = this.#state;
    if (next.etag === previous.etag) return;
    // A slower read must not put an older document back.
    if (next.version < previous.version) return;
    this.#state = next;
    for (const l of this.#listeners) {
      try {
        l(next, previous);
      } catch (err) {
        this.logger.error({ err, event: 'routing.listener-failed' }, 'a routing listener failed');
      }
    }
  }

  #open(doc: StoredDoc): RoutingState {
    return { ...doc, routing: openSecrets(parseStored(doc.routing), this.box) };
  }

  async #read(): Promise<{ raw: string | undefined; doc: StoredDoc | undefined }> {
    const raw = await this.meta.getMeta(KEY);
    return { raw, doc: raw === undefined ? undefined : (JSON.parse(raw) as StoredDoc) };
  }
}

/** Each endpoint's first appearance: kept from the stored document, now for a name it did not have. */
function endpointsSince(routing: RoutingProperties, stored: RoutingState | undefined, now: number): Record<string, number> {
  const before = new Set(stored === undefined ? [] : endpointList(stored.routing).map((e) => e.config.name));
  const since: Record<string, number> = {};
  for (const e of endpointList(routing)) {
    const name = e.config.name;
    const known = stored?.endpointsSince?.[name];
    if (known !== undefined) since[name] = known;
    // An endpoint stored before first appearances were kept has none: its delivery reads from the oldest record, as it did.
    else if (!before.has(name)) since[name] = now;
  }
  return since;
}

/** What each endpoint type checks beyond the schema (a file name format, a URL's host), before anything is saved. */
function checkEndpoints(routing: RoutingProperties): void {
  const problems: string[] = [];
  for (const e of endpointList(routing)) {
    try {
      checkEndpoint(e, 'hub');
    } catch (err) {
      if (err instanceof EndpointConfigError) problems.push(err.message);
      else throw err;
    }
  }
  if (problems.length > 0) throw new HubError('RoutingInvalid', `Invalid routing: ${problems.join('; ')}`);
}

/** A stored document was valid when written: defaults filled, nothing else checked again. */
function parseStored(r: RoutingProperties): RoutingProperties {
  return { ...defaultRouting(), ...r, endpoints: { ...defaultRouting().endpoints, ...r.endpoints } };
}
