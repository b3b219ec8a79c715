/** Counts operations in flight, and wakes those waiting for there to be none. */
export class InFlight {
  private count = 0;
  private idleWaiters: Array<() => void> = [];

  get size(): number {
    return this.count;
  }

  /** Runs `op`, counted while it is in flight. */
  async run<T>(op: () => Promise<T>): Promise<T> {
    this.count++;
    try {
      return await op();
    } finally {
      this.count--;
      if (this.count === 0 && this.idleWaiters.length > 0) {
        const waiting = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiting) w();
      }
    }
  }

  /** Resolves once nothing is in flight (at once if nothing is). */
  async idle(): Promise<void> {
    if (this.count > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }
}
