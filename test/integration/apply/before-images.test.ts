// Before-images only where a point can be rolled back to: none for the resync
// data of a pair with no recovery point before the resync (a new pair, the
// first resync after a commit), every one where the pair has points before it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Engine } from '../../../src/engine/engine';
import type { StreamItem } from '../../../src/journal/items';
import { BEFORE_IMAGE_NOT_KEPT, RecordKind } from '../../../src/journal/record';
import { PointRefusedError, resolvePoint } from '../../../src/recovery/points';
import { rebuild, timelineOf } from '../../../src/recovery/rebuild';
import { DiskModel } from '../../helpers/disk-model';
import { KiB, MiB, fixture, openEngine, payload, targetInUse, write } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const DISK = MiB;

const marker = (kind: 'resync-start' | 'resync-end', seq: number): StreamItem => ({ kind, seq, time: seq * 1_000_000 });
const resyncWrite = (seq: number, offset: number, length: number): StreamItem => ({ kind: 'write', seq, time: seq * 1_000_000, offset, data: payload('p', seq, length), resync: true });

/** An initial copy from `first`: resync-start, the disk in 64 KiB writes (and two short ones that leave most of a block), resync-end. */
function initialCopy(first: number): StreamItem[] {
  const items: StreamItem[] = [marker('resync-start', first)];
  let seq = first;
  for (let off = 0; off < DISK; off += 64 * KiB) items.push(resyncWrite(++seq, off, 64 * KiB));
  // Writes of 512 bytes inside 4 KiB blocks: the rest of each block is read, the write's before-image is not.
  items.push(resyncWrite(++seq, 4096 + 512, 512), resyncWrite(++seq, 8192 + 3584, 512));
  items.push(marker('resync-end', ++seq));
  return items;
}

/** Every undo record of a write, as (seq, kind, count or payload length). */
async function undoWrites(e: Engine): Promise<Array<{ seq: number; kind: number; bytes: number }>> {
  const undo = e.history('p').undo;
  const out: Array<{ seq: number; kind: number; bytes: number }> = [];
  for (const seg of undo.segments()) {
    for (const batch of await undo.readSegment(seg.segment)) {
      for (const r of batch.records) if (r.kind === RecordKind.UndoWrite || r.kind === RecordKind.UndoZero) out.push({ seq: r.seq, kind: r.kind, bytes: r.kind === RecordKind.UndoZero ? r.count : r.payloadLength });
    }
  }
  return out;
}

async function put(e: Engine, model: DiskModel, items: readonly StreamItem[]): Promise<void> {
  for (const it of items) model.add(it);
  await e.append('p', items);
}

describe('before-images', () => {
  it('are not kept for the initial copy of a new pair, which is applied exactly; the points begin at its end', async () => {
    const root = tempDir();
    const f = fixture(root, [{ id: 'p', sizeBytes: DISK }]);
    // A disk that held data before (a reprotect onto the original disk): its old content is no state of the source.
    const base = targetInUse(f, 'p', DISK);
    const model = new DiskModel(DISK, base);
    const e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      const copy = initialCopy(1);
      await put(e, model, copy);
      const end = copy.length;
      await put(e, model, [write('p', end + 1, 128 * KiB, 64 * KiB), write('p', end + 2, 160 * KiB, 4 * KiB)]);
      await e.settle();

      expect(readFileSync(f.options.pairs[0]?.target as string).equals(model.imageAt(end + 2))).toBe(true);
      // No before-image bytes at all for the copy; its writes have records (the seq chain) that say so.
      const records = await undoWrites(e);
      expect(records.filter((r) => r.seq < end)).toEqual(copy.filter((i) => i.kind === 'write').map((w) => ({ seq: w.seq, kind: RecordKind.UndoZero, bytes: BEFORE_IMAGE_NOT_KEPT })));
      expect(records.filter((r) => r.seq > end)).toEqual([
        { seq: end + 1, kind: RecordKind.UndoWrite, bytes: 64 * KiB },
        { seq: end + 2, kind: RecordKind.UndoWrite, bytes: 4 * KiB },
      ]);
      expect(e.undoBytesWritten).toBe(68 * KiB);
      // Read from the target for the copy: only what the two short writes leave of their blocks.
      expect(e.applyTimings.beforeImageBytesRead).toBeGreaterThanOrEqual(68 * KiB);
      expect(e.applyTimings.beforeImageBytesRead).toBeLessThanOrEqual(68 * KiB + 2 * 4 * KiB);
      expect(e.applyTimings.uncapturedBytes).toBe(DISK + 1024);

      const t = timelineOf(e, 'p');
      await expect(resolvePoint(t, 'seq:0')).rejects.toThrow(/the disk before the first item was not kept.*nearest valid points: oldest seq:\d+/);
      await expect(resolvePoint(t, 'seq:1')).rejects.toBeInstanceOf(PointRefusedError);
      await expect(resolvePoint(t, `seq:${end - 1}`)).rejects.toThrow(/inside a resync window.*nearest valid points: after the resync seq:\d+/);
      for (const seq of [end, end + 1, end + 2]) {
        expect((await rebuild(e, 'p', `seq:${seq}`, join(root, `at-${seq}.img`))).sha256, `seq ${seq}`).toBe(model.sha256At(seq));
      }
    } finally {
      await e.close();
    }
  });

  it('are kept for a resync over history, and every point before it still rebuilds', async () => {
    const root = tempDir();
    const f = fixture(root, [{ id: 'p', sizeBytes: DISK }]);
    const model = new DiskModel(DISK);
    const e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      const copy = initialCopy(1);
      await put(e, model, copy);
      let seq = copy.length;
      const history: StreamItem[] = [];
      for (let i = 0; i < 10; i++) history.push(write('p', ++seq, ((i * 7) % 16) * 64 * KiB, 16 * KiB));
      await put(e, model, history);
      const lastBefore = seq;
      // A delta resync: a few blocks differ.
      await put(e, model, [marker('resync-start', ++seq), resyncWrite(++seq, 0, 64 * KiB), resyncWrite(++seq, 512 * KiB, 64 * KiB), marker('resync-end', ++seq)]);
      await e.settle();

      const records = await undoWrites(e);
      expect(records.filter((r) => r.seq > lastBefore).map((r) => r.kind)).toEqual([RecordKind.UndoWrite, RecordKind.UndoWrite]);
      for (let s = copy.length; s <= lastBefore; s++) {
        expect((await rebuild(e, 'p', `seq:${s}`, join(root, `at-${s}.img`))).sha256, `seq ${s}`).toBe(model.sha256At(s));
      }
      await expect(resolvePoint(timelineOf(e, 'p'), `seq:${lastBefore + 2}`)).rejects.toThrow(new RegExp(`inside a resync window.*before the resync seq:${lastBefore}.*after the resync seq:${seq}`));
    } finally {
      await e.close();
    }
  });

  it('are not kept for the first resync after a commit, nor after a restart in the middle of it', async () => {
    const root = tempDir();
    const f = fixture(root, [{ id: 'p', sizeBytes: DISK }]);
    const model = new DiskModel(DISK);
    let e = await openEngine(f);
    let seq = 0;
    try {
      await e.openPair('p', DISK, 512);
      for (; seq < 20; ) await put(e, model, [write('p', ++seq, (seq % 16) * 64 * KiB, 64 * KiB)]);
      await e.settle();
      await e.failover('p', 10);
      await e.commit('p');
      // The committed target is no state of the source: no point until a resync ends.
      await expect(resolvePoint(timelineOf(e, 'p'), 'latest')).rejects.toThrow(/dropped by a commit/);
      await e.openPair('p', DISK, 512);
      const undoBefore = e.undoBytesWritten;
      await put(e, model, [marker('resync-start', ++seq), resyncWrite(++seq, 0, 256 * KiB)]);
      await e.settle();
      expect(e.undoBytesWritten).toBe(undoBefore);
    } finally {
      await e.close();
    }
    // Restarted inside the window: its writes go on without before-images.
    e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      const undoBefore = e.undoBytesWritten;
      await put(e, model, [resyncWrite(++seq, 256 * KiB, 768 * KiB), marker('resync-end', ++seq), write('p', ++seq, 0, 4 * KiB)]);
      await e.settle();
      expect(e.undoBytesWritten - undoBefore).toBe(4 * KiB);
      expect(e.applyTimings.uncapturedBytes).toBe(768 * KiB);
      // The rolled-back target was overwritten whole by the resync: the model's image holds.
      expect((await rebuild(e, 'p', `seq:${seq - 1}`, join(root, 'end.img'))).sha256).toBe(model.sha256At(seq - 1));
      expect((await rebuild(e, 'p', 'latest', join(root, 'latest.img'))).sha256).toBe(model.sha256At(seq));
      await expect(resolvePoint(timelineOf(e, 'p'), 'seq:20')).rejects.toThrow(/dropped by a commit/);
    } finally {
      await e.close();
    }
  });
});
