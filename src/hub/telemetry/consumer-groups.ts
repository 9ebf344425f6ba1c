/**
 * The consumer groups of the built-in Event Hubs-compatible endpoint (`az iot hub consumer-group`,
 * REST `/eventHubEndpoints/events/ConsumerGroups/{name}`). `$Default` always exists and cannot be
 * deleted. Names follow Azure's rules: 1-50 characters of letters, digits, `.`, `_`, `-`, starting
 * and ending with a letter or digit; they compare without case, as Event Hubs compares them.
 *
 * Kept as one document in the store's meta table, written with compare-and-set, so nodes sharing
 * a store never lose each other's changes; readers (a receiver attaching) keep a copy for a few
 * seconds, so a group created on another node is usable there within that time.
 */
import { HubError } from '../../core/errors.js';
import type { Clock } from '../../core/clock.js';
import type { MetaStore } from '../../store/ports.js';

export const DEFAULT_CONSUMER_GROUP = '$Default';
const KEY = 'eventhub.consumer-groups';
/** Azure IoT Hub standard tier: 20 consumer groups per hub. */
export const MAX_CONSUMER_GROUPS = 20;
const CACHE_MS = 5000;
const NAME = /^(?=.{1,50}$)[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;

export interface ConsumerGroup {
  name: string;
  createdAt: string;
}

interface Doc {
  groups: ConsumerGroup[];
}

export class ConsumerGroups {
  #cache: { at: number; groups: ConsumerGroup[] } | undefined;

  constructor(
    private readonly meta: MetaStore,
    private readonly clock: Clock,
  ) {}

  async list(): Promise<ConsumerGroup[]> {
    const { doc } = await this.#read();
    return [{ name: DEFAULT_CONSUMER_GROUP, createdAt: '1970-01-01T00:00:00.000Z' }, ...doc.groups];
  }

  async get(name: string): Promise<ConsumerGroup> {
    const g = (await this.list()).find((c) => c.name.toLowerCase() === name.toLowerCase());
    if (g === undefined) throw new HubError('ConsumerGroupNotFound', `Consumer group ${name.slice(0, 60)} not found.`);
    return g;
  }

  /** For a receiver attaching: a few seconds' cache, then the store. */
  async exists(name: string): Promise<boolean> {
    if (name.toLowerCase() === DEFAULT_CONSUMER_GROUP.toLowerCase()) return true;
    const now = this.clock.now();
    if (this.#cache === undefined || now - this.#cache.at > CACHE_MS) this.#cache = { at: now, groups: (await this.#read()).doc.groups };
    if (this.#cache.groups.some((g) => g.name.toLowerCase() === name.toLowerCase())) return true;
    // Created a moment ago (on this node or another): look once more before refusing.
    this.#cache = { at: now, groups: (await this.#read()).doc.groups };
    return this.#cache.groups.some((g) => g.name.toLowerCase() === name.toLowerCase());
  }

  /** Creates the group; creating one that exists returns it (PUT is idempotent, as Azure's). */
  async create(name: string): Promise<ConsumerGroup> {
    if (!NAME.test(name)) {
      throw new HubError('ArgumentInvalid', 'A consumer group name is 1-50 letters, digits, periods, underscores and hyphens, starting and ending with a letter or digit.');
    }
    for (;;) {
      const { raw, doc } = await this.#read();
      const existing = [{ name: DEFAULT_CONSUMER_GROUP, createdAt: '' }, ...doc.groups].find((g) => g.name.toLowerCase() === name.toLowerCase());
      if (existing !== undefined) return existing.name === DEFAULT_CONSUMER_GROUP ? this.get(name) : existing;
      if (doc.groups.length + 1 >= MAX_CONSUMER_GROUPS) throw new HubError('ArgumentInvalid', `A hub has at most ${MAX_CONSUMER_GROUPS} consumer groups, ${DEFAULT_CONSUMER_GROUP} included.`);
      const group = { name, createdAt: new Date(this.clock.now()).toISOString() };
      if (await this.meta.compareAndSetMeta(KEY, raw, JSON.stringify({ groups: [...doc.groups, group] }))) {
        this.#cache = undefined;
        return group;
      }
    }
  }

  async delete(name: string): Promise<void> {
    if (name.toLowerCase() === DEFAULT_CONSUMER_GROUP.toLowerCase()) throw new HubError('ArgumentInvalid', `${DEFAULT_CONSUMER_GROUP} cannot be deleted.`);
    for (;;) {
      const { raw, doc } = await this.#read();
      const rest = doc.groups.filter((g) => g.name.toLowerCase() !== name.toLowerCase());
      if (rest.length === doc.groups.length) throw new HubError('ConsumerGroupNotFound', `Consumer group ${name.slice(0, 60)} not found.`);
      if (await this.meta.compareAndSetMeta(KEY, raw, JSON.stringify({ groups: rest }))) {
        this.#cache = undefined;
        return;
      }
    }
  }

  async #read(): Promise<{ raw: string | undefined; doc: Doc }> {
    const raw = await this.meta.getMeta(KEY);
    if (raw === undefined) return { raw, doc: { groups: [] } };
    const parsed = JSON.parse(raw) as Partial<Doc>;
    return { raw, doc: { groups: Array.isArray(parsed.groups) ? parsed.groups : [] } };
  }
}
