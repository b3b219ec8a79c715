import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Catalog } from '../../../src/store/catalog';
import { windowAt } from '../../../src/recovery/points';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();

describe('catalog resync windows', () => {
  it('a resync begun again before the last one ended is one window, from the first start to the end', () => {
    const c = Catalog.open(join(tempDir(), 'catalog.db'));
    try {
      c.ensurePair('p');
      c.startResync('p', 10, 1_000);
      // The connection dropped; the process server starts the resync over.
      c.startResync('p', 20, 2_000);
      c.endResync('p', 30, 3_000);
      const windows = c.resyncWindows('p');
      expect(windows.every((w) => w.endSeq === 30)).toBe(true);
      for (const seq of [10, 15, 20, 29]) expect(windowAt(windows, seq), `seq ${seq}`).not.toBeNull();
      for (const seq of [9, 30, 31]) expect(windowAt(windows, seq), `seq ${seq}`).toBeNull();
      // A later resync is a window of its own, and an earlier closed one is left alone.
      c.startResync('p', 40, 4_000);
      c.endResync('p', 50, 5_000);
      expect(c.resyncWindows('p').map((w) => [w.startSeq, w.endSeq])).toEqual([
        [10, 30],
        [20, 30],
        [40, 50],
      ]);
    } finally {
      c.close();
    }
  });
});

describe('catalog purged pairs', () => {
  it('remembers where the ingest log ended when a pair was purged, the last purge winning', () => {
    const c = Catalog.open(join(tempDir(), 'catalog.db'));
    try {
      c.ensurePair('p');
      c.startResync('p', 1, 1);
      c.deletePair('p', { segment: 3, fileOffset: 8192 });
      expect(c.pair('p')).toBeUndefined();
      expect(c.resyncWindows('p')).toEqual([]);
      expect(c.purgedPairs().get('p')).toEqual({ segment: 3, fileOffset: 8192 });
      c.ensurePair('p');
      c.deletePair('p', { segment: 5, fileOffset: 0 });
      expect([...c.purgedPairs()]).toEqual([['p', { segment: 5, fileOffset: 0 }]]);
    } finally {
      c.close();
    }
  });
});
