// The catalog is an index over the logs, kept with synchronous=NORMAL: a
// power cut may lose its last commits while the logs, flushed before every
// acknowledgement, keep everything. Here the catalog is set back to a copy
// taken earlier (what such a cut leaves), after the undo logs have rolled
// several segments on: start-up must take the logs' word, and every point,
// tag and acknowledged item must be there.
import { copyFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Engine } from '../../../src/engine/engine';
import type { StreamItem } from '../../../src/journal/items';
import { rebuild } from '../../../src/recovery/rebuild';
import { verifyPair } from '../../../src/recovery/verify';
import { DiskModel } from '../../helpers/disk-model';
import { KiB, MiB, fixture, openEngine, targetInUse, write } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const DISK = 2 * MiB;

async function stream(e: Engine, model: DiskModel, from: number, to: number): Promise<void> {
  for (let s = from; s <= to; s++) {
    const it: StreamItem = s % 10 === 0 ? { kind: 'tag', seq: s, time: s * 1_000_000, tagKind: 'app', name: `t${s}`, group: null } : write('p', s, ((s * 7) % (DISK / (16 * KiB))) * 16 * KiB, 16 * KiB);
    model.add(it);
    await e.append('p', [it]);
  }
  await e.settle();
}

/** The catalog's files as they are now: the commits after this are the ones a power cut loses. */
function snapshotCatalog(dataDir: string, to: string): void {
  for (const suffix of ['', '-wal', '-shm']) {
    const from = join(dataDir, `catalog.db${suffix}`);
    if (existsSync(from)) copyFileSync(from, `${to}${suffix}`);
  }
}

function restoreCatalog(from: string, dataDir: string): void {
  for (const suffix of ['', '-wal', '-shm']) {
    const to = join(dataDir, `catalog.db${suffix}`);
    rmSync(to, { force: true });
    if (existsSync(`${from}${suffix}`)) copyFileSync(`${from}${suffix}`, to);
  }
}

describe('a catalog behind the logs', () => {
  it('is corrected from the logs at start-up: every segment, tag and point is there', async () => {
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }]);
    const model = new DiskModel(DISK, targetInUse(f, 'p', DISK));
    let e = await openEngine(f);
    await e.openPair('p', DISK, 512);
    // 16 KiB before-images in 256 KiB undo segments: a segment every 15 items or so.
    await stream(e, model, 1, 45);
    const snapshot = join(f.root, 'catalog-then.db');
    snapshotCatalog(f.options.dataDir, snapshot);
    const segmentsThen = e.catalog.segments('p').length;
    await stream(e, model, 46, 140);
    expect(e.catalog.segments('p').length).toBeGreaterThan(segmentsThen + 2);
    await e.close();

    restoreCatalog(snapshot, f.options.dataDir);
    e = await openEngine(f);
    try {
      expect(e.status('p').durableSeq).toBe(140);
      // What the catalog lost of the applier's progress is applied again, harmlessly.
      await e.settle();
      expect(e.status('p')).toMatchObject({ appliedSeq: 140, lastError: null });
      expect(e.catalog.tags('p').map((t) => t.seq)).toEqual(Array.from({ length: 14 }, (_, i) => (i + 1) * 10));
      expect((await verifyPair(e, 'p')).ok).toBe(true);
      for (const [point, seq] of [['latest', 140], ['seq:44', 44], ['seq:77', 77], ['tag:t130', 130]] as const) {
        expect((await rebuild(e, 'p', point, join(f.root, `${seq}.img`))).sha256, point).toBe(model.sha256At(seq));
      }
    } finally {
      await e.close();
    }
  });
});
