/** The sliding window of one alert key (alerts.ts): its event times, oldest first, at most `cap`. */
export class TimeWindow {
  #times: number[] = [];
  #head = 0;

  add(at: number, n: number, cap: number): void {
    for (let i = 0; i < n; i++) this.#times.push(at);
    const excess = this.#times.length - this.#head - cap;
    if (excess > 0) this.#head += excess;
    this.#compact();
  }

  /** Events after `now - windowMs`; older ones are forgotten. */
  count(now: number, windowMs: number): number {
    const floor = now - windowMs;
    while (this.#head < this.#times.length && (this.#times[this.#head] ?? 0) <= floor) this.#head++;
    this.#compact();
    return this.#times.length - this.#head;
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#times.length) {
      this.#times = this.#times.slice(this.#head);
      this.#head = 0;
    }
  }
}
