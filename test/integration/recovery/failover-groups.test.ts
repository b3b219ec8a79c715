import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Engine } from '../../../src/engine/engine';
import type { StreamItem } from '../../../src/journal/items';
import { resolveGroupPoint, rebuildGroup } from '../../../src/recovery/groups';
import { PointRefusedError, resolvePoint } from '../../../src/recovery/points';
import { rebuild, timelineOf } from '../../../src/recovery/rebuild';
import { DiskModel } from '../../helpers/disk-model';
import { KiB, MiB, appendInFlight, fixture, openEngine, write } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const DISK = 1 * MiB;

function sha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

async function put(e: Engine, model: DiskModel, pairId: string, item: StreamItem): Promise<void> {
  model.add(item);
  await e.append(pairId, [item]);
}

function tag(seq: number, name: string, group: string | null, tagKind: 'app' | 'crash' = 'app'): StreamItem {
  return { kind: 'tag', seq, time: seq * 1_000_000, tagKind, name, group };
}

describe('failover and commit', () => {
  it('rolls the target itself back to the point, stops replication, and commit drops retention', async () => {
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }]);
    const model = new DiskModel(DISK);
    let e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      for (let s = 1; s <= 30; s++) await put(e, model, 'p', s === 12 ? tag(12, 'vss-1', null) : write('p', s, ((s * 5) % 16) * 32 * KiB, 32 * KiB));
      await e.settle();
      const point = await resolvePoint(timelineOf(e, 'p'), 'tag:vss-1');
      expect(point.seq).toBe(12);
      await e.failover('p', point.seq);
      expect(e.status('p').state).toBe('failed-over');
      expect(sha(join(f.root, 'datastore', 'p.img'))).toBe(model.sha256At(12));
      await expect(e.openPair('p', DISK, 512)).rejects.toMatchObject({ code: 'failed-over' });
      // Earlier points are still recoverable from the rolled-back target.
      expect((await rebuild(e, 'p', 'seq:5', join(f.root, 'five.img'))).sha256).toBe(model.sha256At(5));
      await expect(rebuild(e, 'p', 'seq:20', join(f.root, 'twenty.img'))).rejects.toBeInstanceOf(PointRefusedError);
    } finally {
      await e.close();
    }
    // Failed over survives a restart.
    e = await openEngine(f);
    try {
      expect(e.status('p').state).toBe('failed-over');
      await e.commit('p');
      const opened = await e.openPair('p', DISK, 512);
      expect(opened).toMatchObject({ durableSeq: 30, needsResync: true });
      expect(e.status('p').journalBytes).toBe(0);
      expect(await e.append('p', [write('p', 31, 0, 4096)])).toBe(31);
    } finally {
      await e.close();
    }
    e = await openEngine(f);
    try {
      expect(await e.openPair('p', DISK, 512)).toMatchObject({ durableSeq: 31, needsResync: true });
    } finally {
      await e.close();
    }
  });
  it('rolls back exactly to the point while the process server keeps streaming into the pair', async () => {
    // Appends go on during the failover: the ones it refuses must not reach the
    // target, and no step of the applier may land after the rollback.
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }], { applierSlabBytes: 16 * KiB });
    const model = new DiskModel(DISK);
    const e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      let seq = 0;
      let refused: unknown = null;
      // Several appends in flight, so the applier has steps going when the failover starts.
      const streaming = appendInFlight(
        e,
        'p',
        () => {
          if (refused !== null) return null;
          const batch: StreamItem[] = [];
          for (let i = 0; i < 8; i++) {
            seq += 1;
            batch.push(write('p', seq, ((seq * 7) % 32) * 32 * KiB, 32 * KiB));
          }
          batch.forEach((item) => model.add(item));
          return batch;
        },
        (err) => {
          refused ??= err;
        },
      );
      while (seq < 200) await new Promise((r) => setImmediate(r));
      const point = 150;
      const failingOver = e.failover('p', point);
      // From its start, the pair takes neither appends nor a new open.
      await expect(e.openPair('p', DISK, 512)).rejects.toMatchObject({ code: 'failed-over' });
      await failingOver;
      await streaming;
      expect(refused).toMatchObject({ code: 'failed-over' });
      expect(e.status('p').state).toBe('failed-over');
      // Whatever was still being applied when the failover began has landed by now, or never will.
      await new Promise((r) => setTimeout(r, 50));
      expect(sha(join(f.root, 'datastore', 'p.img'))).toBe(model.sha256At(point));
    } finally {
      await e.close();
    }
  });
});

describe('replication groups', () => {
  it('recovers every pair of a group at the newest group tag present in all of them', async () => {
    const f = fixture(tempDir(), [
      { id: 'a', sizeBytes: DISK, group: 'erp' },
      { id: 'b', sizeBytes: DISK, group: 'erp' },
    ]);
    const ma = new DiskModel(DISK);
    const mb = new DiskModel(DISK);
    const e = await openEngine(f);
    try {
      await e.openPair('a', DISK, 512);
      await e.openPair('b', DISK, 512);
      let sa = 0;
      let sb = 0;
      const wa = async (): Promise<void> => put(e, ma, 'a', write('a', ++sa, (sa % 8) * 64 * KiB, 64 * KiB));
      const wb = async (): Promise<void> => put(e, mb, 'b', write('b', ++sb, (sb % 8) * 64 * KiB, 64 * KiB));
      await wa(); await wb(); await wa();
      await put(e, ma, 'a', tag(++sa, 'vss-g1-a', 'erp-g1'));
      await put(e, mb, 'b', tag(++sb, 'vss-g1-b', 'erp-g1'));
      const g1 = { a: sa, b: sb };
      await wa(); await wb(); await wb();
      await put(e, ma, 'a', tag(++sa, 'vss-g2-a', 'erp-g2'));
      await put(e, mb, 'b', tag(++sb, 'vss-g2-b', 'erp-g2'));
      const g2 = { a: sa, b: sb };
      await wa(); await wb();
      // g3 reached only pair a: not a group point.
      await put(e, ma, 'a', tag(++sa, 'vss-g3-a', 'erp-g3'));
      await wa();
      await e.settle();

      const points = await resolveGroupPoint(e, 'erp', 'latest-app');
      expect(points.map((p) => [p.pairId, p.seq])).toEqual([['a', g2.a], ['b', g2.b]]);
      const out = join(f.root, 'group');
      require('node:fs').mkdirSync(out);
      const results = await rebuildGroup(e, 'erp', 'latest-app', out);
      expect(results.map((r) => r.path)).toEqual([join(out, 'a.img'), join(out, 'b.img')]);
      expect(sha(join(out, 'a.img'))).toBe(ma.sha256At(g2.a));
      expect(sha(join(out, 'b.img'))).toBe(mb.sha256At(g2.b));

      await expect(resolveGroupPoint(e, 'erp', 'tag:vss-g3-a')).rejects.toThrow(/not common to the whole group erp/);
      const byTime = await resolveGroupPoint(e, 'erp', new Date(g1.a * 1000).toISOString());
      expect(byTime.find((p) => p.pairId === 'a')?.seq).toBe(g1.a);
      await expect(resolveGroupPoint(e, 'nope', 'latest-app')).rejects.toMatchObject({ code: 'unknown-group' });
    } finally {
      await e.close();
    }
  });
});
