/**
 * IP filter: ordered rules, the first whose mask matches decides, else the default action
 * (Azure IoT Hub's IP filter semantics). Matching uses node's BlockList per rule, so IPv4, IPv6
 * and IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1` from a dual-stack socket) are handled by the
 * runtime, not by hand.
 */
import { BlockList, isIPv4 } from 'node:net';
import { parseIpMask, type HubSettingsBody } from '../core/settings.js';

export interface IpDecision {
  allowed: boolean;
  /** The rule that decided, or undefined for the default action. */
  rule: string | undefined;
}

interface CompiledRule {
  name: string;
  accept: boolean;
  list: BlockList;
}

/** `::ffff:a.b.c.d` -> `a.b.c.d`; anything else unchanged. */
export function normalizeAddress(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m?.[1] ?? address;
}

export class IpFilter {
  readonly #rules: CompiledRule[];
  readonly #defaultAccept: boolean;
  readonly #cache = new Map<string, IpDecision>();

  constructor(filter: HubSettingsBody['ipFilter']) {
    this.#defaultAccept = filter.defaultAction === 'Accept';
    this.#rules = filter.rules.map((r) => {
      const m = parseIpMask(r.ipMask);
      const list = new BlockList();
      if (m !== undefined) list.addSubnet(m.address, m.prefix, m.family);
      return { name: r.filterName, accept: r.action === 'Accept', list };
    });
  }

  /** True when there is nothing to check (no rules, default Accept): the hot path skips work. */
  get acceptsAll(): boolean {
    return this.#rules.length === 0 && this.#defaultAccept;
  }

  check(address: string): IpDecision {
    if (this.acceptsAll) return { allowed: true, rule: undefined };
    const hit = this.#cache.get(address);
    if (hit !== undefined) return hit;
    const a = normalizeAddress(address);
    const family = isIPv4(a) ? 'ipv4' : 'ipv6';
    let decision: IpDecision = { allowed: this.#defaultAccept, rule: undefined };
    if (a !== '') {
      for (const r of this.#rules) {
        if (r.list.check(a, family)) {
          decision = { allowed: r.accept, rule: r.name };
          break;
        }
      }
    } else {
      decision = { allowed: false, rule: undefined };
    }
    if (this.#cache.size > 10_000) this.#cache.clear();
    this.#cache.set(address, decision);
    return decision;
  }
}
