import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { StreamItem } from '../../../src/journal/items';
import { PointRefusedError, isoTime } from '../../../src/recovery/points';
import { rebuild } from '../../../src/recovery/rebuild';
import { verifyPair } from '../../../src/recovery/verify';
import { DiskModel } from '../../helpers/disk-model';
import { KiB, appendInFlight, fixture, openEngine, payload } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const DISK = 64 * KiB;
const SECTOR = 512;

type Op =
  | { op: 'write'; sector: number; sectors: number; zeros: boolean }
  | { op: 'tag'; app: boolean }
  | { op: 'tick' }
  | { op: 'resync' }
  | { op: 'gap'; seconds: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  // Writes of zeros too (a guest zeroing blocks): before-images that are zeros after data, data after zeros.
  { weight: 12, arbitrary: fc.record({ op: fc.constant('write' as const), sector: fc.nat({ max: DISK / SECTOR - 1 }), sectors: fc.integer({ min: 1, max: 24 }), zeros: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('tag' as const), app: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ op: 'tick' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'resync' as const }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('gap' as const), seconds: fc.integer({ min: 1, max: 100 }) }) },
);

/** Turns ops into a valid item stream (resync markers paired, writes in bounds) and its model. */
function toItems(ops: readonly Op[]): { items: StreamItem[]; model: DiskModel } {
  const model = new DiskModel(DISK);
  const items: StreamItem[] = [];
  let seq = 0;
  let time = 1_764_000_000_000_000;
  let inResync = false;
  for (const o of ops) {
    time += 1_000_000;
    if (o.op === 'gap') {
      time += o.seconds * 1_000_000;
      continue;
    }
    seq++;
    let item: StreamItem;
    if (o.op === 'write') {
      const sectors = Math.min(o.sectors, DISK / SECTOR - o.sector);
      const data = o.zeros ? Buffer.alloc(sectors * SECTOR) : payload('p', seq, sectors * SECTOR);
      item = { kind: 'write', seq, time, offset: o.sector * SECTOR, data, resync: inResync };
    } else if (o.op === 'tag') {
      item = { kind: 'tag', seq, time, tagKind: o.app ? 'app' : 'crash', name: `t${seq}`, group: null };
    } else if (o.op === 'tick') {
      item = { kind: 'tick', seq, time };
    } else {
      item = { kind: inResync ? 'resync-end' : 'resync-start', seq, time };
      inResync = !inResync;
    }
    items.push(item);
    model.add(item);
  }
  return { items, model };
}

describe('rebuild (property)', () => {
  // Every way the applier gets its items: from memory, read back from the log
  // (a budget of 1 byte; it reads ahead and reuses its buffers), and both in
  // turn as the budget overflows and drains.
  it.each([
    { source: 'memory', applierMemoryBytes: 32 * 1024 * 1024, numRuns: 25 },
    { source: 'the log', applierMemoryBytes: 1, numRuns: 15 },
    { source: 'memory and the log in turn', applierMemoryBytes: 40 * 1024, numRuns: 15 },
  ])('rebuilds exactly the model disk at random points, by seq, time, tag and latest-app (items from $source)', async ({ applierMemoryBytes, numRuns }) => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 1, maxLength: 70 }),
        fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 10 }),
        fc.array(fc.nat(), { minLength: 3, maxLength: 6 }),
        async (ops, chunkSizes, picks) => {
          const { items, model } = toItems(ops);
          if (items.length === 0) return;
          const root = tempDir();
          const f = fixture(root, [{ id: 'p', sizeBytes: DISK }], { undoSegmentBytes: 96 * KiB, cycleBytes: 16 * KiB, ingestSegmentBytes: 128 * KiB, maxBatchBytes: 32 * KiB, applierMemoryBytes, applierSlabBytes: 16 * KiB, poisonFreedMemory: true });
          const e = await openEngine(f);
          try {
            await e.openPair('p', DISK, SECTOR);
            // Append in chunks of varying size, as messages would arrive.
            let i = 0;
            let c = 0;
            await appendInFlight(e, 'p', () => {
              if (i >= items.length) return null;
              const n = chunkSizes[c++ % chunkSizes.length] as number;
              i += n;
              return items.slice(i - n, i);
            });
            await e.settle();
            const last = items.length;
            const candidates = [0, ...items.map((it) => it.seq)];
            for (const pick of picks) {
              const seq = candidates[pick % candidates.length] as number;
              const out = join(root, `at-${seq}-${run++}.img`);
              const specs = [`seq:${seq}`];
              const t = seq > 0 ? (items[seq - 1] as StreamItem).time : null;
              if (t !== null && (seq === last || (items[seq] as StreamItem).time > t)) specs.push(isoTime(t)?.replace('Z', '').concat(`${String(t % 1000).padStart(3, '0')}Z`) ?? '');
              for (const spec of specs) {
                if (!model.isPoint(seq)) {
                  await expect(rebuild(e, 'p', spec, out, { force: true })).rejects.toBeInstanceOf(PointRefusedError);
                  continue;
                }
                const r = await rebuild(e, 'p', spec, out, { force: true });
                expect(r.seq).toBe(seq);
                const expected = model.sha256At(seq);
                expect(r.sha256).toBe(expected);
                expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(expected);
              }
            }
            const app = [...items].reverse().find((it) => it.kind === 'tag' && it.tagKind === 'app' && model.isPoint(it.seq));
            if (app) {
              const r = await rebuild(e, 'p', 'latest-app', join(root, `app-${run++}.img`));
              expect(r.seq).toBe(app.seq);
              expect(r.sha256).toBe(model.sha256At(app.seq));
            }
            expect((await verifyPair(e, 'p')).ok).toBe(true);
          } finally {
            await e.close();
          }
        },
      ),
      { numRuns },
    );
  }, 120_000);
});
