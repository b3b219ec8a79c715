import { closeSync, openSync, readSync, readdirSync, writeSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { JournalCorruptError } from '../../../src/journal/errors';
import { RecordKind } from '../../../src/journal/record';
import type { PendingRecord } from '../../../src/journal/segment-log';
import { UndoLog } from '../../../src/journal/undo-log';
import { KiB, MiB } from '../../helpers/engine-fixture';
import { useTempDir } from '../../helpers/temp-dir';

const tempDir = useTempDir();

function undoRecord(seq: number, bytes: number): PendingRecord {
  return {
    fields: { kind: RecordKind.UndoWrite, flags: 0, pairId: 'p', seq, time: seq * 1000, offset: 0 },
    payload: Buffer.alloc(bytes, seq & 0xff),
  };
}

const seqsOf = (batches: Awaited<ReturnType<UndoLog['readSegment']>>): number[] =>
  batches.flatMap((b) => b.records.filter((r) => r.kind === RecordKind.UndoWrite).map((r) => r.seq));

describe('undo log', () => {
  it('reads the segment being written up to what was durable when the read began, while appends go on', async () => {
    // Batches of 256 KiB: a read that scanned to the end of the file met
    // batches landing while it read, and took the gap before them for damage.
    const undo = await UndoLog.open(tempDir(), 'p', 64 * MiB);
    let seq = 0;
    let stop = false;
    let done = false;
    const appending = (async () => {
      while (!stop && seq < 900) { // 900 × 64 KiB stays in the first 64 MiB segment
        const records = Array.from({ length: 4 }, () => undoRecord(++seq, 64 * KiB));
        await undo.append(records, { seq: 0, time: 0 });
      }
      done = true;
    })();
    try {
      while (seq < 8) await new Promise((r) => setImmediate(r));
      let reads = 0;
      while (!done || reads < 5) {
        reads++;
        const before = undo.lastItem?.seq ?? 0;
        const seqs = seqsOf(await undo.readSegment(undo.activeSegment as number));
        // A gapless prefix 1..n that holds at least what was durable when the read began.
        const bad = seqs.findIndex((s, k) => s !== k + 1);
        expect(bad, `at ${bad}: ${seqs.slice(Math.max(0, bad - 2), bad + 3).join(",")}`).toBe(-1);
        expect(seqs.length).toBeGreaterThanOrEqual(before);
      }
    } finally {
      stop = true;
      await appending;
    }
    await undo.close();
  });

  it('does not take a batch that lands past the durable end, before the one at the end, for damage', async () => {
    // The state a read can meet while appends go on, set up directly: the
    // next batch is not on disk yet and a later one is.
    const undo = await UndoLog.open(tempDir(), 'p', 64 * MiB);
    await undo.append([undoRecord(1, 64 * KiB)], { seq: 0, time: 0 });
    const second = await undo.append([undoRecord(2, 64 * KiB)], { seq: 0, time: 0 });
    const end = second.fileOffset + second.bytes;
    const fd = openSync(undo.segmentPath(second.segment), 'r+');
    const copy = Buffer.alloc(second.bytes);
    readSync(fd, copy, 0, second.bytes, second.fileOffset);
    writeSync(fd, copy, 0, copy.length, end + 4 * second.bytes);
    closeSync(fd);
    expect(seqsOf(await undo.readSegment(second.segment))).toEqual([1, 2]);
    await undo.close();
  });

  it('still refuses a segment whose durable part is damaged', async () => {
    const undo = await UndoLog.open(tempDir(), 'p', 64 * MiB);
    await undo.append([undoRecord(1, 64 * KiB)], { seq: 0, time: 0 });
    const second = await undo.append([undoRecord(2, 64 * KiB)], { seq: 0, time: 0 });
    await undo.append([undoRecord(3, 64 * KiB)], { seq: 0, time: 0 });
    const fd = openSync(undo.segmentPath(second.segment), 'r+');
    writeSync(fd, Buffer.alloc(4096), 0, 4096, second.fileOffset);
    closeSync(fd);
    await expect(undo.readSegment(second.segment)).rejects.toBeInstanceOf(JournalCorruptError);
    await undo.close();
  });

  it('keeps at most one removed segment as a spare, reads the segment written into it as its own, and drops the spare on request', async () => {
    const root = tempDir();
    const undo = await UndoLog.open(root, 'p', 256 * KiB);
    let seq = 0;
    try {
      // 60 KiB records: four fit a 256 KiB segment, so every fourth append rolls.
      while ((undo.activeSegment ?? 0) < 3) await undo.append([undoRecord(++seq, 60 * KiB)], { seq: 0, time: 0 });
      const [first, second] = undo.segments();
      undo.removeSegment(first?.segment as number, true);
      undo.removeSegment(second?.segment as number, true);
      expect(readdirSync(undo.dir).filter((n) => n.startsWith('spare-'))).toHaveLength(1);
      expect(undo.spareBytes).toBe(256 * KiB);
      // The next roll takes the spare: what it held before reads as nothing of the new segment.
      const before = undo.activeSegment;
      while (undo.activeSegment === before) await undo.append([undoRecord(++seq, 60 * KiB)], { seq: 0, time: 0 });
      expect(undo.spareBytes).toBe(0);
      const fresh = undo.segments().at(-1);
      expect(seqsOf(await undo.readSegment(fresh?.segment as number))).toEqual([seq]);
      undo.removeSegment(undo.segments()[0]?.segment as number, true);
      expect(undo.dropSpares()).toBe(256 * KiB);
      expect(readdirSync(undo.dir).filter((n) => n.startsWith('spare-'))).toHaveLength(0);
    } finally {
      await undo.close();
    }
    // Reopened, the log reads every segment left whole, the recycled one included.
    const again = await UndoLog.open(root, 'p', 256 * KiB);
    try {
      expect(again.maxSeq).toBe(seq);
      const seqs = (await Promise.all(again.segments().map((s) => again.readSegment(s.segment)))).flatMap(seqsOf);
      expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => seq - seqs.length + 1 + i));
    } finally {
      await again.close();
    }
  });
});

describe('undo log after a power cut tore the first batch of a fresh segment', () => {
  /** Zeroes a batch's bytes from `keep` on: its header reached the disk, the rest did not. */
  function tear(path: string, fileOffset: number, bytes: number, keep: number): void {
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.alloc(bytes - keep), 0, bytes - keep, fileOffset + keep);
    closeSync(fd);
  }

  it('reopens, takes smaller and larger batches and rolls again, and reads back whole after each restart', async () => {
    const root = tempDir();
    const before = { seq: 0, time: 0 };
    let undo = await UndoLog.open(root, 'p', 1 * MiB);
    let seq = 0;
    for (let i = 0; i < 6; i++) await undo.append([undoRecord(++seq, 132 * KiB)], before);
    const rolled = await undo.append([undoRecord(++seq, 300 * KiB)], before);
    expect(rolled.fileOffset).toBe(0);
    await undo.close();
    tear(undo.segmentPath(rolled.segment), 0, rolled.bytes, 8 * KiB);
    seq--; // the torn item was never acknowledged: it is applied again

    // The re-applied item is smaller this time: it fits where the log ended.
    undo = await UndoLog.open(root, 'p', 1 * MiB);
    expect(undo.maxSeq).toBe(seq);
    const small = await undo.append([undoRecord(++seq, 64 * KiB)], before);
    expect(small.segment).toBe(rolled.segment - 1);
    await undo.close();

    // Restart: the log opens, then a batch too large for what is left rolls.
    undo = await UndoLog.open(root, 'p', 1 * MiB);
    expect(undo.maxSeq).toBe(seq);
    const large = await undo.append([undoRecord(++seq, 300 * KiB)], before);
    expect(large).toMatchObject({ segment: rolled.segment, fileOffset: 0 });
    for (let i = 0; i < 4; i++) await undo.append([undoRecord(++seq, 132 * KiB)], before);
    await undo.close();

    undo = await UndoLog.open(root, 'p', 1 * MiB);
    try {
      expect(undo.maxSeq).toBe(seq);
      const seqs = (await Promise.all(undo.segments().map((s) => undo.readSegment(s.segment)))).flatMap(seqsOf);
      expect(seqs).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
    } finally {
      await undo.close();
    }
  });
});

describe('undo log opened with a catalog a power cut left behind it', () => {
  it('does not trust the newest segment the catalog indexes, and reads on from there', async () => {
    const root = tempDir();
    const undo = await UndoLog.open(root, 'p', 256 * KiB);
    let seq = 0;
    // 60 KiB records: four to a 256 KiB segment.
    while ((undo.activeSegment ?? 0) < 3) await undo.append([undoRecord(++seq, 60 * KiB)], { seq: seq - 1, time: (seq - 1) * 1000 });
    // The catalog's last surviving commit: segment 3 was being written, with one record in it.
    const behind = undo.segments().map((s) => (s.segment === 3 ? { ...s, lastSeq: s.firstSeq, lastTime: s.firstTime } : s));
    while ((undo.activeSegment ?? 0) < 7) await undo.append([undoRecord(++seq, 60 * KiB)], { seq: seq - 1, time: (seq - 1) * 1000 });
    const truth = undo.segments();
    await undo.close();
    const again = await UndoLog.open(root, 'p', 256 * KiB, { known: behind });
    try {
      expect(again.maxSeq).toBe(seq);
      expect(again.segments().map(({ bytes: _, ...s }) => s)).toEqual(truth.map(({ bytes: _, ...s }) => s));
    } finally {
      await again.close();
    }
  });

  it('reads the whole log when what the catalog indexes does not meet the segment after it', async () => {
    const root = tempDir();
    const undo = await UndoLog.open(root, 'p', 256 * KiB);
    let seq = 0;
    while ((undo.activeSegment ?? 0) < 6) await undo.append([undoRecord(++seq, 60 * KiB)], { seq: seq - 1, time: (seq - 1) * 1000 });
    const truth = undo.segments();
    await undo.close();
    // Rows for segments 1..4 with segment 2 ending early: no longer the segment 3 that follows it.
    const wrong = truth.slice(0, 4).map((s) => (s.segment === 2 ? { ...s, lastSeq: (s.lastSeq as number) - 1 } : s));
    const seen: number[] = [];
    const again = await UndoLog.open(root, 'p', 256 * KiB, { onRecord: (r) => seen.push(r.seq), known: wrong });
    try {
      expect(again.segments().map(({ bytes: _, ...s }) => s)).toEqual(truth.map(({ bytes: _, ...s }) => s));
      expect(seen).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
    } finally {
      await again.close();
    }
  });
});
