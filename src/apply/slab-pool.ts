// Aligned memory for the applier's extents, reused from one cycle to the
// next. Allocating it fresh (8 MiB per pair and cycle) made V8 collect the
// whole heap several times a second, and kept the garbage in RSS meanwhile.
import { alignedBuffer } from '../native';

const MiB = 1024 * 1024;

export class SlabPool {
  private readonly free: Buffer[] = [];
  private idleBytes = 0;

  /**
   * @param maxSlabBytes bigger requests get one-off memory, not pooled
   * @param maxIdleBytes at most this much is kept idle; the rest goes to the collector
   */
  constructor(
    readonly maxSlabBytes: number,
    private readonly maxIdleBytes: number,
  ) {}

  /** Aligned memory of at least `bytes`, not zeroed: the smallest idle slab that fits without wasting half of it, or a new one. */
  take(bytes: number): Buffer {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const n = (this.free[i] as Buffer).length;
      if (n >= bytes && n <= 2 * bytes + MiB && (best < 0 || n < (this.free[best] as Buffer).length)) best = i;
    }
    if (best >= 0) {
      const slab = this.free.splice(best, 1)[0] as Buffer;
      this.idleBytes -= slab.length;
      return slab;
    }
    // A little head room, so that the next cycle, a bit bigger, fits too.
    const size = Math.ceil((bytes * 1.125) / MiB) * MiB;
    return alignedBuffer(size > this.maxSlabBytes ? bytes : size, false);
  }

  /** Hands a slab back once nothing reads or writes it any more. */
  give(slab: Buffer): void {
    if (slab.length > this.maxSlabBytes || this.free.includes(slab)) return;
    this.free.push(slab);
    this.idleBytes += slab.length;
    // Over the limit: the oldest idle slabs go to the collector.
    while (this.idleBytes > this.maxIdleBytes) this.idleBytes -= (this.free.shift() as Buffer).length;
  }

  get idle(): number {
    return this.idleBytes;
  }
}
