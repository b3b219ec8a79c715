// The shared write-ahead log. Every pair's items go into one sequence of
// batches; one pwritev and one fdatasync make a whole batch durable, however
// many streams wrote into it (group commit). A segment is recycled once every
// pair has applied past it.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MtagentError, isSystemError } from '../errors';
import type { IoPriority } from '../native';
import type { ItemRecord } from './items';
import type { StagingSource, WrittenBatch } from './segment-log';
import {
  SegmentLogWriter,
  listSegments,
  scanLog,
  segmentFileName,
  type LogBatch,
  type LogPosition,
  type EncodedBatch,
  type ScanSummary,
} from './segment-log';
import { RECORD_HEADER_BYTES, recordSize } from './record';

export interface IngestLogOptions {
  dir: string;
  segmentBytes: number;
  /** Largest batch written at once (a bigger append is split over several). */
  maxBatchBytes: number;
  /**
   * Called before a new segment is allocated: frees space (shortening
   * history) or waits for the applier, and throws `retention-full` when
   * neither helps. Not called when a recycled segment is reused.
   */
  beforeAllocate?: (bytes: number) => Promise<void>;
  /** Every durable batch, in order; its records are the ones appended (staged, their writes' data is the batch's copy). */
  onBatch: (batch: IngestBatch) => void;
  /** Memory to encode each batch in; the written batch carries it to onBatch, which owns it then. */
  stagingSource?: StagingSource;
  /** The log has nothing left to write. */
  onIdle?: () => void;
  /** A write failed for good (an I/O error, a volume gone read-only): nothing more can be made durable. */
  onFailed?: (err: unknown) => void;
  /** The engine's disk scheduler: this log's writes and flushes are its foreground I/O. */
  priority?: IoPriority;
}

/** A durable batch of the ingest log: every record in it holds a stream item. */
export interface IngestBatch extends Omit<WrittenBatch, 'records'> {
  records: readonly ItemRecord[];
}

interface Request {
  /** 1, 2, 3... in the order of append; requests settle in that order. */
  number: number;
  records: readonly ItemRecord[];
  next: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class IngestLog {
  readonly dir: string;
  private readonly writer: SegmentLogWriter;
  private readonly options: IngestLogOptions;
  private queue: Request[] = [];
  private writing = false;
  private closed = false;
  private failure: unknown = null;
  private appended = 0;
  private settled = 0;
  private drainWaiters: Array<{ through: number; resolve: () => void }> = [];
  private recyclingHolds = 0;
  /** The newest release asked for while recycling was held. */
  private heldRelease: LogPosition | null = null;
  /** Records count and bytes written, for metrics and benchmarks. */
  bytesWritten = 0;
  batchesWritten = 0;

  private constructor(options: IngestLogOptions, writer: SegmentLogWriter) {
    this.dir = options.dir;
    this.options = options;
    this.writer = writer;
  }

  /** Scans the log (every intact batch goes to `onScanned`) and opens it for appending. */
  static async open(options: IngestLogOptions, onScanned: (batch: LogBatch) => void | Promise<void>): Promise<{ log: IngestLog; scan: ScanSummary }> {
    const scan = await scanLog(options.dir, 'log', onScanned);
    const writer = await SegmentLogWriter.open(
      {
        dir: options.dir,
        extension: 'log',
        segmentBytes: options.segmentBytes,
        beforeAllocate: options.beforeAllocate,
        foreground: true,
        ...(options.priority ? { priority: options.priority } : {}),
        ...(options.stagingSource ? { stagingSource: options.stagingSource } : {}),
      },
      scan,
    );
    return { log: new IngestLog(options, writer), scan };
  }

  /** Resolves when every record is durable. Records of one call keep their order. */
  append(records: readonly ItemRecord[]): Promise<void> {
    if (this.closed) return Promise.reject(new MtagentError('ERR_CLOSED', 'the ingest log is closed'));
    if (this.failure !== null) return Promise.reject(this.failure);
    if (records.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ number: ++this.appended, records, next: 0, resolve, reject });
      this.kick();
    });
  }

  /** Segments past the end that the open kept as spares (made or torn just before a crash). */
  get sparedAtOpen(): readonly number[] {
    return this.writer.sparedAtOpen;
  }

  /** Whether a recycled segment is ready, so the next segment needs no new space. */
  hasSpare(): boolean {
    return this.writer.spareCount > 0;
  }

  /** Gives back the disk space of recycled segments beyond `keep`. */
  dropSpares(keep: number): number {
    const freed = this.writer.dropSpares(keep);
    if (freed > 0) this.usedCache.at = 0;
    return freed;
  }

  /** Where the next batch will be written. */
  get end(): LogPosition {
    return this.writer.end;
  }

  /**
   * Keeps segments from being recycled until the result is called (verify
   * reads them); releases asked for meanwhile happen then.
   */
  holdRecycling(): () => void {
    this.recyclingHolds++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.recyclingHolds--;
      if (this.recyclingHolds === 0 && this.heldRelease !== null) {
        const position = this.heldRelease;
        this.heldRelease = null;
        this.release(position);
      }
    };
  }

  /** Recycles every segment wholly before `position`: nothing in them is needed any more. */
  release(position: LogPosition): number {
    if (this.recyclingHolds > 0) {
      this.heldRelease = position;
      return 0;
    }
    let released = 0;
    for (const n of listSegments(this.dir, 'log')) {
      if (n >= position.segment || n >= this.writer.currentSegment) break;
      this.writer.addSpare(join(this.dir, segmentFileName(n, 'log')));
      released++;
    }
    return released;
  }

  /** Bytes the log occupies on the volume, spares included. */
  usedBytes(): number {
    let total = 0;
    for (const name of readdirSync(this.dir)) {
      if (name.endsWith('.log')) total += statSync(join(this.dir, name)).size;
    }
    this.usedCache = { bytes: total, at: Date.now() };
    return total;
  }

  private usedCache = { bytes: 0, at: 0 };

  /** usedBytes(), measured at most every 250 ms (it lists the folder). */
  usedBytesCached(): number {
    return Date.now() - this.usedCache.at < 250 ? this.usedCache.bytes : this.usedBytes();
  }

  segmentPath(segment: number): string {
    return join(this.dir, segmentFileName(segment, 'log'));
  }

  /**
   * Waits until everything appended before the call is durable (or refused).
   * Appends made meanwhile are not waited for, so it ends under any load.
   */
  async drain(): Promise<void> {
    const through = this.appended;
    if (this.settled >= through) return;
    await new Promise<void>((resolve) => this.drainWaiters.push({ through, resolve }));
  }

  private settle(req: Request, err?: unknown): void {
    if (err === undefined) req.resolve();
    else req.reject(err);
    if (req.number <= this.settled) return;
    this.settled = req.number;
    if (this.drainWaiters.length === 0) return;
    const waiting = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiting) {
      if (w.through <= this.settled) w.resolve();
      else this.drainWaiters.push(w);
    }
  }

  async close(): Promise<void> {
    // Nothing is appended from here; once what was appended settles, the write loop has ended.
    this.closed = true;
    await this.drain();
    await this.writer.close();
  }

  private kick(): void {
    if (this.writing) return;
    this.writing = true;
    void this.writeLoop();
  }

  /**
   * One batch in flight at a time; while it is written and flushed, the next
   * is already encoded (two staging buffers), so the disk never waits on the CPU.
   */
  private async writeLoop(): Promise<void> {
    try {
      let current = this.prepare();
      while (current !== null) {
        const writing = this.writer.commit(current.encoded);
        const following = this.prepare();
        try {
          const batch = await writing;
          this.bytesWritten += batch.bytes;
          this.batchesWritten++;
          this.options.onBatch({ ...batch, records: current.records });
          for (const r of current.finished) this.settle(r);
        } catch (err) {
          const failure = toIngestError(err);
          // Nothing of the failed batch, nor of the one encoded behind it, is durable.
          const failed = new Set([...current.touched, ...(following?.touched ?? []), ...this.queue]);
          for (const r of failed) this.settle(r, failure);
          this.queue = [];
          if (!(failure instanceof MtagentError && failure.code === 'retention-full')) {
            this.failure = failure;
            this.options.onFailed?.(failure);
          }
          break;
        }
        current = following ?? this.prepare();
      }
    } finally {
      this.writing = false;
      this.options.onIdle?.();
      if (this.queue.length > 0 && this.failure === null) this.kick();
    }
  }

  /** Whether a batch is being written or waits to be. */
  get busy(): boolean {
    return this.writing || this.queue.length > 0;
  }

  /**
   * Takes queued records up to the batch limit and encodes them. `finished`
   * are the requests whose last record is in this batch; `touched` all it holds.
   */
  private prepare(): { encoded: EncodedBatch<ItemRecord>; records: ItemRecord[]; finished: Request[]; touched: Request[] } | null {
    if (this.queue.length === 0 || this.failure !== null) return null;
    const limit = Math.min(this.options.maxBatchBytes, this.writer.maxBatchBytes);
    const records: ItemRecord[] = [];
    const finished: Request[] = [];
    const touched: Request[] = [];
    let bytes = RECORD_HEADER_BYTES;
    while (this.queue.length > 0) {
      const req = this.queue[0] as Request;
      touched.push(req);
      while (req.next < req.records.length) {
        const r = req.records[req.next] as ItemRecord;
        const size = recordSize(r.payload?.length ?? 0);
        if (records.length > 0 && bytes + size > limit - 4096) break;
        records.push(r);
        bytes += size;
        req.next++;
      }
      if (req.next < req.records.length) break;
      finished.push(req);
      this.queue.shift();
    }
    const encoded = this.writer.encode(records);
    // Staged, a write's payload now lives in the batch: its item follows, so
    // the message it arrived in is held by nothing and is collected young.
    for (const r of records) if (r.item.kind === 'write' && r.payload !== undefined && r.payload !== r.item.data) r.item = { ...r.item, data: r.payload as Buffer };
    return { encoded, records, finished, touched };
  }
}

function toIngestError(err: unknown): unknown {
  if (isSystemError(err) && (err.code === 'ENOSPC' || err.code === 'EDQUOT')) {
    return new MtagentError('retention-full', `the retention volume is full: ${err.message}`, { cause: err });
  }
  return err;
}
