import { readdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Engine } from '../../../src/engine/engine';
import type { StreamItem } from '../../../src/journal/items';
import { undoDir } from '../../../src/journal/undo-log';
import { PointRefusedError, isoTime } from '../../../src/recovery/points';
import { rebuild } from '../../../src/recovery/rebuild';
import { verifyPair } from '../../../src/recovery/verify';
import { DiskModel } from '../../helpers/disk-model';
import { KiB, MiB, fixture, openEngine, targetInUse, write } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const DISK = 2 * MiB;
const HOUR = 3600 * 1_000_000;

async function stream(e: Engine, model: DiskModel, from: number, to: number, timeOf: (s: number) => number): Promise<void> {
  for (let s = from; s <= to; s++) {
    const it: StreamItem = write('p', s, ((s * 13) % (DISK / (16 * KiB))) * 16 * KiB, 16 * KiB, timeOf(s));
    model.add(it);
    await e.append('p', [it]);
  }
}

describe('retention window', () => {
  it('drops history older than retentionSeconds by source time, and refuses points before it', async () => {
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }], { policy: { retentionSeconds: 2 * 3600, rpoThresholdSeconds: 900 } });
    const model = new DiskModel(DISK, targetInUse(f, 'p', DISK));
    const e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      // 100 items over 10 hours of source time.
      const t0 = 1_764_000_000_000_000;
      await stream(e, model, 1, 100, (s) => t0 + s * (HOUR / 10));
      await e.settle();
      expect(e.status('p').oldestSeq).toBe(0);
      const dropped = await e.pruneByTime();
      expect(dropped).toBeGreaterThan(0);
      const s = e.status('p');
      // The window is 2 h = 20 items: everything older may go, nothing inside it.
      expect(s.oldestSeq).toBeLessThanOrEqual(80);
      expect(s.oldestSeq).toBeGreaterThan(40);
      const oldestIso = isoTime(s.oldestTime) as string;
      expect(oldestIso).toBe(new Date((t0 + s.oldestSeq * (HOUR / 10)) / 1000).toISOString());
      await expect(rebuild(e, 'p', 'seq:10', join(f.root, 'old.img'))).rejects.toThrow(PointRefusedError);
      await expect(rebuild(e, 'p', 'seq:10', join(f.root, 'old.img'))).rejects.toThrow(/outside the retained history.*nearest valid points: oldest seq:/);
      for (const seq of [s.oldestSeq, 80, 99, 100]) {
        const r = await rebuild(e, 'p', `seq:${seq}`, join(f.root, `at-${seq}.img`));
        expect(r.sha256).toBe(model.sha256At(seq));
      }
      // By time: 9 hours in is seq 90.
      const r = await rebuild(e, 'p', new Date((t0 + 9 * HOUR) / 1000).toISOString(), join(f.root, 'nine.img'));
      expect(r.seq).toBe(90);
      expect(r.sha256).toBe(model.sha256At(90));
      expect((await verifyPair(e, 'p')).ok).toBe(true);
    } finally {
      await e.close();
    }
  });

  it('keeps a segment dropped for time as a spare, counted as used, and writes the next segment into it', async () => {
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }], { policy: { retentionSeconds: 2 * 3600, rpoThresholdSeconds: 900 } });
    const dir = undoDir(f.options.retentionDir, 'p');
    const spares = (): string[] => readdirSync(dir).filter((n) => n.startsWith('spare-'));
    const onDisk = (): number => readdirSync(dir).reduce((n, name) => n + statSync(join(dir, name)).size, 0);
    const model = new DiskModel(DISK, targetInUse(f, 'p', DISK));
    const t0 = 1_764_000_000_000_000;
    let e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      await stream(e, model, 1, 100, (s) => t0 + s * (HOUR / 10));
      await e.settle();
      expect(await e.pruneByTime()).toBeGreaterThan(1);
      // One spare kept, the other dropped segments deleted; the spare counts as used space.
      expect(spares()).toHaveLength(1);
      const spareInode = statSync(join(dir, spares()[0] as string)).ino;
      expect((await e.space()).undoBytes).toBe(onDisk());
      await stream(e, model, 101, 160, (s) => t0 + s * (HOUR / 10));
      await e.settle();
      expect(spares()).toHaveLength(0);
      expect(readdirSync(dir).map((n) => statSync(join(dir, n)).ino)).toContain(spareInode);
      for (const seq of [e.status('p').oldestSeq, 120, 160]) {
        expect((await rebuild(e, 'p', `seq:${seq}`, join(f.root, `at-${seq}.img`), { force: true })).sha256).toBe(model.sha256At(seq));
      }
      expect((await verifyPair(e, 'p')).ok).toBe(true);
      // Dropped again and restarted with the spare on the volume: history reads back whole.
      expect(await e.pruneByTime()).toBeGreaterThan(0);
      expect(spares()).toHaveLength(1);
      await e.close();
      e = await openEngine(f);
      expect((await e.space()).undoBytes).toBe(onDisk());
      const oldest = e.status('p').oldestSeq;
      for (const seq of [oldest, 160]) {
        expect((await rebuild(e, 'p', `seq:${seq}`, join(f.root, `again-${seq}.img`), { force: true })).sha256).toBe(model.sha256At(seq));
      }
      await e.openPair('p', DISK, 512);
      await stream(e, model, 161, 200, (s) => t0 + s * (HOUR / 10));
      await e.settle();
      expect(spares()).toHaveLength(0);
      expect((await rebuild(e, 'p', 'latest', join(f.root, 'latest.img'), { force: true })).sha256).toBe(model.sha256At(200));
    } finally {
      await e.close();
    }
  });

  it('deletes spare undo segments before it shortens history for space', async () => {
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }, { id: 'q', sizeBytes: DISK }], { maxBytes: 6 * MiB, policy: { retentionSeconds: 2 * 3600, rpoThresholdSeconds: 900 } });
    const spares = (): string[] => readdirSync(undoDir(f.options.retentionDir, 'p')).filter((n) => n.startsWith('spare-'));
    const model = new DiskModel(DISK, targetInUse(f, 'p', DISK));
    const other = new DiskModel(DISK, targetInUse(f, 'q', DISK));
    const t0 = 1_764_000_000_000_000;
    const e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      await e.openPair('q', DISK, 512);
      await stream(e, model, 1, 100, (s) => t0 + s * (HOUR / 10));
      await e.settle();
      await e.pruneByTime();
      expect(spares()).toHaveLength(1);
      // p is quiet from here; q fills the volume.
      for (let s = 1; s <= 300; s++) {
        const it: StreamItem = write('q', s, ((s * 7) % (DISK / (16 * KiB))) * 16 * KiB, 16 * KiB, t0 + 11 * HOUR + s * 1_000_000);
        other.add(it);
        await e.append('q', [it]);
      }
      await e.settle();
      expect(spares()).toHaveLength(0);
      expect((await e.space()).usedBytes).toBeLessThanOrEqual(6 * MiB);
      expect((await rebuild(e, 'p', 'latest', join(f.root, 'p.img'))).sha256).toBe(model.sha256At(100));
      expect((await rebuild(e, 'q', 'latest', join(f.root, 'q.img'))).sha256).toBe(other.sha256At(300));
    } finally {
      await e.close();
    }
  });

  it('shortens history for space, records it, and loses no acknowledged item', async () => {
    // Room for the ingest log's two segments and a few undo segments only.
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }], { maxBytes: 4 * MiB });
    const model = new DiskModel(DISK);
    const e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      await stream(e, model, 1, 400, (s) => 1_764_000_000_000_000 + s * 1_000_000);
      await e.settle();
      const space = await e.space();
      expect(space.usedBytes).toBeLessThanOrEqual(4 * MiB);
      const s = e.status('p');
      expect(s.durableSeq).toBe(400);
      expect(s.oldestSeq).toBeGreaterThan(0);
      expect(e.catalog.events().filter((ev) => ev.kind === 'history-shortened').length).toBeGreaterThan(0);
      expect((await rebuild(e, 'p', 'latest', join(f.root, 'latest.img'))).sha256).toBe(model.sha256At(400));
      expect((await rebuild(e, 'p', `seq:${s.oldestSeq}`, join(f.root, 'oldest.img'))).sha256).toBe(model.sha256At(s.oldestSeq));
    } finally {
      await e.close();
    }
  });

  it('answers retention-full when nothing can be pruned and the applier cannot drain, keeping what it acknowledged', async () => {
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }], { maxBytes: 3 * MiB, spaceWaitMs: 600 });
    const model = new DiskModel(DISK);
    const e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      await stream(e, model, 1, 5, (s) => s * 1_000_000);
      await e.settle();
      const target = join(f.root, 'datastore', 'p.img');
      renameSync(target, `${target}.away`);
      let acked = 5;
      let refusal: unknown = null;
      let waited = 0;
      for (let s = 6; s < 1000 && refusal === null; s++) {
        const it = write('p', s, 0, 16 * KiB, s * 1_000_000);
        const began = Date.now();
        try {
          await e.append('p', [it]);
          model.add(it);
          acked = s;
        } catch (err) {
          refusal = err;
          waited = Date.now() - began;
        }
      }
      expect(refusal).toMatchObject({ code: 'retention-full', seq: acked + 1 });
      expect(waited).toBeGreaterThanOrEqual(600);
      expect(e.status('p').durableSeq).toBe(acked);
      // While the volume stays full, the resent item is refused at once: before the wait it would otherwise sit out again.
      await e.openPair('p', DISK, 512);
      const resent = e.append('p', [write('p', acked + 1, 0, 16 * KiB, (acked + 1) * 1_000_000)]).then(
        () => 'accepted',
        (err: unknown) => (err as { code?: string }).code,
      );
      const anotherWait = new Promise((r) => setTimeout(() => r('waited again'), 600));
      expect(await Promise.race([resent, anotherWait])).toBe('retention-full');
      // The target returns: everything acknowledged is applied, and the stream resumes.
      renameSync(`${target}.away`, target);
      await e.waitApplied('p', acked, 10_000);
      expect((await rebuild(e, 'p', 'latest', join(f.root, 'after.img'))).sha256).toBe(model.sha256At(acked));
      await e.openPair('p', DISK, 512);
      expect(await e.append('p', [write('p', acked + 1, 0, 4096, (acked + 1) * 1_000_000)])).toBe(acked + 1);
    } finally {
      await e.close();
    }
  });

  it('prunes by time only up to a held point, and then on past it once released', async () => {
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }], { policy: { retentionSeconds: 2 * 3600, rpoThresholdSeconds: 900 } });
    const model = new DiskModel(DISK, targetInUse(f, 'p', DISK));
    const e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      const t0 = 1_764_000_000_000_000;
      await stream(e, model, 1, 100, (s) => t0 + s * (HOUR / 10));
      await e.settle();
      const release = e.holdPoint('p', 30, { scratchBytes: () => 12345, onRevoked: () => undefined });
      await e.pruneByTime();
      expect(e.status('p').oldestSeq).toBeLessThanOrEqual(30);
      expect((await rebuild(e, 'p', 'seq:30', join(f.root, 'held.img'))).sha256).toBe(model.sha256At(30));
      // The hold's scratch counts as used space.
      expect((await e.space()).scratchBytes).toBe(12345);
      release();
      await e.pruneByTime();
      expect(e.status('p').oldestSeq).toBeGreaterThan(40);
      expect((await e.space()).scratchBytes).toBe(0);
    } finally {
      await e.close();
    }
  });

  it('revokes a held point, not replication, when space runs short and only its history is left', async () => {
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }], { maxBytes: 4 * MiB });
    const model = new DiskModel(DISK);
    const e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      await stream(e, model, 1, 20, (s) => 1_764_000_000_000_000 + s * 1_000_000);
      await e.settle();
      const revoked: string[] = [];
      e.holdPoint('p', 10, { scratchBytes: () => 0, onRevoked: (why) => revoked.push(why) });
      await stream(e, model, 21, 400, (s) => 1_764_000_000_000_000 + s * 1_000_000);
      await e.settle();
      expect(revoked).toHaveLength(1);
      expect(revoked[0]).toMatch(/short of space/);
      const s = e.status('p');
      expect(s.durableSeq).toBe(400);
      expect(s.oldestSeq).toBeGreaterThan(10);
      expect((await rebuild(e, 'p', 'latest', join(f.root, 'latest.img'))).sha256).toBe(model.sha256At(400));
    } finally {
      await e.close();
    }
  });
});
