import { execFileSync } from 'node:child_process';
import { rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { rebuild, rebuildAt } from '../../../src/recovery/rebuild';
import { DiskModel } from '../../helpers/disk-model';
import { MiB, fixture, openEngine, write } from '../../helpers/engine-fixture';
import { canMountScratchVolumes, mountScratchVolume } from '../../helpers/loop-volume';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();

describe('rebuildAt', () => {
  // While a pair is applied, a step's writes land on the target before its seq
  // counts as applied. A rebuild whose copy of the target caught such writes
  // must undo them too. The 30-minute soak once rebuilt a point with them left
  // in (1 of 294 points); here the state is set up directly: every write has
  // landed, but the applied seq is put back as if the last steps had not been
  // counted yet.
  it('undoes writes that landed on the target before their seq counted as applied', async () => {
    const root = tempDir();
    const DISK = MiB;
    const model = new DiskModel(DISK);
    const e = await openEngine(fixture(root, [{ id: 'p', sizeBytes: DISK }]));
    try {
      await e.openPair('p', DISK, 512);
      for (let s = 1; s <= 12; s++) {
        // Writes 7-12 overwrite blocks of 1-6.
        const it = write('p', s, ((s - 1) % 6) * 64 * 1024, 64 * 1024);
        model.add(it);
        await e.append('p', [it]);
      }
      await e.settle();
      const pair = e['core'].pairs.get('p');
      if (pair === undefined) throw new Error('no pair p');
      expect(pair.appliedSeq).toBe(12);
      pair.appliedSeq = 8;
      expect(e.history('p').rollbackFromSeq).toBe(12);

      const r = await rebuildAt(e, { pairId: 'p', seq: 5, time: null, spec: 'seq:5', tag: null }, join(root, 'at-5.img'));
      expect(r.sha256).toBe(model.sha256At(5));
      pair.appliedSeq = 12;
    } finally {
      await e.close();
    }
  });
});

// An image-file target on a real filesystem that fills up (root only: an ext4
// volume on a loop device). Writes to it fail with ENOSPC while the target
// stays attached, so applying pauses and items stay journaled.
describe.runIf(canMountScratchVolumes())('rebuild while applying is paused', () => {
  it('refuses points the target does not hold yet, saying why, at once; rebuilds the rest; and all of them once applying resumes', async () => {
    const root = tempDir();
    const volume = mountScratchVolume(32 * MiB);
    const DISK = 8 * MiB;
    const model = new DiskModel(DISK);
    const e = await openEngine(fixture(root, [{ id: 'p', sizeBytes: DISK, target: join(volume.path, 'p.img') }]));
    try {
      await e.openPair('p', DISK, 512);
      const filler = join(volume.path, 'filler');
      const free = statfsSync(volume.path);
      execFileSync('fallocate', ['-l', String(free.bavail * free.bsize - MiB), filler]);
      // 3 MiB of new blocks onto a sparse target with 1 MiB of room left.
      for (let s = 1; s <= 48; s++) {
        const it = write('p', s, (s - 1) * 64 * 1024, 64 * 1024);
        model.add(it);
        await e.append('p', [it]);
      }
      for (let waited = 0; e.status('p').state !== 'error' && waited < 10_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
      const paused = e.status('p');
      expect(paused).toMatchObject({ state: 'error', durableSeq: 48 });
      expect(paused.lastError).toMatch(/ENOSPC/);
      expect(paused.appliedSeq).toBeLessThan(48);

      const began = Date.now();
      await expect(rebuild(e, 'p', 'latest', join(root, 'latest.img'))).rejects.toThrow(
        /latest \(seq 48\) of p is durable but not on the target yet, and applying is paused \(.*ENOSPC.*\).*nearest valid points: .*latest seq:/,
      );
      await expect(rebuild(e, 'p', 'seq:48', join(root, 'newest.img'))).rejects.toMatchObject({ code: 'point-refused' });
      expect(Date.now() - began).toBeLessThan(5000);
      const applied = e.status('p').appliedSeq;
      if (applied > 0) expect((await rebuild(e, 'p', `seq:${applied}`, join(root, 'applied.img'))).sha256).toBe(model.sha256At(applied));

      rmSync(filler);
      await e.waitApplied('p', 48, 10_000);
      // The error is cleared once the catch-up that applied seq 48 has ended.
      for (let waited = 0; e.status('p').lastError !== null && waited < 5000; waited += 20) await new Promise((r) => setTimeout(r, 20));
      expect(e.status('p')).toMatchObject({ appliedSeq: 48, lastError: null });
      expect((await rebuild(e, 'p', 'latest', join(root, 'after.img'))).sha256).toBe(model.sha256At(48));
    } finally {
      await e.close();
      volume.remove();
    }
  });
});
