import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { EngineError } from '../../../src/engine/errors';
import { createLogger } from '../../../src/log';
import { rebuild } from '../../../src/recovery/rebuild';
import { fixture, openEngine, payload, write, KiB, MiB } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();

describe('engine', () => {
  it('journals, acknowledges and applies writes to an image target', async () => {
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: 4 * MiB }]);
    const e = await openEngine(f);
    try {
      expect(await e.openPair('p1', 4 * MiB, 512)).toMatchObject({ durableSeq: 0, needsResync: true });
      expect(await e.append('p1', [write('p1', 1, 0, 64 * KiB), write('p1', 2, 8192, 4096)])).toBe(2);
      await e.settle();
      const status = e.status('p1');
      expect(status).toMatchObject({ durableSeq: 2, appliedSeq: 2 });
    } finally {
      await e.close();
    }
    const img = readFileSync(join(f.root, 'datastore', 'p1.img'));
    expect(img.length).toBe(4 * MiB);
    const expected = Buffer.alloc(4 * MiB);
    payload('p1', 1, 64 * KiB).copy(expected, 0);
    payload('p1', 2, 4096).copy(expected, 8192);
    expect(img.equals(expected)).toBe(true);
  });

  it('applies and rolls back sector writes on a disk whose size is not a whole number of 4 KiB blocks', async () => {
    // The applier's extents are widened to 4 KiB for O_DIRECT; the last one
    // stops at the end of the disk and goes through the page cache instead.
    const size = MiB + 512;
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: size }]);
    const e = await openEngine(f);
    try {
      await e.openPair('p1', size, 512);
      await e.append('p1', [write('p1', 1, MiB - 1024, 1536), write('p1', 2, 512, 512), write('p1', 3, MiB, 512)]);
      await e.settle();
      const at = (seq: number): Buffer => {
        const b = Buffer.alloc(size);
        if (seq >= 1) payload('p1', 1, 1536).copy(b, MiB - 1024);
        if (seq >= 2) payload('p1', 2, 512).copy(b, 512);
        if (seq >= 3) payload('p1', 3, 512).copy(b, MiB);
        return b;
      };
      expect(readFileSync(join(f.root, 'datastore', 'p1.img')).equals(at(3))).toBe(true);
      for (const seq of [0, 1, 2]) {
        const out = join(f.root, `at-${seq}.img`);
        await rebuild(e, 'p1', `seq:${seq}`, out, { force: true });
        expect(readFileSync(out).equals(at(seq)), `seq ${seq}`).toBe(true);
      }
    } finally {
      await e.close();
    }
  });

  it('applies a step that holds no write (ticks and tags only) without pausing the pair', async () => {
    let logged = '';
    const destination = new Writable({ write: (chunk: Buffer, _enc, done) => ((logged += chunk.toString()), done()) });
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: MiB }], { undoSegmentBytes: 4 * MiB, logger: createLogger({ destination }) });
    const e = await openEngine(f);
    try {
      await e.openPair('p1', MiB, 512);
      // Bigger than the applier pools: nothing idle is left for the next step to take.
      await e.append('p1', [write('p1', 1, 0, 512 * KiB)]);
      await e.settle();
      await e.append('p1', [{ kind: 'tick', seq: 2, time: 2_000_000 }, { kind: 'tag', seq: 3, time: 3_000_000, tagKind: 'app', name: 'only-a-tag', group: null }]);
      await e.settle();
      expect(e.status('p1')).toMatchObject({ appliedSeq: 3, state: 'unprotected', lastError: null });
      expect(logged).not.toContain('applying paused');
    } finally {
      await e.close();
    }
  });

  it('remembers durable seqs across a restart and refuses gaps', async () => {
    const f = fixture(tempDir(), [{ id: 'p1', sizeBytes: 4 * MiB }]);
    let e = await openEngine(f);
    await e.openPair('p1', 4 * MiB, 512);
    for (let s = 1; s <= 20; s++) await e.append('p1', [write('p1', s, (s % 8) * 4096, 4096)]);
    await e.close();
    e = await openEngine(f);
    try {
      expect(await e.openPair('p1', 4 * MiB, 512)).toMatchObject({ durableSeq: 20, needsResync: true });
      await expect(e.append('p1', [write('p1', 22, 0, 4096)])).rejects.toMatchObject({ code: 'seq-gap', seq: 22 });
      await expect(e.append('p1', [write('p1', 21, 0, 100)])).rejects.toMatchObject({ code: 'bad-record' });
      await expect(e.append('p1', [write('p1', 21, 4 * MiB, 512)])).rejects.toMatchObject({ code: 'bad-record' });
      await expect(e.openPair('nope', 4 * MiB, 512)).rejects.toBeInstanceOf(EngineError);
      await expect(e.openPair('p1', 8 * MiB, 512)).rejects.toMatchObject({ code: 'size-mismatch' });
    } finally {
      await e.close();
    }
  });
});
