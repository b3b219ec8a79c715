import { readFileSync, readdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Engine } from '../../../src/engine/engine';
import { RecordKind } from '../../../src/journal/record';
import { itemRecord } from '../../../src/journal/items';
import { SegmentLogWriter, listSegments, scanLog, segmentFileName, type LogBatch } from '../../../src/journal/segment-log';
import { rebuild } from '../../../src/recovery/rebuild';
import { verifyPair } from '../../../src/recovery/verify';
import { DiskModel } from '../../helpers/disk-model';
import { KiB, MiB, fixture, openEngine, targetInUse, write, type Fixture } from '../../helpers/engine-fixture';
import { patch } from '../../helpers/files';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const DISK = 2 * MiB;

async function fill(e: Engine, model: DiskModel, from: number, to: number, pairId = 'p', bytes = 16 * KiB): Promise<void> {
  for (let s = from; s <= to; s++) {
    const it = write(pairId, s, ((s * 7) % (DISK / bytes)) * bytes, bytes);
    model.add(it);
    await e.append(pairId, [it]);
  }
}

/** A fresh engine with pair p open and seqs 1..n journaled, and the model of the disk they make. */
async function startFilled(n: number): Promise<{ f: Fixture; model: DiskModel; e: Engine }> {
  const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }]);
  const model = new DiskModel(DISK, targetInUse(f, 'p', DISK));
  const e = await openEngine(f);
  await e.openPair('p', DISK, 512);
  await fill(e, model, 1, n);
  return { f, model, e };
}

describe('engine durability', () => {
  it('recovers silently from a torn last batch in the ingest log', async () => {
    const started = await startFilled(12);
    const { f, model } = started;
    let { e } = started;
    await e.close();
    // The agent died while writing the next batch (items 13 and 14, never acknowledged):
    // write that batch as the writer would, then lose its second half.
    const ingestDir = join(f.options.retentionDir, 'ingest');
    const scan = await scanLog(ingestDir, 'log', () => {});
    const w = await SegmentLogWriter.open({ dir: ingestDir, extension: 'log', segmentBytes: f.options.ingestSegmentBytes as number }, scan);
    const torn = await w.append([itemRecord('p', write('p', 13, 0, 64 * KiB)), itemRecord('p', write('p', 14, 0, 64 * KiB))]);
    await w.close();
    patch(join(ingestDir, segmentFileName(torn.segment, 'log')), torn.fileOffset + torn.bytes / 2, Buffer.alloc(torn.bytes / 2));
    e = await openEngine(f);
    try {
      const { durableSeq } = await e.openPair('p', DISK, 512);
      expect(durableSeq).toBe(12);
      expect(e.status('p').lastError).toBeNull();
      await e.settle();
      const r = await rebuild(e, 'p', 'latest', join(f.root, 'latest.img'));
      expect(r.seq).toBe(12);
      expect(r.sha256).toBe(model.sha256At(12));
      expect((await verifyPair(e, 'p')).ok).toBe(true);
      // The stream continues at 13, over the torn bytes.
      const again = write('p', 13, 0, 4096);
      model.add(again);
      expect(await e.append('p', [again])).toBe(13);
      await e.settle();
      expect((await rebuild(e, 'p', 'latest', join(f.root, 'latest2.img'))).sha256).toBe(model.sha256At(13));
    } finally {
      await e.close();
    }
  });

  it('says loudly when acknowledged items are missing from the logs', async () => {
    // Keep the last items unapplied (target away) so they live only in the ingest log.
    const started = await startFilled(10);
    const { f, model } = started;
    let { e } = started;
    await e.settle();
    const target = join(f.root, 'datastore', 'p.img');
    renameSync(target, `${target}.away`);
    await fill(e, model, 11, 12);
    await e.openPair('p', DISK, 512); // records durable seq 12 in the catalog
    await e.close();
    renameSync(`${target}.away`, target);
    const ingestDir = join(f.options.retentionDir, 'ingest');
    const batches: LogBatch[] = [];
    await scanLog(ingestDir, 'log', (b) => void batches.push(b));
    const last = batches.at(-1) as LogBatch;
    patch(join(ingestDir, segmentFileName(last.segment, 'log')), last.fileOffset + 128, Buffer.alloc(64));
    e = await openEngine(f);
    try {
      expect(e.status('p').durableSeq).toBe(11);
      expect(e.status('p').lastError).toMatch(/acknowledged items missing: the catalog recorded seq 12 as durable, the logs end at seq 11/);
      expect(e.catalog.events().some((ev) => ev.kind === 'acknowledged-items-missing')).toBe(true);
    } finally {
      await e.close();
    }
  });

  it('makes verify fail, naming file and offset, when a byte flips in the middle of an undo segment', async () => {
    const started = await startFilled(60);
    const { f, model } = started;
    let { e } = started;
    await e.settle();
    expect((await verifyPair(e, 'p')).ok).toBe(true);
    await e.close();
    const undoDir = join(f.options.retentionDir, 'pairs', 'p', 'undo');
    const segs = listSegments(undoDir, 'undo');
    expect(segs.length).toBeGreaterThan(2);
    const victimPath = join(undoDir, segmentFileName(segs[1] as number, 'undo'));
    const batches: LogBatch[] = [];
    await scanLog(undoDir, 'undo', (b) => void (b.segment === segs[1] && batches.push(b)));
    const victim = batches[1] as LogBatch;
    const rec = victim.records.find((r) => r.kind === RecordKind.UndoWrite);
    const at = victim.fileOffset + (rec?.payloadStart ?? 0) + 100;
    const old = readFileSync(victimPath).subarray(at, at + 1);
    patch(victimPath, at, Buffer.from([(old[0] as number) ^ 0x01]));
    // The agent starts (closed segments are not read at start), but nothing built from the damage is handed out:
    // verify names the place, and a rebuild that needs the damaged segment refuses instead of returning a wrong image.
    e = await openEngine(f);
    try {
      const v = await verifyPair(e, 'p');
      expect(v.ok).toBe(false);
      expect(v.problem).toContain(victimPath);
      const err = await rebuild(e, 'p', 'seq:1', join(f.root, 'old.img')).catch((x: unknown) => x);
      expect(err).toMatchObject({ code: 'ERR_JOURNAL_CORRUPT', file: victimPath });
      // Points that need only later segments are still recoverable.
      const tail = await rebuild(e, 'p', 'latest', join(f.root, 'latest.img'));
      expect(tail.sha256).toBe(model.sha256At(60));
    } finally {
      await e.close();
    }
  });

  it('starts without reading closed undo segments, yet keeps the catalog and seq chain right', async () => {
    const started = await startFilled(60);
    const { f, model } = started;
    let { e } = started;
    await e.settle();
    await e.close();
    e = await openEngine(f);
    try {
      expect(e.status('p')).toMatchObject({ durableSeq: 60, appliedSeq: 60 });
      await e.openPair('p', DISK, 512);
      await fill(e, model, 61, 80);
      await e.settle();
      for (const seq of [1, 30, 60, 80]) expect((await rebuild(e, 'p', `seq:${seq}`, join(f.root, `r${seq}.img`), { force: true })).sha256).toBe(model.sha256At(seq));
      expect((await verifyPair(e, 'p')).ok).toBe(true);
    } finally {
      await e.close();
    }
  });

  it('verify names a flipped byte while the agent runs', async () => {
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }]);
    const model = new DiskModel(DISK, targetInUse(f, 'p', DISK));
    const e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      await fill(e, model, 1, 60);
      await e.settle();
      const undoDir = join(f.options.retentionDir, 'pairs', 'p', 'undo');
      const segs = listSegments(undoDir, 'undo');
      const victimPath = join(undoDir, segmentFileName(segs[0] as number, 'undo'));
      patch(victimPath, 4096 + 128 + 128 + 7, Buffer.from([0xee]));
      const v = await verifyPair(e, 'p');
      expect(v.ok).toBe(false);
      expect(v.problem).toContain(victimPath);
      expect(v.problem).toMatch(/offset \d+: .*crc/);
    } finally {
      await e.close();
    }
  });

  it('refuses a second agent on the same retention volume, naming the holder', async () => {
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }]);
    const e = await openEngine(f);
    try {
      await expect(openEngine(f)).rejects.toMatchObject({ code: 'retention-locked', message: expect.stringContaining(`pid ${process.pid}`) });
    } finally {
      await e.close();
    }
    const again = await openEngine(f);
    await again.close();
  });

  it('keeps journaling while a target is moved away, then catches up when it is back', async () => {
    const f = fixture(tempDir(), [{ id: 'p', sizeBytes: DISK }, { id: 'q', sizeBytes: DISK }]);
    const model = new DiskModel(DISK);
    const other = new DiskModel(DISK);
    const e = await openEngine(f);
    try {
      await e.openPair('p', DISK, 512);
      await e.openPair('q', DISK, 512);
      await fill(e, model, 1, 5);
      await e.settle();
      const target = join(f.root, 'datastore', 'p.img');
      renameSync(target, `${target}.away`);
      await fill(e, model, 6, 30);
      await fill(e, other, 1, 10, 'q');
      await e.waitApplied('q', 10);
      const s = e.status('p');
      expect(s.durableSeq).toBe(30);
      expect(s.appliedSeq).toBeLessThan(30);
      await expect.poll(() => e.status('p').state).toBe('target-unavailable');
      expect(readdirSync(join(f.root, 'datastore'))).not.toContain('p.img'); // never re-created while it has history
      renameSync(`${target}.away`, target);
      await e.waitApplied('p', 30, 10_000);
      expect(e.status('p').state).not.toBe('target-unavailable');
      const r = await rebuild(e, 'p', 'latest', join(f.root, 'p.img.out'));
      expect(r.sha256).toBe(model.sha256At(30));
      const r5 = await rebuild(e, 'p', 'seq:5', join(f.root, 'p5.img.out'));
      expect(r5.sha256).toBe(model.sha256At(5));
      expect((await rebuild(e, 'q', 'latest', join(f.root, 'q.img.out'))).sha256).toBe(other.sha256At(10));
    } finally {
      await e.close();
    }
  });
});
