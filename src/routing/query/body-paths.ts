/**
 * The `$body` paths of one routing document (or one condition) as a tree the body scan walks
 * (body-scan.ts): each path has a number, each object key a slot in a scan's per-object state.
 */
import type { Segment } from './ast.js';
import { ABSENT } from './body-values.js';

export interface KeyChild {
  readonly seg: string;
  readonly utf8: Buffer;
  /** seg.toLowerCase(). */
  readonly lower: string;
  /** lower's bytes when it is all ASCII (an ASCII key can only match such a segment case-insensitively). */
  readonly lowerAscii: Buffer | null;
  readonly node: PathNode;
  /** This child's place in a scan's per-object state. */
  readonly slot: number;
}

export class PathNode {
  readonly keys: KeyChild[] = [];
  /**
   * The children a plain key (ASCII, no escape) of each byte length can select: its bytes equal a
   * segment's, or fold to an ASCII lower-case segment's, and both keep the length.
   */
  readonly byLength: (KeyChild[] | undefined)[] = [];
  readonly indices = new Map<number, PathNode>();
  /** Paths that end at this node. */
  readonly leaves: number[] = [];
  /** Paths that end at this node or under it (cleared when a later duplicate key replaces the value). */
  readonly below: number[] = [];
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** The `$body` paths of one routing document (or one condition), each with a number. */
export class BodyPaths {
  readonly root = new PathNode();
  readonly #ids = new Map<string, number>();
  #slots = 0;
  #needsParse = false;
  #absent: number[] = [];

  /** The number of a path (the same for the same segments); the first segment must be a key. */
  add(segments: readonly Segment[]): number {
    const key = JSON.stringify(segments);
    const known = this.#ids.get(key);
    if (known !== undefined) return known;
    const id = this.#ids.size;
    this.#ids.set(key, id);
    let node = this.root;
    node.below.push(id);
    for (const seg of segments) {
      if (typeof seg === 'number') {
        let next = node.indices.get(seg);
        if (next === undefined) node.indices.set(seg, (next = new PathNode()));
        node = next;
      } else {
        let child = node.keys.find((k) => k.seg === seg);
        if (child === undefined) {
          const lower = seg.toLowerCase();
          if (node.keys.some((k) => k.lower === lower)) this.#needsParse = true;
          child = { seg, utf8: Buffer.from(seg, 'utf8'), lower, lowerAscii: isAscii(lower) ? Buffer.from(lower, 'latin1') : null, node: new PathNode(), slot: this.#slots++ };
          node.keys.push(child);
          for (const length of new Set([child.utf8.length, child.lowerAscii?.length ?? child.utf8.length])) (node.byLength[length] ??= []).push(child);
        }
        node = child.node;
      }
      node.below.push(id);
    }
    node.leaves.push(id);
    return id;
  }

  get size(): number {
    return this.#ids.size;
  }

  /** A scan's results before it finds anything: every path absent (copied, which costs less than filling a new array). */
  get absent(): number[] {
    if (this.#absent.length !== this.#ids.size * 3) this.#absent = new Array<number>(this.#ids.size * 3).fill(ABSENT);
    return this.#absent;
  }

  get slots(): number {
    return this.#slots;
  }

  /** True when a scan cannot answer for these paths (sibling keys differing only in case). */
  get needsParse(): boolean {
    return this.#needsParse;
  }
}
