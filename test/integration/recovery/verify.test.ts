import { describe, expect, it } from 'vitest';
import type { StreamItem } from '../../../src/journal/items';
import { verifyPair } from '../../../src/recovery/verify';
import { KiB, MiB, appendInFlight, fixture, openEngine, write } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();

describe('verify', () => {
  it('finds nothing wrong with a pair that is being streamed into and applied meanwhile', async () => {
    // Segments of 1 MiB (ingest) and 256 KiB (undo) roll while verify reads;
    // a small lag bound keeps the applier (and the catalog) moving meanwhile.
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: 4 * MiB }], { maxApplyLagBytes: 2 * MiB });
    const e = await openEngine(f);
    try {
      await e.openPair('p', 4 * MiB, 512);
      let seq = 0;
      let stop = false;
      const streaming = appendInFlight(e, 'p', async () => {
        if (seq > 0) await new Promise((r) => setTimeout(r, 1));
        if (stop) return null;
        const batch: StreamItem[] = [];
        for (let i = 0; i < 4; i++) {
          seq += 1;
          batch.push(write('p', seq, ((seq * 5) % 64) * 64 * KiB, 16 * KiB));
        }
        return batch;
      });
      try {
        while (seq < 64) await new Promise((r) => setImmediate(r));
        for (let i = 0; i < 10; i++) {
          const v = await verifyPair(e, 'p');
          expect(v.problem).toBeNull();
        }
      } finally {
        stop = true;
        await streaming;
      }
    } finally {
      await e.close();
    }
  });
});
