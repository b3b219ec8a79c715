import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { StreamItem } from '../../../src/journal/items';
import { resolvePoint } from '../../../src/recovery/points';
import { catchUp, rebuild, timelineOf } from '../../../src/recovery/rebuild';
import { DiskModel } from '../../helpers/disk-model';
import { KiB, MiB, fixture, openEngine, write } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const DISK = MiB;
const iso = (us: number): string => new Date(us / 1000).toISOString();

describe('a point given as a time', () => {
  it('is the newest state at or before it, and a time outside the history is refused naming the nearest points', async () => {
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }]);
    const e = await openEngine(f);
    const model = new DiskModel(DISK);
    const t0 = Date.parse('2026-11-26T18:00:00Z') * 1000;
    try {
      await e.openPair('p', DISK, 512);
      // Writes at t0 + 10 s, + 20 s, … + 50 s, then a tick at + 60 s: the source's clock.
      const items: StreamItem[] = [];
      for (let s = 1; s <= 5; s++) items.push(write('p', s, s * 4 * KiB, 4 * KiB, t0 + s * 10_000_000));
      items.push({ kind: 'tick', seq: 6, time: t0 + 60_000_000 });
      for (const it of items) model.add(it);
      await e.append('p', items);
      await catchUp(e, 'p');
      const at = async (time: number): Promise<number> => (await resolvePoint(timelineOf(e, 'p'), iso(time))).seq;

      expect(await at(t0 + 10_000_000)).toBe(1);
      expect(await at(t0 + 35_000_000)).toBe(3);
      expect(await at(t0 + 60_000_000)).toBe(6);
      expect((await rebuild(e, 'p', iso(t0 + 35_000_000), join(f.root, 'at-3.img'))).sha256).toBe(model.sha256At(3));

      // Before the first item: nobody can say what the disk held then.
      await expect(at(t0)).rejects.toThrow(/is before the retained history of p; nearest valid points: oldest seq:0.*latest seq:6/);
      await expect(at(Date.parse('1999-01-01T00:00:00Z') * 1000)).rejects.toMatchObject({ code: 'point-refused' });
      // After the newest item, its tick included: the disk at that moment is not known yet.
      await expect(at(t0 + 61_000_000)).rejects.toThrow(
        new RegExp(`is after the newest item of p \\(seq 6, ${iso(t0 + 60_000_000).replace('.', '\\.')}\\): nobody knows the disk at that moment yet; nearest valid points: .*latest seq:6`),
      );
    } finally {
      await e.close();
    }
  });
});
