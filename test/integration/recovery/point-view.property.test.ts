// The disk at a point, read in place while the applier keeps writing the
// target: random streams, random points, random ranges read during the
// writes that follow, each compared with the model's disk at the point.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { StreamItem } from '../../../src/journal/items';
import { PointView } from '../../../src/recovery/point-view';
import { DiskModel } from '../../helpers/disk-model';
import { KiB, fixture, openEngine, payload, targetInUse } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const DISK = 256 * KiB;
const SECTOR = 512;

const writeArb = fc.record({ sector: fc.nat({ max: DISK / SECTOR - 1 }), sectors: fc.integer({ min: 1, max: 64 }), zeros: fc.boolean() });

function writes(from: number, specs: ReadonlyArray<{ sector: number; sectors: number; zeros: boolean }>): StreamItem[] {
  return specs.map((w, i) => {
    const seq = from + i;
    const sectors = Math.min(w.sectors, DISK / SECTOR - w.sector);
    return { kind: 'write', seq, time: seq * 1_000_000, offset: w.sector * SECTOR, data: w.zeros ? Buffer.alloc(sectors * SECTOR) : payload('p', seq, sectors * SECTOR), resync: false };
  });
}

describe('the disk at a point, read in place', () => {
  it('is the model disk at the point, whatever the applier writes meanwhile', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(writeArb, { minLength: 1, maxLength: 60 }),
        fc.array(writeArb, { minLength: 1, maxLength: 80 }),
        fc.nat(),
        fc.array(fc.record({ sector: fc.nat({ max: DISK / SECTOR - 1 }), sectors: fc.integer({ min: 1, max: 256 }) }), { minLength: 4, maxLength: 12 }),
        async (before, after, pick, reads) => {
          const root = tempDir();
          // Small cycles and segments: many steps, undo segments that roll.
          const f = fixture(root, [{ id: 'p', sizeBytes: DISK }], { undoSegmentBytes: 96 * KiB, cycleBytes: 16 * KiB, maxBatchBytes: 32 * KiB, ingestSegmentBytes: 128 * KiB });
          const model = new DiskModel(DISK, targetInUse(f, 'p', DISK));
          const e = await openEngine(f);
          try {
            await e.openPair('p', DISK, SECTOR);
            const first = writes(1, before);
            for (const it of first) model.add(it);
            await e.append('p', first);
            await e.settle();
            const point = pick % (first.length + 1);
            const h = e.history('p');
            const view = await PointView.open({ pairId: 'p', diskBytes: DISK, target: h.target as NonNullable<typeof h.target>, undo: h.undo }, point);
            try {
              const expected = model.imageAt(point);
              // The stream goes on while the view is read.
              const more = writes(first.length + 1, after);
              const streaming = (async () => {
                for (let i = 0; i < more.length; i += 4) await e.append('p', more.slice(i, i + 4));
                await e.settle();
              })();
              for (const r of reads) {
                const offset = r.sector * SECTOR;
                const length = Math.min(r.sectors * SECTOR, DISK - offset);
                const got = await view.read(offset, length);
                expect(got.equals(expected.subarray(offset, offset + length)), `read ${offset}+${length} at seq ${point}`).toBe(true);
              }
              await streaming;
              // Once everything is applied, the whole disk once more.
              expect((await view.read(0, DISK)).equals(expected)).toBe(true);
            } finally {
              await view.close();
            }
          } finally {
            await e.close();
          }
        },
      ),
      { numRuns: 20 },
    );
  }, 120_000);
});
