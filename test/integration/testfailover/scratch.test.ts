// The test failover's scratch area: what a flush acknowledged is there after
// a crash (the area opened again without being closed, as after kill -9),
// what was not flushed reads as the point again, and the quota holds.
import { appendFileSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SCRATCH_BLOCK, Scratch, ScratchFullError } from '../../../src/testfailover/scratch';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const MiB = 1024 * 1024;

describe('scratch', () => {
  it('keeps flushed blocks and forgets unflushed ones across a crash', async () => {
    const dir = join(tempDir(), 's');
    const a = await Scratch.open(dir, 8 * MiB, 4 * MiB);
    await a.write(0, Buffer.alloc(2 * SCRATCH_BLOCK, 0xaa), false);
    await a.flush();
    await a.write(8 * SCRATCH_BLOCK, Buffer.alloc(SCRATCH_BLOCK, 0xbb), false);
    await a.write(16 * SCRATCH_BLOCK, Buffer.alloc(SCRATCH_BLOCK, 0xcc), true);
    await a.write(24 * SCRATCH_BLOCK, Buffer.alloc(SCRATCH_BLOCK, 0xdd), false);
    // No close: the process is gone.
    const b = await Scratch.open(dir, 8 * MiB, 4 * MiB);
    expect([0, 1, 8, 16].map((n) => b.has(n))).toEqual([true, true, true, true]);
    expect(b.has(24)).toBe(false);
    expect(b.usedBytes).toBe(4 * SCRATCH_BLOCK);
    const buf = Buffer.alloc(SCRATCH_BLOCK);
    await b.read(buf, 16 * SCRATCH_BLOCK);
    expect(buf.every((x) => x === 0xcc)).toBe(true);
    await Promise.all([a.close(), b.close()]);
  });

  it('ignores a torn last map entry', async () => {
    const dir = join(tempDir(), 's');
    const a = await Scratch.open(dir, 8 * MiB, 4 * MiB);
    await a.write(0, Buffer.alloc(SCRATCH_BLOCK, 1), true);
    await a.close();
    appendFileSync(join(dir, 'scratch.map'), Buffer.from([5, 0, 0, 0, 0, 0, 0, 0, 1, 0]));
    const b = await Scratch.open(dir, 8 * MiB, 4 * MiB);
    expect(b.has(0)).toBe(true);
    expect(b.has(5)).toBe(false);
    // The next flush writes over the torn bytes.
    await b.write(7 * SCRATCH_BLOCK, Buffer.alloc(SCRATCH_BLOCK, 2), true);
    await b.close();
    expect(statSync(join(dir, 'scratch.map')).size).toBe(32);
    const c = await Scratch.open(dir, 8 * MiB, 4 * MiB);
    expect(c.has(7) && c.has(0) && !c.has(5)).toBe(true);
    await c.close();
  });

  it('refuses blocks past the quota, while rewriting its own blocks costs nothing', async () => {
    const dir = join(tempDir(), 's');
    const a = await Scratch.open(dir, 8 * MiB, 4 * SCRATCH_BLOCK);
    await a.write(0, Buffer.alloc(4 * SCRATCH_BLOCK, 1), false);
    await a.write(0, Buffer.alloc(4 * SCRATCH_BLOCK, 2), false);
    await expect(a.write(4 * SCRATCH_BLOCK, Buffer.alloc(SCRATCH_BLOCK), false)).rejects.toThrow(ScratchFullError);
    expect(a.usedBytes).toBe(4 * SCRATCH_BLOCK);
    await a.close();
  });

  it('counts no bytes for trimmed or zeroed blocks, frees the data they cover, and keeps that across a crash', async () => {
    const dir = join(tempDir(), 's');
    const a = await Scratch.open(dir, 8 * MiB, 4 * SCRATCH_BLOCK);
    // A whole-disk zero with the quota at four blocks: taken, and nothing counted.
    await a.zero(0, 8 * MiB, false);
    expect(a.usedBytes).toBe(0);
    await a.write(0, Buffer.alloc(4 * SCRATCH_BLOCK, 1), false);
    expect(a.usedBytes).toBe(4 * SCRATCH_BLOCK);
    await expect(a.write(4 * SCRATCH_BLOCK, Buffer.alloc(SCRATCH_BLOCK), false)).rejects.toThrow(ScratchFullError);
    // Zeros over data free it.
    await a.zero(0, 2 * SCRATCH_BLOCK, false);
    expect(a.usedBytes).toBe(2 * SCRATCH_BLOCK);
    await a.write(4 * SCRATCH_BLOCK, Buffer.alloc(2 * SCRATCH_BLOCK, 2), true);
    expect(a.usedBytes).toBe(4 * SCRATCH_BLOCK);
    // No close: what the map says is what counts after a restart.
    const b = await Scratch.open(dir, 8 * MiB, 4 * SCRATCH_BLOCK);
    expect(b.usedBytes).toBe(4 * SCRATCH_BLOCK);
    expect([0, 1, 2, 3, 4, 5, 6, 2047].map((n) => b.has(n))).toEqual(Array(8).fill(true));
    const buf = Buffer.alloc(6 * SCRATCH_BLOCK);
    await b.read(buf, 0);
    expect([...buf.subarray(0, 2 * SCRATCH_BLOCK)].every((x) => x === 0)).toBe(true);
    expect([...buf.subarray(2 * SCRATCH_BLOCK, 4 * SCRATCH_BLOCK)].every((x) => x === 1)).toBe(true);
    expect([...buf.subarray(4 * SCRATCH_BLOCK)].every((x) => x === 2)).toBe(true);
    await expect(b.write(7 * SCRATCH_BLOCK, Buffer.alloc(SCRATCH_BLOCK), false)).rejects.toThrow(ScratchFullError);
    await Promise.all([a.close(), b.close()]);
  });

  it('reads zeroed blocks as zeros and keeps them as holes', async () => {
    const dir = join(tempDir(), 's');
    const a = await Scratch.open(dir, 8 * MiB, 8 * MiB);
    await a.write(0, Buffer.alloc(MiB, 7), true);
    await a.zero(0, MiB, true);
    const buf = Buffer.alloc(MiB, 1);
    await a.read(buf, 0);
    expect(buf.every((x) => x === 0)).toBe(true);
    expect(a.has(0) && a.has(255)).toBe(true);
    await a.close();
    expect(statSync(join(dir, 'scratch.img')).blocks * 512).toBeLessThan(MiB);
    expect(readFileSync(join(dir, 'scratch.map')).length).toBe(32);
  });
});
