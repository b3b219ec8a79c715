import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { TargetDisk } from '../../../src/apply/target';
import type { StreamItem } from '../../../src/journal/items';
import { rebuild } from '../../../src/recovery/rebuild';
import { DiskModel } from '../../helpers/disk-model';
import { KiB, appendInFlight, fixture, openEngine, write } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const BLOCK = 4 * KiB;
const DISK = 8 * BLOCK;

afterEach(() => {
  vi.restoreAllMocks();
});

describe('applier pipeline', () => {
  it('captures before-images as the target will be, while the cycle before has not landed yet', async () => {
    // Target writes start late, so a cycle reads while the landing of the one
    // before it has not written anything yet: its before-images are right
    // only if that cycle's extents are laid on what it read. Random blocks of
    // a small disk give blocks written one or more cycles back.
    let landingsWaiting = 0;
    let readsPastALanding = 0;
    const realWrite = TargetDisk.prototype.writeExtents;
    vi.spyOn(TargetDisk.prototype, 'writeExtents').mockImplementation(async function (this: TargetDisk, extents) {
      landingsWaiting++;
      await new Promise((r) => setTimeout(r, 15));
      landingsWaiting--;
      return realWrite.call(this, extents);
    });
    const realRead = TargetDisk.prototype.readFully;
    vi.spyOn(TargetDisk.prototype, 'readFully').mockImplementation(function (this: TargetDisk, buf, offset) {
      if (landingsWaiting > 0) readsPastALanding++;
      return realRead.call(this, buf, offset);
    });

    const root = tempDir();
    const f = fixture(root, [{ id: 'p', sizeBytes: DISK }], { cycleBytes: 2 * BLOCK, maxBatchBytes: 2 * BLOCK + 1024 });
    const e = await openEngine(f);
    const model = new DiskModel(DISK);
    const items: StreamItem[] = [];
    let x = 7;
    for (let seq = 1; seq <= 150; seq++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      const item = write('p', seq, (x % 8) * BLOCK, BLOCK);
      items.push(item);
      model.add(item);
    }
    try {
      await e.openPair('p', DISK, 512);
      let i = 0;
      await appendInFlight(e, 'p', () => (i < items.length ? [items[i++] as StreamItem] : null));
      await e.settle();
      expect(readsPastALanding).toBeGreaterThan(10);
      for (let seq = 0; seq <= items.length; seq += 3) {
        const out = join(root, `at-${seq}.img`);
        const r = await rebuild(e, 'p', `seq:${seq}`, out, { force: true });
        expect({ seq, sha256: r.sha256 }).toEqual({ seq, sha256: model.sha256At(seq) });
      }
      expect(createHash('sha256').update(readFileSync(f.options.pairs[0]?.target ?? '')).digest('hex')).toBe(model.sha256At(items.length));
    } finally {
      await e.close();
    }
  }, 60_000);
});
