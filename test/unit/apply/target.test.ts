// Target I/O: aligned ranges go through O_DIRECT, others through the page
// cache, and the two views of the disk stay the same.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TargetDisk } from '../../../src/apply/target';
import { alignedBuffer, isDirectAligned } from '../../../src/native';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'mtagent-target-'));
  dirs.push(d);
  return d;
}

describe('TargetDisk', () => {
  it('knows aligned memory from alignedBuffer, and views of it on block boundaries', () => {
    const b = alignedBuffer(16384);
    expect(isDirectAligned(b)).toBe(true);
    expect(isDirectAligned(b.subarray(4096, 8192))).toBe(true);
    expect(isDirectAligned(b.subarray(512, 4608))).toBe(false);
    expect(isDirectAligned(b.subarray(0, 1000))).toBe(false);
    expect(isDirectAligned(Buffer.alloc(4096))).toBe(false);
  });

  it('mixes direct and buffered writes on one image and reads back what each wrote', async () => {
    const path = join(tmp(), 'disk.img');
    const disk = await TargetDisk.open({ path, sizeBytes: 1 << 20 });
    expect(disk.created).toBe(true);
    expect([1, 4096]).toContain(disk.ioAlignment);
    const aligned = alignedBuffer(8192).fill(7);
    await disk.writeExtents([
      { offset: 8192, data: aligned },
      { offset: 512, data: Buffer.alloc(1024, 9) },
      { offset: 65536 + 100, data: Buffer.alloc(50, 3) },
    ]);
    await disk.flush();
    // Buffered write over part of what was written direct, then a direct read of it.
    await disk.writeExtents([{ offset: 8192 + 512, data: Buffer.alloc(512, 5) }]);
    const back = alignedBuffer(8192, false);
    await disk.readFully(back, 8192);
    expect(back.subarray(0, 512).every((x) => x === 7)).toBe(true);
    expect(back.subarray(512, 1024).every((x) => x === 5)).toBe(true);
    expect(back.subarray(1024).every((x) => x === 7)).toBe(true);
    await disk.flush();
    await disk.close();
    const file = readFileSync(path);
    expect(file.length).toBe(1 << 20);
    expect(file.subarray(512, 1536).every((x) => x === 9)).toBe(true);
    expect(file.subarray(65636, 65686).every((x) => x === 3)).toBe(true);
    expect(file.subarray(8192 + 512, 8192 + 1024).every((x) => x === 5)).toBe(true);
    expect(file.subarray(8192 + 1024, 16384).every((x) => x === 7)).toBe(true);
  });

  it('refuses an image whose size is not sizeBytes, and never resizes it', async () => {
    const path = join(tmp(), 'disk.img');
    const disk = await TargetDisk.open({ path, sizeBytes: 1 << 20 });
    await disk.close();
    await expect(TargetDisk.open({ path, sizeBytes: 2 << 20 })).rejects.toMatchObject({ code: 'size-mismatch' });
    expect(readFileSync(path).length).toBe(1 << 20);
  });
});
