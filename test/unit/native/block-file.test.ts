import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockFile, IoPriority, alignedBuffer, statfs } from '../../../src/native';
import { binding } from '../../../src/native/binding';
import { useTempDir } from '../../helpers/temp-dir';

const MiB = 1024 * 1024;
const tempDir = useTempDir();

function filled(size: number, byte: number): Buffer {
  const b = alignedBuffer(size);
  b.fill(byte);
  return b;
}

describe('BlockFile', () => {
  it('round-trips with O_DIRECT on a filesystem that supports it', async () => {
    const dir = tempDir();
    const fsType = (await statfs(dir)).type;
    const f = await BlockFile.open(join(dir, 'direct.bin'), { create: true, direct: true });
    try {
      if (['ext4', 'xfs', 'btrfs'].includes(fsType)) expect(f.direct).toBe(true);
      const a = alignedBuffer(64 * 1024);
      randomBytes(a.length).copy(a);
      const b = filled(4096, 0x5a);
      expect(await f.writev([a, b], 8192)).toBe(a.length + 4096);
      await f.datasync();
      const back = alignedBuffer(a.length + 4096);
      expect(await f.read(back, 8192)).toBe(back.length);
      expect(back.subarray(0, a.length).equals(a)).toBe(true);
      expect(back.subarray(a.length).equals(b)).toBe(true);
    } finally {
      await f.close();
    }
    const onDisk = readFileSync(join(dir, 'direct.bin'));
    expect(onDisk.length).toBe(8192 + 64 * 1024 + 4096);
    expect(onDisk.subarray(0, 8192).every((x) => x === 0)).toBe(true);
  });

  it('round-trips without O_DIRECT, at any offset and length', async () => {
    const dir = tempDir();
    const f = await BlockFile.open(join(dir, 'plain.bin'), { create: true });
    try {
      expect(f.direct).toBe(false);
      const data = randomBytes(1000);
      await f.write(data, 13);
      await f.datasync();
      const back = Buffer.alloc(1000);
      expect(await f.read(back, 13)).toBe(1000);
      expect(back.equals(data)).toBe(true);
      // Reading past the end returns only what is there.
      const tail = Buffer.alloc(100);
      expect(await f.read(tail, 963)).toBe(50);
    } finally {
      await f.close();
    }
  });

  it('falls back from O_DIRECT where the kernel refuses it (a character device) and says so', async () => {
    const f = await BlockFile.open('/dev/null', { direct: true });
    try {
      expect(f.direct).toBe(false);
      await expect(f.write(Buffer.from('unaligned is fine without O_DIRECT'), 3)).resolves.toBe(34);
    } finally {
      await f.close();
    }
  });

  it('reports truthfully whether tmpfs took O_DIRECT (Linux 6.6 and later do)', async () => {
    const path = join('/dev/shm', `mtagent-test-${process.pid}-${Date.now()}`);
    const f = await BlockFile.open(path, { create: true, direct: true });
    try {
      const unaligned = f.write(Buffer.from('unaligned'), 3);
      if (f.direct) await expect(unaligned).rejects.toMatchObject({ code: 'ERR_DIRECT_IO_ALIGNMENT' });
      else await expect(unaligned).resolves.toBe(9);
    } finally {
      await f.close();
      rmSync(path);
    }
  });

  it('refuses unaligned buffers, lengths and offsets under O_DIRECT and leaves the file untouched', async () => {
    const dir = tempDir();
    const path = join(dir, 'strict.bin');
    const f = await BlockFile.open(path, { create: true, direct: true });
    try {
      expect(f.direct).toBe(true);
      await f.write(filled(8192, 0x11), 0);
      await f.datasync();
      const unalignedMemory = Buffer.alloc(4096, 0x22); // heap memory: not 4096-aligned in practice
      const shortLength = filled(4096, 0x22).subarray(0, 512);
      const misalignedView = filled(8192, 0x22).subarray(1, 4097);
      for (const [buffers, offset] of [
        [[shortLength], 0],
        [[misalignedView], 0],
        [[filled(4096, 0x22)], 512],
        [[filled(4096, 0x22), shortLength], 0],
      ] as Array<[Buffer[], number]>) {
        await expect(f.writev(buffers, offset)).rejects.toMatchObject({
          code: 'ERR_DIRECT_IO_ALIGNMENT',
          syscall: 'pwritev',
          path,
        });
      }
      if (Number(BigInt(unalignedMemory.byteOffset) % 4096n) !== 0) {
        await expect(f.write(unalignedMemory, 0)).rejects.toMatchObject({ code: 'ERR_DIRECT_IO_ALIGNMENT' });
      }
      await expect(f.read(Buffer.alloc(100), 0)).rejects.toMatchObject({ code: 'ERR_DIRECT_IO_ALIGNMENT' });
    } finally {
      await f.close();
    }
    expect(readFileSync(path).equals(Buffer.alloc(8192, 0x11))).toBe(true);
  });

  it('surfaces ENOSPC with its code, syscall and path (/dev/full)', async () => {
    const f = await BlockFile.open('/dev/full', { direct: true });
    try {
      const err = await f.write(filled(4096, 1), 0).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err).toMatchObject({ code: 'ENOSPC', syscall: 'pwritev', path: '/dev/full', errno: -28 });
      expect((err as Error).message).toMatch(/^ENOSPC: No space left on device, pwritev/);
    } finally {
      await f.close();
    }
  });

  it('reports a missing file as ENOENT naming the path', async () => {
    const path = join(tempDir(), 'nope', 'missing.bin');
    await expect(BlockFile.open(path)).rejects.toMatchObject({ code: 'ENOENT', syscall: 'open', path });
  });

  it('creates a sparse file of the given size, and never truncates an existing one', async () => {
    const dir = tempDir();
    const path = join(dir, 'disk.img');
    const f = await BlockFile.open(path, { create: true, size: 1024 * MiB });
    expect(f.sizeAtOpen).toBe(1024 * MiB);
    expect(await f.size()).toBe(1024 * MiB);
    await f.close();
    expect(statSync(path).size).toBe(1024 * MiB);
    expect(statSync(path).blocks).toBe(0);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    writeFileSync(join(dir, 'small.img'), Buffer.alloc(4096, 1));
    const g = await BlockFile.open(join(dir, 'small.img'), { size: 1024 * MiB });
    expect(g.sizeAtOpen).toBe(4096);
    await g.close();
  });

  it('frees blocks when a hole is punched, and allocates them with fallocate', async () => {
    const dir = tempDir();
    const path = join(dir, 'holes.bin');
    const f = await BlockFile.open(path, { create: true, direct: true });
    try {
      await f.write(filled(4 * MiB, 0x77), 0);
      await f.datasync();
      const before = statSync(path).blocks;
      expect(before).toBeGreaterThanOrEqual((4 * MiB) / 512);
      await f.punchHole(MiB, 2 * MiB);
      const after = statSync(path).blocks;
      expect(before - after).toBeGreaterThanOrEqual((2 * MiB) / 512);
      expect(statSync(path).size).toBe(4 * MiB);
      const back = alignedBuffer(4 * MiB);
      await f.read(back, 0);
      expect(back.subarray(0, MiB).every((x) => x === 0x77)).toBe(true);
      expect(back.subarray(MiB, 3 * MiB).every((x) => x === 0)).toBe(true);
      expect(back.subarray(3 * MiB).every((x) => x === 0x77)).toBe(true);

      await f.allocate(8 * MiB, 4 * MiB);
      expect(statSync(path).size).toBe(12 * MiB);
      expect(statSync(path).blocks - after).toBeGreaterThanOrEqual((4 * MiB) / 512);
    } finally {
      await f.close();
    }
  });

  it('lands many concurrent writes where they should', async () => {
    const dir = tempDir();
    const path = join(dir, 'concurrent.bin');
    const f = await BlockFile.open(path, { create: true, direct: true });
    const block = 64 * 1024;
    const count = 128;
    try {
      const writes: Array<Promise<number>> = [];
      // Scattered order, all in flight at once.
      for (let k = 0; k < count; k++) {
        const i = (k * 37) % count;
        writes.push(f.write(filled(block, i + 1), i * block));
      }
      expect(await Promise.all(writes)).toEqual(new Array(count).fill(block));
      await f.datasync();
    } finally {
      await f.close();
    }
    const data = readFileSync(path);
    expect(data.length).toBe(block * count);
    for (let i = 0; i < count; i++) {
      const slice = data.subarray(i * block, (i + 1) * block);
      expect(slice.every((x) => x === i + 1)).toBe(true);
    }
  });

  it('writes more buffers than IOV_MAX in one call', async () => {
    const dir = tempDir();
    const f = await BlockFile.open(join(dir, 'many.bin'), { create: true, direct: true });
    try {
      const buffers = Array.from({ length: 1500 }, (_, i) => filled(4096, i % 251));
      expect(await f.writev(buffers, 0)).toBe(1500 * 4096);
      const back = alignedBuffer(4096);
      await f.read(back, 1499 * 4096);
      expect(back.every((x) => x === 1499 % 251)).toBe(true);
    } finally {
      await f.close();
    }
  });

  it('moves data in pieces of at most maxIoBytes, cutting buffers anywhere on a 4096 boundary', async () => {
    // Write and read system calls of this process, threads included (/proc/self/io).
    const calls = (): { syscr: number; syscw: number } => {
      const io = readFileSync('/proc/self/io', 'utf8');
      return { syscr: Number(/syscr: (\d+)/.exec(io)?.[1]), syscw: Number(/syscw: (\d+)/.exec(io)?.[1]) };
    };
    const dir = tempDir();
    // Giving way to foreground I/O, the pieces are cut in JavaScript instead of in the addon: the same bytes land.
    for (const [direct, givingWay] of [
      [true, false],
      [false, false],
      [true, true],
      [false, true],
    ]) {
      const priority = new IoPriority(() => givingWay as boolean);
      const f = await BlockFile.open(join(dir, `pieces-${direct}-${givingWay}.bin`), { create: true, direct, maxIoBytes: MiB, priority });
      try {
        expect(f.maxIoBytes).toBe(MiB);
        // 1.5 MiB, 0.5 MiB, 2 MiB + 4 KiB: piece ends fall inside buffers and on their edges.
        const buffers = [MiB + MiB / 2, MiB / 2, 2 * MiB + 4096].map((n) => {
          const b = alignedBuffer(n);
          randomBytes(n).copy(b);
          return b;
        });
        const whole = Buffer.concat(buffers);
        const before = calls();
        expect(await f.writev(buffers, 8192)).toBe(whole.length);
        const written = calls();
        expect(written.syscw - before.syscw).toBeGreaterThanOrEqual(5);
        const back = alignedBuffer(whole.length + 3 * 4096);
        // Past the end of the file: the last piece comes back short, and the count says so.
        expect(await f.read(back, 8192)).toBe(whole.length);
        expect(calls().syscr - written.syscr).toBeGreaterThanOrEqual(5);
        expect(back.subarray(0, whole.length).equals(whole)).toBe(true);
      } finally {
        await f.close();
      }
    }
    await expect(BlockFile.open(join(dir, 'bad.bin'), { create: true, maxIoBytes: 1000 })).rejects.toMatchObject({ code: 'ERR_BAD_OPTIONS' });
  });

  it('writes and flushes in one call (writeDurable), in pieces too while giving way', async () => {
    const dir = tempDir();
    for (const givingWay of [false, true]) {
      const path = join(dir, `durable-${givingWay}.bin`);
      const f = await BlockFile.open(path, { create: true, direct: true, maxIoBytes: MiB, priority: new IoPriority(() => givingWay) });
      try {
        const data = alignedBuffer(2 * MiB + 4096);
        randomBytes(data.length).copy(data);
        expect(await f.writeDurable(data, 4096)).toBe(data.length);
        const back = alignedBuffer(data.length);
        expect(await f.read(back, 4096)).toBe(data.length);
        expect(back.equals(data)).toBe(true);
        await expect(f.writeDurable(filled(4096, 1).subarray(0, 512), 0)).rejects.toMatchObject({ code: 'ERR_DIRECT_IO_ALIGNMENT', syscall: 'pwritev', path });
      } finally {
        await f.close();
      }
    }
    // The flush really follows the write: /dev/null takes writes but refuses
    // fdatasync, so a plain write succeeds and a durable one fails at the flush.
    const nul = await BlockFile.open('/dev/null');
    try {
      expect(await nul.write(filled(4096, 1), 0)).toBe(4096);
      await expect(nul.writeDurable(filled(4096, 1), 0)).rejects.toMatchObject({ code: 'EINVAL', syscall: 'fdatasync', path: '/dev/null' });
    } finally {
      await nul.close();
    }
    // A failed write is reported as such, and nothing is flushed after it.
    const full = await BlockFile.open('/dev/full', { direct: true });
    try {
      await expect(full.writeDurable(filled(4096, 1), 0)).rejects.toMatchObject({ code: 'ENOSPC', syscall: 'pwritev' });
    } finally {
      await full.close();
    }
  });

  it('waits for in-flight calls before closing, and refuses calls after', async () => {
    const dir = tempDir();
    const f = await BlockFile.open(join(dir, 'close.bin'), { create: true, direct: true });
    const pending = Array.from({ length: 16 }, (_, i) => f.write(filled(MiB, i), i * MiB));
    const closing = f.close();
    await expect(Promise.all(pending)).resolves.toHaveLength(16);
    await closing;
    expect(f.isClosed).toBe(true);
    await expect(f.datasync()).rejects.toMatchObject({ code: 'ERR_FILE_CLOSED' });
    expect(statSync(join(dir, 'close.bin')).size).toBe(16 * MiB);
  });

  it('says ENOTBLK when asked for a block size of a regular file', async () => {
    const f = await BlockFile.open(join(tempDir(), 'f.bin'), { create: true });
    try {
      await expect(binding.blockDeviceSize(f.fd)).rejects.toMatchObject({ code: 'ENOTBLK' });
    } finally {
      await f.close();
    }
  });

  // A sandbox may forbid opening the host's disks; the test runs wherever one opens.
  const readableBlockDevice = readdirSync('/sys/block')
    .filter((name) => !name.startsWith('loop') && !name.startsWith('ram'))
    .map((name) => ({ name, dev: `/dev/${name}` }))
    .find(({ dev }) => {
      try {
        closeSync(openSync(dev, 'r'));
        return true;
      } catch {
        return false;
      }
    });

  it.runIf(readableBlockDevice !== undefined)('reads a real block device size with BLKGETSIZE64', async () => {
    const { name, dev } = readableBlockDevice as { name: string; dev: string };
    const sectors = Number(readFileSync(`/sys/block/${name}/size`, 'utf8').trim());
    const f = await BlockFile.open(dev, { readOnly: true });
    try {
      expect(f.blockDevice).toBe(true);
      expect(await f.size()).toBe(sectors * 512);
    } finally {
      await f.close();
    }
  });

  it('refuses bad arguments on the calling thread', async () => {
    const f = await BlockFile.open(join(tempDir(), 'args.bin'), { create: true });
    try {
      await expect(f.write(Buffer.alloc(1), -1)).rejects.toThrow(RangeError);
      await expect(f.writev(['x'] as unknown as Buffer[], 0)).rejects.toThrow(TypeError);
      await expect(f.allocate(0, 0)).rejects.toThrow(/length must be greater than 0/);
    } finally {
      await f.close();
    }
  });
});

describe('BlockFile extras', () => {
  it('finds data and holes in a sparse file (SEEK_DATA / SEEK_HOLE)', async () => {
    const path = join(tempDir(), 'sparse.img');
    const f = await BlockFile.open(path, { create: true, size: 64 * MiB });
    try {
      await f.write(Buffer.alloc(MiB, 1), 16 * MiB);
      await f.write(Buffer.alloc(MiB, 2), 40 * MiB);
      await f.datasync();
      expect(await f.seekData(0)).toBe(16 * MiB);
      expect(await f.seekHole(16 * MiB)).toBe(17 * MiB);
      expect(await f.seekData(17 * MiB)).toBe(40 * MiB);
      expect(await f.seekHole(40 * MiB)).toBe(41 * MiB);
      expect(await f.seekData(41 * MiB)).toBe(-1);
      expect(await f.seekHole(41 * MiB)).toBe(41 * MiB); // already in a hole
    } finally {
      await f.close();
    }
  });

  it('holds an exclusive lock that a second open of the same file cannot take', async () => {
    const path = join(tempDir(), '.lock');
    const a = await BlockFile.open(path, { create: true });
    const b = await BlockFile.open(path, {});
    try {
      expect(a.tryLock()).toBe(true);
      expect(a.tryLock()).toBe(true); // the holder may ask again
      expect(b.tryLock()).toBe(false);
      await a.close();
      expect(b.tryLock()).toBe(true);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
