import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { extentSlabBytes } from '../../../src/apply/applier';
import { SlabPool } from '../../../src/apply/slab-pool';
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

  it('reuses the memory of its extents from one burst of writes to the next', async () => {
    // Stage A and stage B each hold a cycle's extents; when the applier goes
    // idle both come back. A pool that kept only one of them mapped a new
    // slab at every burst (at half load: 100 a second, and the garbage
    // collector running after each).
    const cycleBytes = 4 * BLOCK;
    const maxBatchBytes = 4 * BLOCK + 1024;
    const slabBytes = extentSlabBytes(cycleBytes, maxBatchBytes);
    let mapped = 0;
    let out = 0;
    const realTake = SlabPool.prototype.take;
    vi.spyOn(SlabPool.prototype, 'take').mockImplementation(function (this: SlabPool) {
      if (this.slabBytes === slabBytes) {
        if (this.idle === 0) mapped++;
        out++;
      }
      return realTake.call(this);
    });
    const realGive = SlabPool.prototype.give;
    vi.spyOn(SlabPool.prototype, 'give').mockImplementation(function (this: SlabPool, slab: Buffer) {
      if (this.slabBytes === slabBytes) out--;
      realGive.call(this, slab);
    });

    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }], { cycleBytes, maxBatchBytes });
    const e = await openEngine(f);
    const model = new DiskModel(DISK);
    let seq = 0;
    try {
      await e.openPair('p', DISK, 512);
      for (let burst = 0; burst < 5; burst++) {
        // Six cycles' worth, a write at a time: stage A and stage B overlap.
        let left = 24;
        await appendInFlight(e, 'p', () => {
          if (left-- === 0) return null;
          const item = write('p', ++seq, (seq % 8) * BLOCK, BLOCK);
          model.add(item);
          return [item];
        });
        await e.settle();
        await vi.waitFor(() => expect(out).toBe(0));
      }
      expect(mapped).toBe(2);
      expect(createHash('sha256').update(readFileSync(f.options.pairs[0]?.target ?? '')).digest('hex')).toBe(model.sha256At(seq));
    } finally {
      await e.close();
    }
  });

  it('gathers writes that come one at a time into one cycle, and applies at once for a waiter', async () => {
    // Each write is durable before the next is appended, so the ingest log
    // goes idle after each. Applied one by one, every write cost a target
    // flush and an undo flush of its own. The engine's timers are faked: the
    // gather runs out only when the test moves the clock on.
    let targetFlushes = 0;
    const realFlush = TargetDisk.prototype.flush;
    vi.spyOn(TargetDisk.prototype, 'flush').mockImplementation(function (this: TargetDisk) {
      targetFlushes++;
      return realFlush.call(this);
    });
    const gatherMs = 1000;
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }], { applyGatherMs: gatherMs });
    const e = await openEngine(f);
    const model = new DiskModel(DISK);
    const targetSha = (): string => createHash('sha256').update(readFileSync(f.options.pairs[0]?.target ?? '')).digest('hex');
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    try {
      await e.openPair('p', DISK, 512);
      let seq = 0;
      for (; seq < 12; ) {
        const item = write('p', ++seq, (seq % 8) * BLOCK, BLOCK);
        model.add(item);
        await e.append('p', [item]);
        await vi.advanceTimersByTimeAsync(10);
      }
      // Nobody waits: the writes wait together for the gather to run out.
      expect(targetFlushes).toBe(0);
      expect(targetSha()).not.toBe(model.sha256At(seq));
      await vi.advanceTimersByTimeAsync(gatherMs);
      // Its I/O takes what it takes: wait for it on the real clock (Date is not faked).
      for (const until = Date.now() + 10_000; targetSha() !== model.sha256At(seq) && Date.now() < until; ) await new Promise((r) => setImmediate(r));
      expect(targetSha()).toBe(model.sha256At(seq));
      expect(targetFlushes).toBeLessThanOrEqual(2);

      // A waiter (settle, as recover and failover do) does not wait for more: it is done with the clock standing still.
      const item = write('p', ++seq, 0, BLOCK);
      model.add(item);
      await e.append('p', [item]);
      await e.settle();
      expect(targetSha()).toBe(model.sha256At(seq));
    } finally {
      vi.useRealTimers();
      await e.close();
    }
  });
});
