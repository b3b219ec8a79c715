import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { StreamItem } from '../../../src/journal/items';
import { RecordKind } from '../../../src/journal/record';
import { rebuildAt } from '../../../src/recovery/rebuild';
import { DiskModel } from '../../helpers/disk-model';
import { KiB, MiB, fixture, openEngine, write } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const DISK = MiB;

function zeros(seq: number, offset: number, length: number): StreamItem {
  return { kind: 'write', seq, time: seq * 1_000_000, offset, data: Buffer.alloc(length), resync: false };
}

describe('before-images that are all zeros', () => {
  // On a fresh (sparse) target every before-image of the initial copy is
  // zeros; the undo log keeps its length only. A before-image with any byte
  // of data in it is kept whole.
  const items: StreamItem[] = [
    write('p', 1, 0, 64 * KiB), // a region never written: zeros
    write('p', 2, 32 * KiB, 64 * KiB), // half over seq 1, half never written: kept whole
    zeros(3, 0, 64 * KiB), // over data: kept whole
    write('p', 4, 0, 64 * KiB), // over the zeros seq 3 wrote
    write('p', 5, 512 * KiB, 512 * KiB), // never written
  ];
  const expected = [
    { seq: 1, zero: true, bytes: 64 * KiB },
    { seq: 2, zero: false, bytes: 64 * KiB },
    { seq: 3, zero: false, bytes: 64 * KiB },
    { seq: 4, zero: true, bytes: 64 * KiB },
    { seq: 5, zero: true, bytes: 512 * KiB },
  ];

  it.each([
    { steps: 'one step (the writes overlap within it)', together: true },
    { steps: 'a step per write', together: false },
  ])('are kept as a length in $steps, and every point rebuilds', async ({ together }) => {
    const root = tempDir();
    const model = new DiskModel(DISK);
    for (const it of items) model.add(it);
    const e = await openEngine(fixture(root, [{ id: 'p', sizeBytes: DISK }]));
    try {
      await e.openPair('p', DISK, 512);
      if (together) await e.append('p', items);
      else
        for (const it of items) {
          await e.append('p', [it]);
          await e.settle();
        }
      await e.settle();

      const undo = e.history('p').undo;
      const seen: Array<{ seq: number; zero: boolean; bytes: number; payload: number }> = [];
      for (const seg of undo.segments()) {
        for (const batch of await undo.readSegment(seg.segment)) {
          for (const r of batch.records) {
            if (r.kind !== RecordKind.UndoWrite && r.kind !== RecordKind.UndoZero) continue;
            const zero = r.kind === RecordKind.UndoZero;
            seen.push({ seq: r.seq, zero, bytes: zero ? r.count : r.payloadLength, payload: r.payloadLength });
          }
        }
      }
      expect(seen.map(({ seq, zero, bytes }) => ({ seq, zero, bytes }))).toEqual(expected);
      expect(seen.filter((s) => s.zero).every((s) => s.payload === 0)).toBe(true);
      expect(e.undoBytesWritten).toBe(2 * 64 * KiB);

      for (let seq = 0; seq <= items.length; seq++) {
        const r = await rebuildAt(e, { pairId: 'p', seq, time: null, spec: `seq:${seq}`, tag: null }, join(root, `at-${seq}.img`));
        expect(r.sha256, `seq ${seq}`).toBe(model.sha256At(seq));
      }
    } finally {
      await e.close();
    }
  });
});
