// Applies durable items to the targets, in seq order, one cycle at a time.
// Its input is the ingest log from `cursor` on: recent batches come from
// memory (bounded), older ones are read back from the log. A pair whose
// target fails is paused alone: it remembers where to resume, and the rest
// go on.
import type { IngestBatch, IngestLog } from '../journal/ingest-log';
import { isItemRecord, recordItem, type StreamItem } from '../journal/items';
import { BATCH_ALIGNMENT, RECORD_HEADER_BYTES } from '../journal/record';
import { comparePositions, openForReading, readBatchAt, type LogBatch, type LogPosition } from '../journal/segment-log';
import type { ItemPoint, UndoLog } from '../journal/undo-log';
import { applyItems, finishApply, prepareApply, type ApplyPlan, type ApplyResult, type ResyncCapture } from './pair-applier';
import type { Extent } from './overlay';
import { BACKGROUND_IO_PIECE_BYTES, alignedBuffer, type BlockFile, type IoPriority } from '../native';
import { SlabArena, type SlabCarver, type SlabPool } from './slab-pool';
import { MAX_WRITE_BYTES } from '../protocol/constants';
import type { TargetDisk } from './target';
import { ApplyTimings } from './apply-timings';

/** What the applier reads of a pair's state, and the transitions it makes (engine/pair-state.ts is the machine). */
export interface ApplyGate {
  /** Applying stops for a pair that is paused; its items stay in the log. */
  readonly paused: boolean;
  /** The owner lets a paused pair try again. */
  readonly wantsResume: boolean;
  /** Where a paused pair resumes reading the log; null when nothing of it was skipped. */
  readonly resumeFrom: LogPosition | null;
  /** Applying failed: the pair pauses. True when the error is news. */
  stopped(message: string): boolean;
  skippedFrom(at: LogPosition): void;
  resumeBegins(): void;
  resumeEnds(left: LogPosition | null): void;
}

export interface ApplierPair {
  pairId: string;
  appliedSeq: number;
  /** The item at appliedSeq (seq 0, time 0 before any). */
  appliedPoint: ItemPoint;
  undo: UndoLog;
  target: TargetDisk | null;
  state: ApplyGate;
  /** The previous step's extents while they may still be landing on the target. */
  inflight?: readonly Extent[] | null;
  /** Its resync windows, and whether the open one's writes keep before-images. */
  resync: ResyncCapture;
}

export interface ApplierOptions<P extends ApplierPair = ApplierPair> {
  ingest: IngestLog;
  pairs: ReadonlyMap<string, P>;
  /** Log bytes taken per cycle. */
  cycleBytes: number;
  /** Most a pair applies in one step: its undo batch must fit an undo segment. */
  maxStepBytes: number;
  /** Batches kept in memory for the applier; beyond it they are read back from the log. */
  memoryBudgetBytes: number;
  /** Memory for the extents of a cycle's steps: two cycles hold some at once (stage A and stage B). */
  extentMemory: SlabPool;
  /** Memory for batches read back from the log: the cycle being prepared and the one read ahead hold some. */
  batchMemory: SlabPool;
  /** Where the ingest log's staging memory comes from: durable batches bring it along (WrittenBatch.staging), the applier releases it. */
  staging: SlabCarver;
  onApplied: (pair: P, result: ApplyResult) => void;
  /** The pair has paused on `err`; `news` unless it is the error it had already. */
  onPaused: (pair: P, err: unknown, news: boolean) => void;
  onResumed: (pair: P) => void;
  /** Errors of the loop itself (reading the log): the owner reports them. The applier stops after one. */
  onError: (err: unknown) => void;
  /** True while acknowledgements should have the disk: the applier waits to be poked again. */
  shouldYield?: () => boolean;
  /**
   * Less than a cycle waiting in memory is applied once it is this old (ms),
   * or at once when more comes or `mayGather` says no. 0: at once.
   */
  gatherMs?: number;
  /** True while nobody needs the applier to hurry (no waiter on an applied seq, for room, or on the lag). */
  mayGather?: () => boolean;
  /** The engine's disk scheduler: reading the log back is background I/O that gives way to it. */
  priority?: IoPriority;
  /** Where the time goes (the metrics show it). */
  timings?: ApplyTimings;
}

/** A durable batch as the applier sees it: its place in the log and the items in it. */
export interface ApplyBatch {
  /** The ingest log's staging memory the entries are views of: given back once stage A is done with them. */
  staging?: Buffer;
  segment: number;
  fileOffset: number;
  bytes: number;
  entries: Array<{ pairId: string; item: StreamItem }>;
  /** Memory the batch holds: payloads plus a little per item. */
  memoryBytes: number;
}

const ENTRY_OVERHEAD = 160;

export function fromLogBatch(batch: LogBatch): ApplyBatch {
  const entries = batch.records.filter(isItemRecord).map((r) => ({ pairId: r.pairId, item: recordItem(r, batch.buffer) }));
  return { segment: batch.segment, fileOffset: batch.fileOffset, bytes: batch.bytes, entries, memoryBytes: batch.bytes };
}

/**
 * A batch just written, no decoding and no copy. When the log handed over its
 * staging memory, the items' payloads are views of that copy already (the
 * writer pointed them there when it encoded the batch), so the buffers they
 * arrived in can be collected: held until applied, those buffers outlived
 * V8's young generation and cost full collections (a fifth of the daemon's
 * CPU at 300 MB/s).
 */
export function fromWrittenBatch(batch: IngestBatch): ApplyBatch {
  const entries: ApplyBatch['entries'] = [];
  let memoryBytes = 0;
  const staging = batch.staging;
  for (const r of batch.records) {
    entries.push({ pairId: r.fields.pairId, item: r.item });
    memoryBytes += ENTRY_OVERHEAD + (r.item.kind === 'write' ? r.item.data.length : 0);
  }
  const base = { segment: batch.segment, fileOffset: batch.fileOffset, bytes: batch.bytes, entries };
  // Staged, the batch holds its whole encoded size; otherwise only the payloads it keeps alive.
  return staging !== null ? { ...base, memoryBytes: batch.bytes, staging } : { ...base, memoryBytes };
}

/** Batches to apply together, and the memory those read back from the log are views of. */
interface Cycle {
  batches: ApplyBatch[];
  memory: SlabArena;
}

/** Slabs for a cycle's extents: a usual cycle (cycleBytes and one batch more) fits one whole. */
export function extentSlabBytes(cycleBytes: number, maxBatchBytes: number): number {
  return cycleBytes + maxBatchBytes + MAX_WRITE_BYTES;
}

/**
 * Slabs for batches (encoded by the ingest log, or read back): every batch fits
 * one. Small enough that a slab goes back soon after the batches in it are applied.
 */
export function batchSlabBytes(maxBatchBytes: number): number {
  return Math.max(maxBatchBytes, MAX_WRITE_BYTES) + 64 * 1024;
}

export class Applier<P extends ApplierPair = ApplierPair> {
  private readonly options: ApplierOptions<P>;
  readonly timings: ApplyTimings;
  private cursor: LogPosition;
  private durableEnd: LogPosition;
  private memory: ApplyBatch[] = [];
  private memoryBytes = 0;
  /** While set, batches from the cursor up to here are read from the log. */
  private diskUntil: LogPosition | null;
  private running = false;
  /** Everything before this is applied by every active pair (stage B done). */
  private appliedUpTo: LogPosition;
  private stopped = false;
  private wake: (() => void) | null = null;
  private idleWaiters: Array<() => void> = [];
  /**
   * The next cycle, read from the log while the current one is applied. It
   * has moved the cursor already; nothing else reads the log until it settles.
   */
  private prefetched: Promise<Cycle> | null = null;
  /** The log segment being read, kept open from one batch to the next. */
  private reader: { segment: number; file: BlockFile } | null = null;
  private readonly batchHead = alignedBuffer(BATCH_ALIGNMENT);
  /** When the oldest batch not yet taken into a cycle arrived (performance.now()); null when none waits. */
  private pendingSince: number | null = null;
  private gatherTimer: NodeJS.Timeout | null = null;

  constructor(options: ApplierOptions<P>, start: LogPosition, durableEnd: LogPosition) {
    this.options = options;
    this.timings = options.timings ?? new ApplyTimings();
    this.cursor = start;
    this.appliedUpTo = start;
    this.durableEnd = durableEnd;
    this.diskUntil = comparePositions(start, durableEnd) < 0 ? durableEnd : null;
  }

  /**
   * A batch just made durable. What is left to apply is [cursor, diskUntil)
   * in the log, then the batches in memory up to the durable end; when memory
   * would overflow it is dropped and the log is read instead.
   */
  enqueue(batch: ApplyBatch): void {
    const end = { segment: batch.segment, fileOffset: batch.fileOffset + batch.bytes };
    if (this.memoryBytes + batch.memoryBytes > this.options.memoryBudgetBytes) {
      for (const dropped of [...this.memory, batch]) if (dropped.staging) this.options.staging.release(dropped.staging);
      this.memory = [];
      this.memoryBytes = 0;
      this.diskUntil = end;
    } else {
      this.memory.push(batch);
      this.memoryBytes += batch.memoryBytes;
    }
    this.durableEnd = end;
    this.pendingSince ??= performance.now();
    this.poke();
  }

  /**
   * Whether to wait for more before the next cycle, and if so, when to go on.
   * At a moderate load the ingest log goes idle between batches, and a cycle
   * for each batch cost the disk a target flush and an undo flush per batch,
   * in the way of the acknowledgements' flushes; gathered, a cycle carries
   * many batches. Items are durable already: only the target waits.
   */
  private gathering(): boolean {
    const ms = this.options.gatherMs ?? 0;
    if (ms <= 0 || this.stopped || this.diskUntil !== null || this.prefetched !== null || this.memory.length === 0) return false;
    if (this.memoryBytes >= this.options.cycleBytes || !(this.options.mayGather?.() ?? false)) return false;
    if (this.anyWantsResume()) return false;
    const left = (this.pendingSince ?? 0) + ms - performance.now();
    if (left <= 0) return false;
    this.gatherTimer ??= setTimeout(() => {
      this.gatherTimer = null;
      this.poke();
    }, Math.ceil(left));
    return true;
  }

  poke(): void {
    if (this.wake) {
      const w = this.wake;
      this.wake = null;
      w();
    }
    if (!this.running && !this.stopped) {
      this.running = true;
      void this.loop();
    }
  }

  /** Where the ingest log may be recycled up to: nobody needs anything before it. */
  releasePosition(): LogPosition {
    let pos = this.appliedUpTo;
    for (const p of this.options.pairs.values()) {
      const from = p.state.resumeFrom;
      if (from && comparePositions(from, pos) < 0) pos = from;
    }
    return pos;
  }

  /** Resolves when nothing is left to apply for the active pairs. */
  async idle(): Promise<void> {
    if (!this.running) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.gatherTimer !== null) clearTimeout(this.gatherTimer);
    this.gatherTimer = null;
    this.poke();
    await this.idle();
    await this.settlePrefetch();
    await this.closeReader();
  }

  private anyWantsResume(): boolean {
    return [...this.options.pairs.values()].some((p) => p.state.wantsResume);
  }

  get pending(): boolean {
    return comparePositions(this.cursor, this.durableEnd) < 0 || this.memory.length > 0 || this.prefetched !== null;
  }

  private takeCycle(): Promise<Cycle> {
    const cycle = this.prefetched ?? this.nextCycle();
    this.prefetched = null;
    return cycle;
  }

  /** Starts reading the next cycle when it comes from the log: that read overlaps this cycle's work. */
  private prefetch(): void {
    if (this.diskUntil === null || this.prefetched !== null) return;
    const cycle = this.nextCycle();
    cycle.catch(() => undefined); // raised where it is taken
    this.prefetched = cycle;
  }

  /** Waits for a read ahead to finish moving the cursor. */
  private async settlePrefetch(): Promise<void> {
    await this.prefetched?.catch(() => undefined);
  }

  /**
   * Each cycle has two stages: A reads before-images and makes them durable
   * in the undo logs, B writes the targets and flushes them. B of one cycle
   * runs while A of the next is under way; B's of two cycles never overlap.
   */
  private async loop(): Promise<void> {
    const began = performance.now();
    let stageB: Promise<void> = Promise.resolve();
    // The memory of the extents that `stageB` writes: given back once it is done.
    let landing: SlabArena | null = null;
    const giveBack = (): void => {
      landing?.release();
      landing = null;
    };
    try {
      while (!this.stopped) {
        if (this.options.shouldYield?.() || this.gathering()) break;
        if (this.anyWantsResume()) {
          await stageB;
          await this.settlePrefetch();
          await this.resumePairs();
        }
        const cycle = await this.takeCycle();
        if (this.memory.length === 0) this.pendingSince = null;
        const last = cycle.batches[cycle.batches.length - 1];
        if (last === undefined) {
          cycle.memory.release();
          break;
        }
        const cycleEnd = { segment: last.segment, fileOffset: last.fileOffset + last.bytes };
        this.prefetch();
        const extentsMemory = new SlabArena(this.options.extentMemory);
        const plans = await this.prepareCycle(cycle.batches, extentsMemory, () => stageB);
        // Stage A has copied what it needs out of the batches (into extents and undo records).
        cycle.memory.release();
        await stageB;
        // The previous cycle has landed and this one's stage A has overlaid it: its memory is free.
        giveBack();
        landing = extentsMemory;
        stageB = this.finishCycle(plans).then(() => {
          this.appliedUpTo = cycleEnd;
          this.options.ingest.release(this.releasePosition());
        });
        // Awaited in the next round; until then a failure (a volume gone
        // read-only under the release) must not count as unhandled, which
        // would end the process before the engine can stop on it.
        stageB.catch(() => undefined);
      }
      await stageB;
      giveBack();
      this.options.ingest.release(this.releasePosition());
      if (this.stopped) await this.settlePrefetch();
    } catch (err) {
      // The loop does not go round again: the same error would come back at once, for ever.
      this.stopped = true;
      await stageB.catch(() => undefined);
      await this.settlePrefetch();
      this.prefetched = null;
      this.options.onError(err);
    } finally {
      this.timings.busySeconds += (performance.now() - began) / 1000;
      this.running = false;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
      if (!this.stopped && !this.options.shouldYield?.() && this.gatherTimer === null && (this.pending || this.anyWantsResume())) {
        // Something arrived while finishing: go round again.
        setImmediate(() => this.poke());
      }
    }
  }

  /** Up to cycleBytes of batches from the cursor on, from memory or from the log. */
  private async nextCycle(): Promise<Cycle> {
    const out: ApplyBatch[] = [];
    const memory = new SlabArena(this.options.batchMemory);
    let bytes = 0;
    while (bytes < this.options.cycleBytes) {
      let batch: ApplyBatch | null = null;
      if (this.diskUntil !== null) {
        const until = this.diskUntil;
        const read = await this.readFromLog(this.cursor, until, memory);
        if (read === null) {
          // Memory overflowed again while this read was under way: the log
          // holds more to read before the memory queue takes over.
          if (this.diskUntil === until) this.diskUntil = null;
          continue;
        }
        batch = fromLogBatch(read);
      } else {
        batch = this.memory.shift() ?? null;
        if (batch) this.memoryBytes -= batch.memoryBytes;
        const staging = batch?.staging;
        if (staging) memory.onRelease(() => this.options.staging.release(staging));
      }
      if (batch === null) break;
      out.push(batch);
      bytes += batch.bytes;
      this.cursor = { segment: batch.segment, fileOffset: batch.fileOffset + batch.bytes };
    }
    return { batches: out, memory };
  }

  /**
   * The batch at `from` (or at the start of the next segment), or null on
   * reaching `until`. Its buffer is a view of memory from `memory`.
   */
  private async readFromLog(from: LogPosition, until: LogPosition, memory: SlabArena): Promise<LogBatch | null> {
    let pos = from;
    for (let attempts = 0; attempts < 2; attempts++) {
      if (comparePositions(pos, until) >= 0) return null;
      const file = await this.readerFor(pos.segment);
      const r = await this.timings.time('log', () => readBatchAt(file, pos.segment, pos.fileOffset, file.sizeAtOpen, { head: this.batchHead, take: (bytes) => memory.take(bytes) }));
      if (r.ok) this.timings.logBytesRead += r.batch.bytes;
      if (r.ok) return r.batch;
      pos = { segment: pos.segment + 1, fileOffset: 0 };
      this.cursor = pos;
    }
    throw new Error(`the ingest log has no batch at ${from.segment}:${from.fileOffset} though it should (durable end ${until.segment}:${until.fileOffset})`);
  }

  /**
   * The open segment, or the named one opened instead. A segment recycled
   * under an open reader is harmless: its new records carry another segment
   * number, and readBatchAt refuses them.
   */
  private async readerFor(segment: number): Promise<BlockFile> {
    if (this.reader?.segment === segment) return this.reader.file;
    await this.closeReader();
    const file = await openForReading(this.options.ingest.segmentPath(segment), BACKGROUND_IO_PIECE_BYTES, this.options.priority);
    this.reader = { segment, file };
    return file;
  }

  private async closeReader(): Promise<void> {
    const r = this.reader;
    this.reader = null;
    await r?.file.close();
  }

  /** Stage A for every pair with items in the cycle, concurrently. */
  private async prepareCycle(
    batches: readonly ApplyBatch[],
    memory: SlabArena,
    previousStageB: () => Promise<void>,
  ): Promise<Array<{ pair: P; plan: ApplyPlan; firstBatch: LogPosition }>> {
    const perPair = new Map<string, { items: StreamItem[]; firstBatch: LogPosition }>();
    for (const batch of batches) {
      for (const { pairId: id, item } of batch.entries) {
        const pair = this.options.pairs.get(id);
        if (!pair || item.seq <= pair.appliedSeq) continue;
        if (pair.state.paused) {
          pair.state.skippedFrom({ segment: batch.segment, fileOffset: batch.fileOffset });
          continue;
        }
        let entry = perPair.get(id);
        if (!entry) {
          entry = { items: [], firstBatch: { segment: batch.segment, fileOffset: batch.fileOffset } };
          perPair.set(id, entry);
        }
        entry.items.push(item);
      }
    }
    const plans: Array<{ pair: P; plan: ApplyPlan; firstBatch: LogPosition }> = [];
    await Promise.all(
      [...perPair].map(async ([pairId, { items, firstBatch }]) => {
        const pair = this.options.pairs.get(pairId) as P;
        const steps = this.steps(pair, items);
        try {
          if (pair.target === null) throw new Error('target not open');
          if (!pair.target.stillAttached()) throw new Error(`target ${pair.target.path} was moved or detached`);
          let inflight = pair.inflight ?? null;
          if (steps.length > 1) {
            // A rare big step: apply all but the last one here, after the previous cycle has landed.
            await previousStageB();
            for (const step of steps.slice(0, -1)) {
              const result = await applyItems(pair.pairId, step, pair.target, pair.undo, pair.appliedPoint, pair.resync, this.timings);
              this.advance(pair, result);
            }
            inflight = null;
          }
          const plan = await prepareApply(pair.pairId, steps[steps.length - 1] as StreamItem[], pair.target, pair.undo, pair.appliedPoint, inflight, pair.resync, memory, this.timings);
          pair.inflight = plan.extents;
          plans.push({ pair, plan, firstBatch });
        } catch (err) {
          this.pause(pair, err);
          pair.state.skippedFrom(firstBatch);
        }
      }),
    );
    return plans;
  }

  /** Stage B: targets written and flushed, then appliedSeq moves. */
  private async finishCycle(plans: ReadonlyArray<{ pair: P; plan: ApplyPlan; firstBatch: LogPosition }>): Promise<void> {
    await Promise.all(
      plans.map(async ({ pair, plan, firstBatch }) => {
        if (pair.state.paused || pair.target === null) {
          pair.state.skippedFrom(firstBatch);
          return;
        }
        try {
          const result = await finishApply(pair.target, plan, this.timings);
          this.advance(pair, result);
        } catch (err) {
          this.pause(pair, err);
          pair.state.skippedFrom(firstBatch);
        } finally {
          if (pair.inflight === plan.extents) pair.inflight = null;
        }
      }),
    );
  }

  private advance(pair: P, result: ApplyResult): void {
    pair.appliedSeq = result.appliedSeq;
    pair.appliedPoint = { seq: result.appliedSeq, time: result.appliedTime };
    this.options.onApplied(pair, result);
  }

  /** Splits a pair's items into steps whose undo batch fits an undo segment. */
  private steps(pair: ApplierPair, items: readonly StreamItem[]): StreamItem[][] {
    const out: StreamItem[][] = [];
    let current: StreamItem[] = [];
    let bytes = 0;
    for (const it of items) {
      if (it.seq <= pair.appliedSeq) continue;
      // Count what the undo batch will hold: a header per item and the before-image.
      const size = RECORD_HEADER_BYTES + (it.kind === 'write' ? it.data.length : it.kind === 'tag' ? 256 : 0);
      if (current.length > 0 && bytes + size > this.options.maxStepBytes) {
        out.push(current);
        current = [];
        bytes = 0;
      }
      current.push(it);
      bytes += size;
    }
    if (current.length > 0) out.push(current);
    return out;
  }

  /** Applies items step by step (catch-up after a pause); false when the pair had to be paused again. */
  private async applyToPair(pair: P, items: readonly StreamItem[]): Promise<boolean> {
    for (const step of this.steps(pair, items)) {
      try {
        if (pair.target === null) throw new Error('target not open');
        if (!pair.target.stillAttached()) throw new Error(`target ${pair.target.path} was moved or detached`);
        this.advance(pair, await applyItems(pair.pairId, step, pair.target, pair.undo, pair.appliedPoint, pair.resync, this.timings));
      } catch (err) {
        this.pause(pair, err);
        return false;
      }
    }
    return true;
  }

  private pause(pair: P, err: unknown): void {
    const news = pair.state.stopped(err instanceof Error ? err.message : String(err));
    this.options.onPaused(pair, err, news);
  }

  /** Catches paused pairs that may resume up with the cursor, reading the log. */
  private async resumePairs(): Promise<void> {
    for (const pair of this.options.pairs.values()) {
      if (!pair.state.wantsResume) continue;
      pair.state.resumeBegins();
      let pos = pair.state.resumeFrom;
      let ok = true;
      while (ok && pos !== null && comparePositions(pos, this.cursor) < 0) {
        const memory = new SlabArena(this.options.batchMemory);
        const batch = await this.readFromLogFor(pos, memory);
        if (batch === null) break;
        const items = fromLogBatch(batch).entries.filter((e) => e.pairId === pair.pairId && e.item.seq > pair.appliedSeq).map((e) => e.item);
        // Both stages of each step are done when applyToPair returns: nothing reads the batch after.
        if (items.length > 0) ok = await this.applyToPair(pair, items);
        memory.release();
        if (ok) pos = { segment: batch.segment, fileOffset: batch.fileOffset + batch.bytes };
      }
      pair.state.resumeEnds(ok ? null : pos);
      if (ok) this.options.onResumed(pair);
    }
  }

  private async readFromLogFor(pos: LogPosition, memory: SlabArena): Promise<LogBatch | null> {
    const saved = this.cursor;
    try {
      return await this.readFromLog(pos, saved, memory);
    } finally {
      this.cursor = saved;
    }
  }
}
