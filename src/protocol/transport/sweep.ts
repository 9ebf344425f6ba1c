/**
 * Members visited together every `intervalMs` while there are any: one timer for many connections
 * instead of one each (issue 19, memory per idle device). The timer exists only while the set is
 * not empty; a member may leave (or be removed) during a sweep.
 */
export class Sweep<T> {
  readonly #members = new Set<T>();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs: number,
    /** Visits the members (the sweep's own work, e.g. reading a clock once, goes here too). */
    private readonly sweep: (members: ReadonlySet<T>) => void,
    /** Whether a pending sweep keeps the process up (unref'd if not). */
    private readonly keepsProcessUp: boolean,
  ) {}

  add(member: T): void {
    this.#members.add(member);
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.run(), this.intervalMs);
    if (!this.keepsProcessUp) this.#timer.unref();
  }

  delete(member: T): void {
    this.#members.delete(member);
    if (this.#members.size === 0) this.#stop();
  }

  /** One sweep now (the timer's, or a test's). */
  run(): void {
    this.sweep(this.#members);
    if (this.#members.size === 0) this.#stop();
  }

  get size(): number {
    return this.#members.size;
  }

  #stop(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
