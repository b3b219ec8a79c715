import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockFile, alignedBuffer, discardPages, releaseBuffer, returnFreedMemory, sdNotify, statfs } from '../../../src/native';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();

describe('statfs', () => {
  it('describes the root filesystem', async () => {
    const s = await statfs('/');
    const rootType = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' '))
      .filter((f) => f[1] === '/')
      .pop()?.[2];
    expect(s.type).toBe(rootType === 'ext3' || rootType === 'ext2' ? 'ext4' : rootType);
    expect(s.capacityBytes).toBeGreaterThan(0);
    expect(s.freeBytes).toBeLessThanOrEqual(s.capacityBytes);
    expect(s.availableBytes).toBeLessThanOrEqual(s.freeBytes);
    expect(s.blockSize).toBeGreaterThanOrEqual(512);
    expect(s.readOnly).toBe(false);
  });

  it('recognises tmpfs (/dev/shm)', async () => {
    const s = await statfs('/dev/shm');
    expect(s.type).toBe('tmpfs');
    expect(s.magic).toBe(0x01021994);
    expect(s.capacityBytes).toBeGreaterThan(0);
  });

  const readOnlyMount = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f.length > 3 && (f[3] ?? '').split(',').includes('ro') && !(f[1] ?? '').includes('\\'));

  it.runIf(readOnlyMount !== undefined)('reports a read-only mount as readOnly', async () => {
    const s = await statfs((readOnlyMount as string[])[1] as string);
    expect(s.readOnly).toBe(true);
  });

  it('names a missing path', async () => {
    await expect(statfs('/no/such/path')).rejects.toMatchObject({ code: 'ENOENT', syscall: 'statfs', path: '/no/such/path' });
  });
});

describe('alignedBuffer', () => {
  it('is zero-filled and accepted by O_DIRECT at any size that is a multiple of 4096', async () => {
    const f = await BlockFile.open(join(tempDir(), 'a.bin'), { create: true, direct: true });
    try {
      for (const size of [4096, 12288, 1 << 20]) {
        const b = alignedBuffer(size);
        expect(b.length).toBe(size);
        expect(b.every((x) => x === 0)).toBe(true);
        await expect(f.write(b, 0)).resolves.toBe(size);
      }
    } finally {
      await f.close();
    }
  });

  it('skips the zero fill on request, for memory a read overwrites, and O_DIRECT still takes it', async () => {
    const f = await BlockFile.open(join(tempDir(), 'b.bin'), { create: true, direct: true });
    try {
      await f.write(alignedBuffer(8192).fill(0xab), 0);
      const b = alignedBuffer(8192, false);
      await expect(f.read(b, 0)).resolves.toBe(8192);
      expect(b.every((x) => x === 0xab)).toBe(true);
    } finally {
      await f.close();
    }
  });

  it('refuses sizes that are not positive integers', () => {
    expect(() => alignedBuffer(0)).toThrow(RangeError);
    expect(() => alignedBuffer(1.5)).toThrow(RangeError);
  });
});

describe('returnFreedMemory', () => {
  it('fixes the allocator mmap threshold, and refuses a silly one', () => {
    expect(returnFreedMemory(256 * 1024)).toBe(true);
    expect(() => returnFreedMemory(100)).toThrow(RangeError);
  });
});

describe('sdNotify', () => {
  const saved = process.env.NOTIFY_SOCKET;
  afterEach(() => {
    if (saved === undefined) delete process.env.NOTIFY_SOCKET;
    else process.env.NOTIFY_SOCKET = saved;
  });

  // Node has no Unix datagram sockets, so a small Python listener plays systemd.
  function listen(address: string): Promise<{ ready: Promise<void>; received: Promise<string> }> {
    const script = [
      'import socket,sys',
      'a=sys.argv[1]',
      "s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)",
      "s.bind('\\0'+a[1:] if a.startswith('@') else a)",
      "print('ready', flush=True)",
      's.settimeout(10)',
      "print(s.recv(4096).decode(), flush=True)",
    ].join('\n');
    const child = spawn('python3', ['-c', script, address], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    let markReady: () => void = () => {};
    const ready = new Promise<void>((r) => (markReady = r));
    const received = new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.startsWith('ready\n')) markReady();
      });
      child.on('exit', (code) => (code === 0 ? resolve(out.slice('ready\n'.length).trim()) : reject(new Error(`listener exit ${code}`))));
    });
    return Promise.resolve({ ready, received });
  }

  it('returns false when not run by systemd', () => {
    delete process.env.NOTIFY_SOCKET;
    expect(sdNotify('READY=1')).toBe(false);
  });

  it('sends one datagram to a socket path', async () => {
    const path = join(tempDir(), 'notify.sock');
    const l = await listen(path);
    await l.ready;
    process.env.NOTIFY_SOCKET = path;
    expect(sdNotify('READY=1\nSTATUS=listening')).toBe(true);
    expect(await l.received).toBe('READY=1\nSTATUS=listening');
  });

  it('sends to an abstract socket (@name)', async () => {
    const name = `@mtagent-test-${process.pid}-${Date.now()}`;
    const l = await listen(name);
    await l.ready;
    process.env.NOTIFY_SOCKET = name;
    expect(sdNotify('WATCHDOG=1')).toBe(true);
    expect(await l.received).toBe('WATCHDOG=1');
  });

  it('raises a named error when nobody listens', () => {
    process.env.NOTIFY_SOCKET = join(tempDir(), 'nobody.sock');
    expect(() => sdNotify('READY=1')).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'sendto' }));
  });
});

describe('discardPages', () => {
  it('gives back the whole pages inside a buffer: they read as zeros, the rest keeps its data, and the memory stays usable', () => {
    const buf = alignedBuffer(64 * 1024);
    buf.fill(0x5a);
    // A view from the middle of the first page to the middle of the last: only the pages wholly inside go.
    const view = buf.subarray(100, buf.length - 100);
    expect(discardPages(view)).toBe(64 * 1024 - 2 * 4096);
    expect(buf.subarray(0, 4096).every((x) => x === 0x5a)).toBe(true);
    expect(buf.subarray(4096, buf.length - 4096).every((x) => x === 0)).toBe(true);
    expect(buf.subarray(buf.length - 4096).every((x) => x === 0x5a)).toBe(true);
    expect(discardPages(buf.subarray(10, 20))).toBe(0);
    buf.fill(3);
    expect(buf.every((x) => x === 3)).toBe(true);
    expect(discardPages(buf)).toBe(64 * 1024);
    expect(buf.every((x) => x === 0)).toBe(true);
  });
});

describe('releaseBuffer', () => {
  const MiB = 1024 * 1024;
  const rssMiB = (): number => process.memoryUsage.rss() / MiB;

  it('frees a buffer that is the whole of its ArrayBuffer: every view of it is empty after', () => {
    const buf = Buffer.allocUnsafe(MiB).fill(1);
    const view = buf.subarray(10, 20);
    expect(releaseBuffer(buf)).toBe(MiB);
    expect(buf.length).toBe(0);
    expect(view.length).toBe(0);
    expect(buf.buffer.byteLength).toBe(0);
    expect(releaseBuffer(buf)).toBe(0);
  });

  it('leaves alone a view into a larger ArrayBuffer, and a small buffer from the shared pool', () => {
    const whole = Buffer.allocUnsafe(MiB).fill(2);
    expect(releaseBuffer(whole.subarray(0, MiB - 1))).toBe(0);
    expect(releaseBuffer(whole.subarray(1))).toBe(0);
    expect(whole.length).toBe(MiB);
    expect(whole.every((x) => x === 2)).toBe(true);
    const small = Buffer.from('a few bytes');
    expect(releaseBuffer(small)).toBe(0);
    expect(small.toString()).toBe('a few bytes');
  });

  it('gives the memory back while the buffers are still referenced (Node buffers and aligned ones)', async () => {
    returnFreedMemory(256 * 1024);
    const kept: Buffer[] = [];
    const before = rssMiB();
    for (let i = 0; i < 128; i++) {
      const b = i % 2 === 0 ? Buffer.allocUnsafe(2 * MiB) : alignedBuffer(2 * MiB, false);
      b.fill(i);
      expect(releaseBuffer(b)).toBe(2 * MiB);
      kept.push(b);
    }
    // An aligned buffer's memory is freed by its finalizer, which Node runs on the next turn of the loop.
    await new Promise((r) => setImmediate(r));
    // 256 MiB were written; without the release all of it would still be resident.
    expect(rssMiB() - before).toBeLessThan(64);
    expect(kept.every((b) => b.length === 0)).toBe(true);
  });
});
