// The view's read against a write that lands on the target while it reads:
// the before-image is durable (and indexed) first, so the read takes it
// instead of the newer bytes. A target stand-in does the applier's two steps
// in the middle of the read, so the race happens every time.
import { describe, expect, it } from 'vitest';
import type { TargetDisk } from '../../../src/apply/target';
import { RecordKind } from '../../../src/journal/record';
import { UndoLog } from '../../../src/journal/undo-log';
import { PointView } from '../../../src/recovery/point-view';
import { KiB } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const DISK = 64 * KiB;

describe('point view', () => {
  it('reads a range the applier writes over during the read as it was at the point', async () => {
    const undo = await UndoLog.open(tempDir(), 'p', 1024 * KiB);
    const disk = Buffer.alloc(DISK, 0x11);
    let raced = false;
    const target = {
      sizeBytes: DISK,
      async readFully(buf: Buffer, offset: number): Promise<void> {
        if (!raced) {
          raced = true;
          // The applier, mid-read: the before-image of seq 1 made durable, then the target written over.
          await undo.append([{ fields: { kind: RecordKind.UndoWrite, flags: 0, pairId: 'p', seq: 1, time: 1, offset: 8 * KiB }, payload: disk.subarray(8 * KiB, 12 * KiB) }], { seq: 0, time: 0 });
          disk.fill(0x22, 8 * KiB, 12 * KiB);
        }
        disk.copy(buf, 0, offset, offset + buf.length);
      },
    } as unknown as TargetDisk;
    const view = await PointView.open({ pairId: 'p', diskBytes: DISK, target, undo }, 0);
    try {
      const got = await view.read(0, DISK);
      expect(raced).toBe(true);
      expect(got.equals(Buffer.alloc(DISK, 0x11))).toBe(true);
      // Later reads take the before-image straight away.
      expect((await view.read(8 * KiB, 4 * KiB)).equals(Buffer.alloc(4 * KiB, 0x11))).toBe(true);
      expect(view.indexedExtents).toBe(1);
    } finally {
      await view.close();
      await undo.close();
    }
  });

  it('indexes only before-images after its point, from their headers, an earlier one winning', async () => {
    const undo = await UndoLog.open(tempDir(), 'p', 1024 * KiB);
    const img = (seq: number, offset: number, bytes: number, fill: number) => ({ fields: { kind: RecordKind.UndoWrite, flags: 0, pairId: 'p', seq, time: seq, offset }, payload: Buffer.alloc(bytes, fill) });
    await undo.append([img(1, 0, 8 * KiB, 1), img(2, 4 * KiB, 8 * KiB, 2)], { seq: 0, time: 0 });
    await undo.append([img(3, 0, 16 * KiB, 3), { fields: { kind: RecordKind.UndoZero, flags: 0, pairId: 'p', seq: 4, time: 4, offset: 32 * KiB, count: 4 * KiB } }], { seq: 2, time: 2 });
    const disk = Buffer.alloc(DISK, 9);
    const target = { sizeBytes: DISK, readFully: async (buf: Buffer, offset: number) => void disk.copy(buf, 0, offset, offset + buf.length) } as unknown as TargetDisk;
    const view = await PointView.open({ pairId: 'p', diskBytes: DISK, target, undo }, 1);
    try {
      // After seq 1: seq 2's image over 4-12 KiB, seq 3's over the rest of 0-16 KiB, seq 4's zeros at 32 KiB.
      const got = await view.read(0, DISK);
      const want = Buffer.alloc(DISK, 9);
      want.fill(3, 0, 4 * KiB);
      want.fill(2, 4 * KiB, 12 * KiB);
      want.fill(3, 12 * KiB, 16 * KiB);
      want.fill(0, 32 * KiB, 36 * KiB);
      expect(got.equals(want)).toBe(true);
      expect(view.built.beforeImages).toBe(3);
    } finally {
      await view.close();
      await undo.close();
    }
  });
});
