import { readFileSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { JournalCorruptError } from '../../../src/journal/errors';
import { RecordKind } from '../../../src/journal/record';
import {
  SegmentLogWriter,
  listSegments,
  scanLog,
  segmentFileName,
  type LogBatch,
  type PendingRecord,
  type WrittenBatch,
} from '../../../src/journal/segment-log';
import { patch } from '../../helpers/files';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();
const SEGMENT = 64 * 1024;

function write(seq: number, bytes = 3000): PendingRecord {
  const payload = Buffer.alloc(bytes, seq & 0xff);
  return { fields: { kind: RecordKind.Write, flags: 0, pairId: 'p1', seq, time: seq * 1000, offset: seq * 512 }, payload };
}

async function openWriter(dir: string): Promise<SegmentLogWriter> {
  const scan = await scanLog(dir, 'log', () => {});
  return SegmentLogWriter.open({ dir, extension: 'log', segmentBytes: SEGMENT }, scan);
}

async function collect(dir: string): Promise<{ seqs: number[]; batches: LogBatch[]; summary: Awaited<ReturnType<typeof scanLog>> }> {
  const seqs: number[] = [];
  const batches: LogBatch[] = [];
  const summary = await scanLog(dir, 'log', (b) => {
    batches.push(b);
    for (const r of b.records) seqs.push(r.seq);
  });
  return { seqs, batches, summary };
}

/** Writes `n` batches of `perBatch` records; returns the batches as written. */
async function fill(dir: string, n: number, perBatch = 3): Promise<WrittenBatch[]> {
  const w = await openWriter(dir);
  const out: WrittenBatch[] = [];
  let seq = 1;
  for (let b = 0; b < n; b++) {
    const recs = Array.from({ length: perBatch }, () => write(seq++));
    out.push(await w.append(recs));
  }
  await w.close();
  return out;
}


describe('segment log', () => {
  it('Empty: a new log scans as empty and starts at segment 1', async () => {
    const dir = tempDir();
    const { seqs, summary } = await collect(dir);
    expect(seqs).toEqual([]);
    expect(summary).toEqual({ end: { segment: 1, fileOffset: 0 }, nextBatchNo: 1, batches: 0, tornTail: null });
  });

  it('reads back every record, in order, across segment rolls', async () => {
    const dir = tempDir();
    const written = await fill(dir, 20);
    expect(new Set(written.map((b) => b.segment)).size).toBeGreaterThan(3);
    for (const n of listSegments(dir, 'log')) expect(statSync(join(dir, segmentFileName(n, 'log'))).size).toBe(SEGMENT);
    const { seqs, batches, summary } = await collect(dir);
    expect(seqs).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(batches.map((b) => b.batchNo)).toEqual(written.map((b) => b.batchNo));
    const last = written.at(-1) as WrittenBatch;
    expect(summary.end).toEqual({ segment: last.segment, fileOffset: last.fileOffset + last.bytes });
    expect(summary.tornTail).toBeNull();
    const r = batches[5]?.records[1];
    expect(batches[5]?.buffer.subarray(r?.payloadStart, (r?.payloadStart ?? 0) + 3000).every((x) => x === ((r?.seq ?? 0) & 0xff))).toBe(true);
  });

  it('resumes appending where the log ended after a reopen', async () => {
    const dir = tempDir();
    await fill(dir, 5);
    const w = await openWriter(dir);
    expect(w.batchNo).toBe(6);
    await w.append([write(16)]);
    await w.close();
    const { seqs } = await collect(dir);
    expect(seqs.at(-1)).toBe(16);
    expect(seqs).toHaveLength(16);
  });

  it('TruncatedLastBatch: a torn tail is dropped silently and overwritten by the next append', async () => {
    const dir = tempDir();
    const written = await fill(dir, 4);
    const last = written.at(-1) as WrittenBatch;
    const path = join(dir, segmentFileName(last.segment, 'log'));
    truncateSync(path, last.fileOffset + 700); // mid-way through the last batch's first record
    const { seqs, summary } = await collect(dir);
    expect(seqs).toEqual(Array.from({ length: 9 }, (_, i) => i + 1));
    expect(summary.tornTail).toMatchObject({ segment: last.segment, fileOffset: last.fileOffset });
    const w = await openWriter(dir);
    expect(w.batchNo).toBe(last.batchNo);
    await w.append([write(10)]);
    await w.close();
    expect((await collect(dir)).seqs).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
  });

  it('PartialLastBatch: a batch whose last sectors never reached the disk is torn, not corrupt', async () => {
    const dir = tempDir();
    const written = await fill(dir, 3);
    const last = written.at(-1) as WrittenBatch;
    const path = join(dir, segmentFileName(last.segment, 'log'));
    patch(path, last.fileOffset + 4096, Buffer.alloc(4096)); // the second page of the batch is zeros
    const { seqs, summary } = await collect(dir);
    expect(seqs).toHaveLength(6);
    expect(summary.tornTail?.reason).toMatch(/record \d of batch 3/);
  });

  it('ChecksumMismatchInMiddle: a flipped byte in an acknowledged batch is corruption, named with file and offset', async () => {
    const dir = tempDir();
    const written = await fill(dir, 6);
    const victim = written[1] as WrittenBatch;
    const path = join(dir, segmentFileName(victim.segment, 'log'));
    const at = victim.fileOffset + 128 + 128 + 50; // inside the first record's payload
    const byte = readFileSync(path).subarray(at, at + 1);
    patch(path, at, Buffer.from([(byte[0] as number) ^ 0xff]));
    const err = await collect(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JournalCorruptError);
    expect(err).toMatchObject({ code: 'ERR_JOURNAL_CORRUPT', file: path, fileOffset: victim.fileOffset + 128 });
    expect((err as Error).message).toMatch(/crc/);
  });

  it('CorruptBatchHeaderInMiddle: a destroyed batch header with intact batches after it is corruption', async () => {
    const dir = tempDir();
    const written = await fill(dir, 4, 1);
    const victim = written[1] as WrittenBatch;
    expect(written[2]?.segment).toBe(victim.segment);
    const path = join(dir, segmentFileName(victim.segment, 'log'));
    patch(path, victim.fileOffset, Buffer.alloc(128));
    await expect(collect(dir)).rejects.toMatchObject({ code: 'ERR_JOURNAL_CORRUPT', fileOffset: victim.fileOffset });
  });

  it('MissingSegment: a deleted middle segment is corruption (batches missing)', async () => {
    const dir = tempDir();
    await fill(dir, 20);
    const segs = listSegments(dir, 'log');
    rmSync(join(dir, segmentFileName(segs[1] as number, 'log')));
    await expect(collect(dir)).rejects.toMatchObject({ code: 'ERR_JOURNAL_CORRUPT' });
  });

  it('a damaged first header of a later segment, with its next batch intact, is corruption', async () => {
    const dir = tempDir();
    const written = await fill(dir, 20);
    const segs = listSegments(dir, 'log');
    const first = written.find((b) => b.segment === segs[2] && b.fileOffset === 0) as WrittenBatch;
    patch(join(dir, segmentFileName(first.segment, 'log')), 0, Buffer.alloc(128));
    await expect(collect(dir)).rejects.toMatchObject({ code: 'ERR_JOURNAL_CORRUPT' });
  });

  it('a recycled segment full of stale batches reads as unused space', async () => {
    const dir = tempDir();
    const written = await fill(dir, 20);
    const segs = listSegments(dir, 'log');
    // Retire the first segment the way the ingest log does once everything in it is applied.
    const scan = await scanLog(dir, 'log', () => {});
    const w = await SegmentLogWriter.open({ dir, extension: 'log', segmentBytes: SEGMENT }, scan);
    w.addSpare(join(dir, segmentFileName(segs[0] as number, 'log')));
    // Fill until the spare is taken as a new segment.
    let seq = 61;
    const lastSeg = written.at(-1)?.segment as number;
    let b: WrittenBatch;
    do {
      b = await w.append([write(seq++)]);
    } while (b.segment <= lastSeg);
    await w.close();
    expect(readdirSync(dir).filter((n) => n.startsWith('spare-'))).toHaveLength(0);
    const { seqs, summary } = await collect(dir);
    expect(seqs[0]).toBe(written.find((x) => x.segment === segs[1])?.records[0]?.fields.seq);
    expect(seqs.at(-1)).toBe(seq - 1);
    expect(summary.end.segment).toBe(b.segment);
  });

  it('puts a segment header first in every batch that opens a segment', async () => {
    const dir = tempDir();
    const scan = await scanLog(dir, 'log', () => {});
    const w = await SegmentLogWriter.open({ dir, extension: 'log', segmentBytes: SEGMENT }, scan);
    let headers = 0;
    for (let s = 1; s <= 40; s++) {
      await w.append([write(s)], () => {
        headers++;
        return { fields: { kind: RecordKind.SegmentStart, flags: 0, pairId: 'p1', seq: s - 1, time: (s - 1) * 1000, offset: 0 } };
      });
    }
    await w.close();
    const { batches } = await collect(dir);
    const opening = batches.filter((b) => b.fileOffset === 0);
    expect(opening.length).toBe(headers);
    for (const b of opening) expect(b.records[0]?.kind).toBe(RecordKind.SegmentStart);
    expect(batches.filter((b) => b.fileOffset > 0).every((b) => b.records[0]?.kind === RecordKind.Write)).toBe(true);
  });

  describe('after a power cut tore a batch', () => {
    /** Appends one batch of one record of `bytes`, reopening the log first; returns where it went. */
    async function appendAfterReopen(dir: string, seq: number, bytes: number): Promise<WrittenBatch> {
      const w = await openWriter(dir);
      try {
        return await w.append([write(seq, bytes)]);
      } finally {
        await w.close();
      }
    }

    /** Zeroes a batch from `keep` bytes on: its header reached the disk, the rest did not. */
    function tear(dir: string, b: WrittenBatch, keep = 4096): void {
      patch(join(dir, segmentFileName(b.segment, 'log')), b.fileOffset + keep, Buffer.alloc(b.bytes - keep));
    }

    /** Five 12 KiB batches (60 KiB of a 64 KiB segment), then a 20 KiB one that rolls: torn. */
    async function tornFirstBatchOfFreshSegment(dir: string): Promise<WrittenBatch> {
      const w = await openWriter(dir);
      for (let seq = 1; seq <= 5; seq++) await w.append([write(seq, 11_000)]);
      const rolled = await w.append([write(6, 19_000)]);
      await w.close();
      expect(rolled).toMatchObject({ segment: 2, fileOffset: 0 });
      tear(dir, rolled);
      return rolled;
    }

    /** Three 12 KiB batches, then a fourth torn: 28 KiB are left after the third in the 64 KiB segment. */
    async function tornFourthBatch(dir: string): Promise<WrittenBatch> {
      const w = await openWriter(dir);
      for (let seq = 1; seq <= 3; seq++) await w.append([write(seq, 11_000)]);
      const torn = await w.append([write(4, 11_000)]);
      await w.close();
      tear(dir, torn);
      return torn;
    }

    it('TornFirstBatchOfFreshSegment: the log ends in the segment before, and the torn one is reported', async () => {
      const dir = tempDir();
      await tornFirstBatchOfFreshSegment(dir);
      const { seqs, summary } = await collect(dir);
      expect(seqs).toEqual([1, 2, 3, 4, 5]);
      expect(summary.end).toEqual({ segment: 1, fileOffset: 5 * 12 * 1024 });
      expect(summary.tornTail).toMatchObject({ segment: 2, fileOffset: 0 });
      expect(summary.nextBatchNo).toBe(6);
    });

    it('TornFirstBatchThenSmaller: a batch that fits goes where the log ended, and the log reads whole twice over', async () => {
      const dir = tempDir();
      await tornFirstBatchOfFreshSegment(dir);
      expect(await appendAfterReopen(dir, 6, 3000)).toMatchObject({ segment: 1, fileOffset: 5 * 12 * 1024, batchNo: 6 });
      expect(listSegments(dir, 'log')).toEqual([1]);
      expect((await collect(dir)).seqs).toEqual([1, 2, 3, 4, 5, 6]);
      // Restart again: a batch that does not fit rolls, into the spare the torn segment became.
      expect(await appendAfterReopen(dir, 7, 19_000)).toMatchObject({ segment: 2, fileOffset: 0, batchNo: 7 });
      expect(readdirSync(dir).filter((n) => n.startsWith('spare-'))).toHaveLength(0);
      const { seqs, summary } = await collect(dir);
      expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7]);
      expect(summary.tornTail).toBeNull();
    });

    it('TornFirstBatchThenLarger: a batch that does not fit rolls again, over the torn one', async () => {
      const dir = tempDir();
      await tornFirstBatchOfFreshSegment(dir);
      expect(await appendAfterReopen(dir, 6, 30_000)).toMatchObject({ segment: 2, fileOffset: 0, batchNo: 6 });
      expect(await appendAfterReopen(dir, 7, 3000)).toMatchObject({ segment: 2, fileOffset: 32 * 1024, batchNo: 7 });
      const { seqs, summary } = await collect(dir);
      expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7]);
      expect(summary.tornTail).toBeNull();
    });

    it('TornBatchInMiddleThenLarger: a torn batch left behind by a roll is not taken for damage', async () => {
      const dir = tempDir();
      await tornFourthBatch(dir);
      // The item comes again, larger: 40 KiB do not fit the 28 KiB left after batch 3.
      expect(await appendAfterReopen(dir, 4, 40_000)).toMatchObject({ segment: 2, fileOffset: 0, batchNo: 4 });
      expect(await appendAfterReopen(dir, 5, 3000)).toMatchObject({ segment: 2, batchNo: 5 });
      const { seqs, summary } = await collect(dir);
      expect(seqs).toEqual([1, 2, 3, 4, 5]);
      expect(summary.tornTail).toBeNull();
    });

    it('still calls a damaged batch corruption when the next batch after it would have fitted', async () => {
      const dir = tempDir();
      const torn = await tornFourthBatch(dir);
      // Batch 4 again at the start of segment 2 though it fitted in segment 1: not what a writer does.
      const scan = await scanLog(dir, 'log', () => {});
      const bad = await SegmentLogWriter.open({ dir, extension: 'log', segmentBytes: SEGMENT }, { ...scan, end: { segment: 2, fileOffset: 0 } });
      await bad.append([write(4, 3000)]);
      await bad.close();
      await expect(collect(dir)).rejects.toMatchObject({ code: 'ERR_JOURNAL_CORRUPT', fileOffset: torn.fileOffset + 128 });
    });

    it('still calls a damaged batch corruption when a later batch of a higher number follows', async () => {
      const dir = tempDir();
      await tornFirstBatchOfFreshSegment(dir);
      // Segment 2's first batch torn, yet a batch numbered after it in segment 2: it had been flushed.
      const w = await openWriter(dir);
      await w.append([write(6, 30_000)]);
      const next = await w.append([write(7, 3000)]);
      await w.close();
      patch(join(dir, segmentFileName(2, 'log')), 4096, Buffer.alloc(4096));
      expect(next.segment).toBe(2);
      await expect(collect(dir)).rejects.toMatchObject({ code: 'ERR_JOURNAL_CORRUPT' });
    });
  });
});
