import { describe, expect, it } from 'vitest';
import { SlabArena, SlabCarver, SlabPool } from '../../../src/apply/slab-pool';
import { isDirectAligned } from '../../../src/native';

const MiB = 1024 * 1024;

describe('SlabPool', () => {
  it('hands out slabs of one size, and reuses the one given back last', () => {
    const pool = new SlabPool(4 * MiB, 2);
    const a = pool.take();
    const b = pool.take();
    expect(a.length).toBe(4 * MiB);
    expect(isDirectAligned(a)).toBe(true);
    b.fill(7);
    pool.give(a);
    pool.give(b);
    expect(pool.idle).toBe(2);
    expect(b.every((x) => x === 7)).toBe(true);
    expect(pool.take()).toBe(b);
    expect(pool.take()).toBe(a);
    expect(pool.idle).toBe(0);
  });

  it('idle slabs under the residentIdle given back last give their pages back once idle discardAfterMs', async () => {
    const pool = new SlabPool(4 * MiB, 3, false, 1, 50);
    const [a, b, c] = [pool.take(), pool.take(), pool.take()] as [Buffer, Buffer, Buffer];
    for (const s of [a, b, c]) s.fill(7);
    pool.give(a);
    pool.give(b);
    pool.give(c);
    expect(pool.idle).toBe(3);
    // Not idle long enough yet: every page is still there.
    expect([a, b, c].every((s) => s.every((x) => x === 7))).toBe(true);
    await new Promise((r) => setTimeout(r, 60));
    // The next use of the pool gives back the pages of a and b; c, given back last, keeps its own and goes first.
    expect(pool.take()).toBe(c);
    expect(c.every((x) => x === 7)).toBe(true);
    expect(a.every((x) => x === 0)).toBe(true);
    expect(b.every((x) => x === 0)).toBe(true);
    expect(pool.take()).toBe(b);
    expect(pool.idle).toBe(1);
  });

  it('keeps at most maxIdle slabs and frees the others at once, takes a slab back once, and refuses memory of another size', () => {
    const pool = new SlabPool(MiB, 2);
    const slabs = [pool.take(), pool.take(), pool.take()] as [Buffer, Buffer, Buffer];
    for (const s of slabs) pool.give(s);
    // The third did not fit: its memory is freed now, not whenever V8 collects it.
    expect(slabs.map((s) => s.length)).toEqual([MiB, MiB, 0]);
    pool.give(slabs[0]);
    pool.give(slabs[2]);
    expect(pool.idle).toBe(2);
    expect(pool.take()).toBe(slabs[1]);
    pool.give(Buffer.alloc(2 * MiB));
    expect(pool.idle).toBe(1);
  });
});

describe('SlabArena', () => {
  it('lays requests one after the other on O_DIRECT boundaries, in as few slabs as fit', () => {
    const pool = new SlabPool(MiB, 4);
    const arena = new SlabArena(pool);
    const a = arena.take(1000);
    const b = arena.take(8192);
    expect(a.buffer).toBe(b.buffer);
    expect(b.byteOffset - a.byteOffset).toBe(4096);
    expect(isDirectAligned(b)).toBe(true);
    // Does not fit what is left of the first slab: a second one.
    const c = arena.take(MiB - 4096);
    expect(c.buffer).not.toBe(a.buffer);
    a.fill(1);
    b.fill(2);
    c.fill(3);
    expect(a[0]).toBe(1);
    expect(b[0]).toBe(2);
    expect(c[c.length - 1]).toBe(3);
    arena.release();
    expect(pool.idle).toBe(2);
    expect(() => arena.take(1)).toThrow(/after release/);
  });

  it('serves a request bigger than a slab with memory of its own, which the pool does not keep', () => {
    const pool = new SlabPool(MiB, 4);
    const arena = new SlabArena(pool);
    const big = arena.take(3 * MiB);
    expect(big.length).toBe(3 * MiB);
    expect(isDirectAligned(big)).toBe(true);
    arena.release();
    expect(pool.idle).toBe(0);
  });

  it('runs what was registered with onRelease when it releases, once', () => {
    const arena = new SlabArena(new SlabPool(MiB, 1));
    let runs = 0;
    arena.onRelease(() => runs++);
    arena.release();
    arena.release();
    expect(runs).toBe(1);
  });

  it('a second arena reuses the slabs the first gave back', () => {
    const pool = new SlabPool(MiB, 4);
    const first = new SlabArena(pool);
    const x = first.take(4096);
    first.release();
    const second = new SlabArena(pool);
    expect(second.take(4096).buffer).toBe(x.buffer);
  });
});

describe('SlabCarver', () => {
  it('carves pieces one after the other and gives a slab back only when it is full and every piece of it is released', () => {
    const pool = new SlabPool(64 * 1024, 4);
    const carver = new SlabCarver(pool);
    const a = carver.take(20_000);
    const b = carver.take(4096);
    expect(a.buffer).toBe(b.buffer);
    expect(isDirectAligned(a)).toBe(true);
    expect(b.byteOffset - a.byteOffset).toBe(20_480);
    // Released, but the slab is still being carved: it stays out of the pool.
    carver.release(a);
    carver.release(b);
    expect(pool.idle).toBe(0);
    // Does not fit what is left: the slab, all released, goes back and is carved again from the start.
    const c = carver.take(48 * 1024);
    expect(c.buffer).toBe(a.buffer);
    expect(c.byteOffset).toBe(a.byteOffset);
    const d = carver.take(16 * 1024);
    expect(d.buffer).toBe(c.buffer);
    // Full and still held: a second slab, and the first stays out of the pool until all of it is released, in any order.
    const e = carver.take(16 * 1024);
    expect(e.buffer).not.toBe(c.buffer);
    expect(pool.idle).toBe(0);
    carver.release(d);
    expect(pool.idle).toBe(0);
    carver.release(c);
    expect(pool.idle).toBe(1);
    carver.release(c);
    expect(pool.idle).toBe(1);
    expect(carver.take(4096).buffer).toBe(e.buffer);
  });

  it('serves a piece bigger than a slab with memory of its own', () => {
    const pool = new SlabPool(64 * 1024, 4);
    const carver = new SlabCarver(pool);
    const big = carver.take(100_000);
    expect(big.length).toBe(102_400);
    expect(isDirectAligned(big)).toBe(true);
    carver.release(big);
    expect(pool.idle).toBe(0);
  });
});
