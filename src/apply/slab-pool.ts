// Aligned memory for the applier, reused from one cycle to the next.
//
// Memory that is new to the process costs a page fault and a page the kernel
// zeroes, for every 4 KiB, the first time it is touched; freeing it (munmap)
// costs again. Slabs of varying sizes, each fitted to one request, were
// rarely reused and cost the daemon a fifth of its CPU that way (perf, 64 KiB
// writes at 330 MB/s). So every slab has the same size, any slab serves any
// request that fits, and a cycle carves its memory out of slabs one after
// the other (SlabArena). A slab's pages are touched only as far as it is
// used: its size is address space, its use is what counts in RSS.
import { alignUp, alignedBuffer, discardPages, releaseBuffer } from '../native';

/** Where aligned memory for one cycle comes from. */
export interface AlignedMemory {
  /** At least `bytes` of memory on an O_DIRECT boundary, not zeroed. */
  take(bytes: number): Buffer;
}

const POISON = 0xa5;

/** An idle slab, since when (performance.now()), and whether its pages went back to the system. */
interface IdleSlab {
  slab: Buffer;
  since: number;
  discarded: boolean;
}

export class SlabPool {
  /** Idle slabs, the one given back last on top. */
  private readonly free: IdleSlab[] = [];

  /**
   * @param slabBytes the size of every slab: a request bigger than this gets one-off memory
   * @param maxIdle at most this many slabs are kept idle; the memory of any more is freed at once
   * @param poison fill memory given back with 0xa5 (tests: whatever still reads it sees garbage)
   * @param residentIdle this many idle slabs (those given back last) always keep their pages
   * @param discardAfterMs the others give their pages back once idle this long
   */
  constructor(
    readonly slabBytes: number,
    private readonly maxIdle: number,
    readonly poison = false,
    private readonly residentIdle = maxIdle,
    private readonly discardAfterMs = 0,
  ) {}

  /** An idle slab, or a new one. */
  take(): Buffer {
    this.discardIdle();
    return this.free.pop()?.slab ?? alignedBuffer(this.slabBytes, false);
  }

  /**
   * Hands a slab back once nothing reads or writes it any more. The slab
   * given back last is taken first: its pages are the likeliest to be
   * resident. Slabs idle under the `residentIdle` on top give their pages
   * back to the system after a while: kept mapped, they cost no new memory
   * when taken again (a slab mapped anew is an ArrayBuffer V8 counts, and
   * enough of them start its collector), and only as much RSS as that use
   * writes. At full load slabs come and go in milliseconds and keep theirs.
   */
  give(slab: Buffer): void {
    if (slab.length !== this.slabBytes || this.free.some((f) => f.slab === slab)) return;
    if (this.poison) slab.fill(POISON);
    if (this.free.length < this.maxIdle) this.free.push({ slab, since: performance.now(), discarded: false });
    else releaseBuffer(slab);
    this.discardIdle();
  }

  private discardIdle(): void {
    const now = performance.now();
    for (let i = 0; i < this.free.length - this.residentIdle; i++) {
      const f = this.free[i] as IdleSlab;
      if (f.discarded || now - f.since < this.discardAfterMs) continue;
      if (!this.poison) discardPages(f.slab);
      f.discarded = true;
    }
  }

  get idle(): number {
    return this.free.length;
  }
}

/**
 * The memory of one cycle: requests are laid one after the other in slabs
 * from the pool, and all of it goes back at once (release), when nothing
 * reads it any more.
 */
export class SlabArena implements AlignedMemory {
  private readonly carver: SlabCarver;
  private readonly pieces: Buffer[] = [];
  private readonly releasers: Array<() => void> = [];
  private released = false;

  constructor(pool: SlabPool) {
    this.carver = new SlabCarver(pool);
  }

  take(bytes: number): Buffer {
    if (this.released) throw new Error('SlabArena: take after release');
    const piece = this.carver.take(bytes);
    this.pieces.push(piece);
    return piece;
  }

  /** Runs `fn` at release: memory from elsewhere (a batch's staging) that this cycle holds. */
  onRelease(fn: () => void): void {
    if (this.released) throw new Error('SlabArena: onRelease after release');
    this.releasers.push(fn);
  }

  /** Gives every slab back to the pool; the arena takes nothing more. */
  release(): void {
    if (this.released) return;
    this.released = true;
    for (const piece of this.pieces) this.carver.release(piece);
    this.pieces.length = 0;
    this.carver.close();
    for (const fn of this.releasers) fn();
    this.releasers.length = 0;
  }
}

interface Carving {
  slab: Buffer;
  used: number;
  /** Pieces handed out and not yet released. */
  holders: number;
}

/**
 * Memory whose pieces are released one by one, in any order (the ingest
 * log's batches, each held until the applier is done with it): pieces are
 * carved from a slab one after the other, and the slab goes back to the pool
 * once it is full and every piece of it is released.
 */
export class SlabCarver {
  private current: Carving | null = null;
  private readonly owners = new WeakMap<Buffer, Carving>();

  constructor(private readonly pool: SlabPool) {}

  /** At least `bytes` on an O_DIRECT boundary, not zeroed; give it back with release(). */
  take(bytes: number): Buffer {
    const need = alignUp(Math.max(bytes, 1));
    if (need > this.pool.slabBytes) return alignedBuffer(need, false);
    let c = this.current;
    if (c === null || c.used + need > c.slab.length) {
      if (c !== null && c.holders === 0) this.pool.give(c.slab);
      c = { slab: this.pool.take(), used: 0, holders: 0 };
      this.current = c;
    }
    const piece = c.slab.subarray(c.used, c.used + need);
    c.used += need;
    c.holders++;
    this.owners.set(piece, c);
    return piece;
  }

  /** Gives back a piece from take(); a piece of one-off memory, or one given back already, is ignored. */
  release(piece: Buffer): void {
    const c = this.owners.get(piece);
    if (c === undefined) return;
    this.owners.delete(piece);
    if (this.pool.poison) piece.fill(POISON);
    c.holders--;
    if (c.holders === 0 && c !== this.current) this.pool.give(c.slab);
  }

  /** Stops carving: the slab being carved goes back once every piece of it is released (now, if none is held). */
  close(): void {
    const c = this.current;
    this.current = null;
    if (c !== null && c.holders === 0) this.pool.give(c.slab);
  }
}
