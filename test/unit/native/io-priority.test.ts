import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockFile, IoPriority, alignedBuffer } from '../../../src/native';
import { piecesOf } from '../../../src/native/io-priority';
import { useTempDir } from '../../helpers/temp-dir';

const MiB = 1024 * 1024;
const tempDir = useTempDir();

describe('piecesOf', () => {
  it('cuts buffers written back to back into runs of at most the piece size, in order', () => {
    const buffers = [Buffer.alloc(10, 1), Buffer.alloc(3, 2), Buffer.alloc(8, 3)];
    const pieces = piecesOf(buffers, 8);
    expect(pieces.map((p) => p.reduce((n, b) => n + b.length, 0))).toEqual([8, 8, 5]);
    expect(Buffer.concat(pieces.flat()).equals(Buffer.concat(buffers))).toBe(true);
    expect(piecesOf([], 8)).toEqual([]);
  });
});

describe('background I/O giving way to foreground I/O', () => {
  it('waits between pieces while a foreground write or flush is in flight, and only while asked to', async () => {
    let givingWay = false;
    const priority = new IoPriority(() => givingWay);
    const f = await BlockFile.open(join(tempDir(), 'bg.bin'), { create: true, direct: true, maxIoBytes: MiB, priority });
    try {
      const data = alignedBuffer(4 * MiB);
      data.fill(7);
      let releaseForeground = (): void => undefined;
      const foreground = priority.foreground(() => new Promise<void>((resolve) => (releaseForeground = resolve)));
      givingWay = true;
      let written = false;
      const background = f.write(data, 0).then(() => (written = true));
      await new Promise((r) => setTimeout(r, 100));
      expect(written).toBe(false);
      releaseForeground();
      await foreground;
      await background;
      const back = alignedBuffer(4 * MiB);
      expect(await f.read(back, 0)).toBe(4 * MiB);
      expect(back.equals(data)).toBe(true);

      // Not asked to give way (the applier must catch up): it goes at once.
      const again = priority.foreground(() => new Promise<void>((resolve) => (releaseForeground = resolve)));
      givingWay = false;
      await f.write(data, 4 * MiB);
      releaseForeground();
      await again;
    } finally {
      await f.close();
    }
  });
});
