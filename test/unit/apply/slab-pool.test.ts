import { describe, expect, it } from 'vitest';
import { SlabPool } from '../../../src/apply/slab-pool';
import { isDirectAligned } from '../../../src/native';

const MiB = 1024 * 1024;

describe('SlabPool', () => {
  it('hands out aligned memory with head room, and reuses what is given back', () => {
    const pool = new SlabPool(32 * MiB, 16 * MiB);
    const a = pool.take(8 * MiB);
    expect(a.length).toBeGreaterThanOrEqual(8 * MiB);
    expect(a.length % MiB).toBe(0);
    expect(isDirectAligned(a)).toBe(true);
    pool.give(a);
    expect(pool.idle).toBe(a.length);
    // A slightly bigger request still fits the slab given back.
    expect(pool.take(8 * MiB + 4096)).toBe(a);
    expect(pool.idle).toBe(0);
  });

  it('does not waste a big slab on a small request', () => {
    const pool = new SlabPool(32 * MiB, 32 * MiB);
    const big = pool.take(16 * MiB);
    pool.give(big);
    const small = pool.take(MiB);
    expect(small).not.toBe(big);
    expect(pool.idle).toBe(big.length);
  });

  it('keeps at most maxIdleBytes, pools nothing bigger than maxSlabBytes, and takes a slab back once', () => {
    const pool = new SlabPool(8 * MiB, 10 * MiB);
    const a = pool.take(4 * MiB);
    const b = pool.take(4 * MiB);
    const c = pool.take(4 * MiB);
    pool.give(a);
    pool.give(a);
    pool.give(b);
    pool.give(c);
    expect(pool.idle).toBeLessThanOrEqual(10 * MiB);
    const huge = pool.take(20 * MiB);
    expect(huge.length).toBe(20 * MiB);
    const before = pool.idle;
    pool.give(huge);
    expect(pool.idle).toBe(before);
  });
});
