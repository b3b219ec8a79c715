// The catalog (SQLite in dataDir) on a filesystem that fills up, for real: an
// ext4 volume on a loop device (root only; skipped where one cannot be
// mounted). The applier's catalog write fails with SQLITE_FULL after the step
// is on the target; the tags of that step must not be lost to the running
// daemon, and applying must resume once the catalog can be written.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { StreamItem } from '../../../src/journal/items';
import { rebuild } from '../../../src/recovery/rebuild';
import { DiskModel } from '../../helpers/disk-model';
import { KiB, MiB, fixture, openEngine, write } from '../../helpers/engine-fixture';
import { canMountScratchVolumes, mountScratchVolume } from '../../helpers/loop-volume';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const DISK = 4 * MiB;

describe.runIf(canMountScratchVolumes())('a dataDir that fills up', () => {
  it('pauses applying with a named error, keeps every tag of the step it could not record, and records them once there is room', async () => {
    const volume = mountScratchVolume(16 * MiB);
    const dataDir = join(volume.path, 'data');
    mkdirSync(dataDir);
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }], { dataDir });
    const model = new DiskModel(DISK);
    const e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      let seq = 0;
      const tagNames: string[] = [];
      const send = async (count: number): Promise<void> => {
        const items: StreamItem[] = [];
        for (let i = 0; i < count; i++) {
          seq++;
          const item: StreamItem =
            seq % 3 === 0 ? { kind: 'tag', seq, time: seq * 1_000_000, tagKind: 'app', name: `vss-${seq}`, group: null } : write('p', seq, ((seq * 7) % 1024) * 4 * KiB, 4 * KiB);
          if (item.kind === 'tag') tagNames.push(item.name);
          model.add(item);
          items.push(item);
        }
        await e.append('p', items);
      };
      await send(30);
      await e.settle();

      const filler = join(volume.path, 'filler');
      const free = statfsSync(volume.path);
      execFileSync('fallocate', ['-l', String(free.bavail * free.bsize), filler]);
      // The catalog's WAL grows with each step: it soon needs a block the volume does not have.
      for (let round = 0; round < 300 && e.status('p').lastError === null; round++) {
        await send(30);
        await new Promise((r) => setTimeout(r, 10));
      }
      const stuck = e.status('p');
      expect(stuck.state).toBe('error');
      expect(stuck.lastError).toMatch(new RegExp(`^the catalog in ${dataDir} could not be written \\(database or disk is full\\); applying resumes once it can$`));
      const lastSent = seq;
      // The step whose write failed is on the target, its tags not yet in the catalog.
      const inCatalog = new Set(e.catalog.tags('p').map((t) => t.name));
      const unrecorded = tagNames.filter((name) => Number(name.slice(4)) <= stuck.appliedSeq && !inCatalog.has(name));
      expect(unrecorded.length).toBeGreaterThan(0);

      rmSync(filler);
      await e.waitApplied('p', lastSent, 10_000);
      for (let waited = 0; e.status('p').lastError !== null && waited < 5000; waited += 20) await new Promise((r) => setTimeout(r, 20));
      expect(e.status('p')).toMatchObject({ appliedSeq: lastSent, lastError: null });
      // Every tag is in the catalog, those of the step whose write failed too, and each of those rebuilds.
      expect(e.catalog.tags('p').map((t) => t.name)).toEqual(tagNames);
      for (const name of unrecorded) {
        const at = Number(name.slice(4));
        expect((await rebuild(e, 'p', `tag:${name}`, join(f.root, `${name}.img`))).sha256).toBe(model.sha256At(at));
      }
    } finally {
      await e.close();
      volume.remove();
    }
  });
});
