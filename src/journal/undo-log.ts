// A pair's undo log: for every applied item, in seq order, the before-image
// of a write or a copy of a tag, tick or resync marker. With the target kept
// at the latest applied item, these records are what rebuilds the past.
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BlockFile } from '../native';
import { JournalCorruptError } from './errors';
import { isItemRecord } from './items';
import { RecordKind, type DecodedRecord } from './record';
import {
  SegmentLogWriter,
  fsyncDir,
  listSegments,
  readBatchAt,
  scanLog,
  segmentFileName,
  type LogBatch,
  type PendingRecord,
  type WrittenBatch,
} from './segment-log';

export interface UndoSegmentSummary {
  segment: number;
  /** The last item before this segment: the oldest point it can roll back to. */
  prevSeq: number;
  prevTime: number | null;
  firstSeq: number | null;
  lastSeq: number | null;
  firstTime: number | null;
  lastTime: number | null;
  bytes: number;
}

export interface ItemPoint {
  seq: number;
  time: number;
}

export function undoDir(retentionDir: string, pairId: string): string {
  return join(retentionDir, 'pairs', pairId, 'undo');
}

function isUndoItem(r: DecodedRecord): boolean {
  return r.kind === RecordKind.UndoWrite || (isItemRecord(r) && r.kind !== RecordKind.Write);
}

export class UndoLog {
  readonly pairId: string;
  readonly dir: string;
  private readonly writer: SegmentLogWriter;
  private readonly summaries = new Map<number, UndoSegmentSummary>();
  private last: ItemPoint | null;

  private constructor(pairId: string, dir: string, writer: SegmentLogWriter, last: ItemPoint | null) {
    this.pairId = pairId;
    this.dir = dir;
    this.writer = writer;
    this.last = last;
  }

  /**
   * Opens the log, reading it through: `onRecord` sees every intact record
   * (the caller rebuilds its catalog from them), a torn tail is dropped.
   */
  static async open(
    retentionDir: string,
    pairId: string,
    segmentBytes: number,
    onRecord?: (record: DecodedRecord, batch: LogBatch) => void,
    beforeAllocate?: (bytes: number) => Promise<void>,
  ): Promise<UndoLog> {
    const dir = undoDir(retentionDir, pairId);
    const summaries = new Map<number, UndoSegmentSummary>();
    let last: ItemPoint | null = null;
    const scan = await scanLog(dir, 'undo', (batch) => {
      let s = summaries.get(batch.segment);
      for (const r of batch.records) {
        if (r.kind === RecordKind.SegmentStart) {
          s = { segment: batch.segment, prevSeq: r.seq, prevTime: r.seq > 0 ? r.time : null, firstSeq: null, lastSeq: null, firstTime: null, lastTime: null, bytes: 0 };
          summaries.set(batch.segment, s);
          continue;
        }
        if (!isUndoItem(r)) continue;
        if (s === undefined) throw new JournalCorruptError(join(dir, segmentFileName(batch.segment, 'undo')), batch.fileOffset, 'segment does not open with a SegmentStart record');
        if (last !== null && r.seq !== last.seq + 1) {
          throw new JournalCorruptError(join(dir, segmentFileName(batch.segment, 'undo')), batch.fileOffset, `undo record for seq ${r.seq} follows seq ${last.seq}`);
        }
        s.firstSeq ??= r.seq;
        s.firstTime ??= r.time;
        s.lastSeq = r.seq;
        s.lastTime = r.time;
        last = { seq: r.seq, time: r.time };
        onRecord?.(r, batch);
      }
    });
    const writer = await SegmentLogWriter.open({ dir, extension: 'undo', segmentBytes, beforeAllocate, stagingBuffers: 1 }, scan);
    const log = new UndoLog(pairId, dir, writer, last);
    for (const [n, s] of summaries) {
      s.bytes = statSync(join(dir, segmentFileName(n, 'undo'))).size;
      log.summaries.set(n, s);
    }
    return log;
  }

  /** The newest item with an undo record; null for an empty log. */
  get lastItem(): ItemPoint | null {
    return this.last;
  }

  /** Bytes this log has written since it was opened. */
  get bytesWritten(): number {
    return this.writer.bytesWritten;
  }

  get maxSeq(): number {
    return this.last?.seq ?? 0;
  }

  /** Oldest first. */
  segments(): UndoSegmentSummary[] {
    return [...this.summaries.values()].sort((a, b) => a.segment - b.segment);
  }

  get activeSegment(): number | null {
    const segs = this.segments();
    return segs.length > 0 ? (segs[segs.length - 1] as UndoSegmentSummary).segment : null;
  }

  /**
   * Appends records for consecutive items and makes them durable. `before`
   * is the item just before the first of them: it opens a new segment.
   */
  async append(records: readonly PendingRecord[], before: ItemPoint): Promise<WrittenBatch> {
    const batch = await this.writer.append(records, () => ({
      fields: { kind: RecordKind.SegmentStart, flags: 0, pairId: this.pairId, seq: before.seq, time: before.time, offset: 0 },
    }));
    let s = this.summaries.get(batch.segment);
    for (const { fields: r } of batch.records) {
      if (r.kind === RecordKind.SegmentStart) {
        s = { segment: batch.segment, prevSeq: r.seq, prevTime: r.seq > 0 ? r.time : null, firstSeq: null, lastSeq: null, firstTime: null, lastTime: null, bytes: this.writer.segmentBytes };
        this.summaries.set(batch.segment, s);
        continue;
      }
      if (s === undefined) throw new Error('undo batch without a segment summary');
      s.firstSeq ??= r.seq;
      s.firstTime ??= r.time;
      s.lastSeq = r.seq;
      s.lastTime = r.time;
      this.last = { seq: r.seq, time: r.time };
    }
    return batch;
  }

  /** Deletes a whole segment: history before its last item is no longer recoverable. */
  removeSegment(segment: number): void {
    if (segment === this.activeSegment) throw new Error(`segment ${segment} of ${this.pairId} is being written`);
    rmSync(join(this.dir, segmentFileName(segment, 'undo')), { force: true });
    fsyncDir(this.dir);
    this.summaries.delete(segment);
  }

  /** Every intact batch of one segment, in order. */
  async readSegment(segment: number): Promise<LogBatch[]> {
    const path = join(this.dir, segmentFileName(segment, 'undo'));
    const file = await BlockFile.open(path, { readOnly: true });
    const out: LogBatch[] = [];
    try {
      let pos = 0;
      for (;;) {
        const r = await readBatchAt(file, segment, pos, file.sizeAtOpen);
        if (!r.ok) break;
        out.push(r.batch);
        pos += r.batch.bytes;
      }
    } finally {
      await file.close();
    }
    return out;
  }

  segmentPath(segment: number): string {
    return join(this.dir, segmentFileName(segment, 'undo'));
  }

  async close(): Promise<void> {
    await this.writer.close();
  }

  /** Removes the whole log (commit after failover, purge). */
  async destroy(): Promise<void> {
    await this.writer.close();
    for (const n of listSegments(this.dir, 'undo')) rmSync(join(this.dir, segmentFileName(n, 'undo')), { force: true });
    rmSync(this.dir, { recursive: true, force: true });
    this.summaries.clear();
  }
}
