// The applier's side of the engine: each applied step recorded in the
// catalog, a pair paused or resumed, waits on an applied seq, and when
// acknowledgements come first (the applier then yields to the ingest log,
// and its I/O gives way between pieces).
import type { ApplyResult } from '../apply/pair-applier';
import { MtagentError } from '../errors';
import type { EngineCore } from './core';
import { EngineError } from './errors';
import type { IngestPath } from './ingest';
import type { PairRuntime } from './pairs';
import type { Pruner } from '../retention/pruner';
import { errorMessage, type Targets } from './targets';

export class ApplyControl {
  private readonly appliedWaiters = new Set<{ pairId: string; seq: number; resolve: () => void }>();
  /** Write payload bytes applied, and before-image bytes captured, since open (write amplification). */
  bytesApplied = 0;
  undoBytesWritten = 0;

  constructor(
    private readonly core: EngineCore,
    private readonly ingest: IngestPath,
    private readonly targets: Targets,
    private readonly pruner: Pruner,
  ) {}

  onApplied(pair: PairRuntime, result: ApplyResult): void {
    pair.lagBytes = Math.max(0, pair.lagBytes - result.itemBytes);
    this.bytesApplied += result.itemBytes;
    this.undoBytesWritten += result.undoBytes;
    pair.unrecordedMarkers.push(...result.markers);
    let failure: unknown = null;
    try {
      this.recordApplied(pair);
    } catch (err) {
      failure = err;
    }
    // Each waiter looks again: this pair's, and, with the total lower, the others'.
    if (this.ingest.lagWaiting) this.ingest.wakeAll();
    for (const w of this.appliedWaiters) {
      if (w.pairId === pair.pairId && pair.appliedSeq >= w.seq) {
        this.appliedWaiters.delete(w);
        w.resolve();
      }
    }
    // Thrown on to the applier, which pauses the pair; the step itself is on
    // the target and its before-images durable, so nothing is re-applied.
    if (failure !== null) throw failure;
  }

  /**
   * Writes what the applier did to the catalog: the applied seq, the undo
   * segments it touched, and every tag and resync marker not recorded yet.
   * The catalog is an index: after a crash start-up rebuilds it from the logs,
   * and a failed write here loses nothing but is retried.
   */
  private recordApplied(pair: PairRuntime): void {
    const seg = pair.undo.segments();
    const markers = pair.unrecordedMarkers;
    const { catalog } = this.core;
    try {
      catalog.transaction(() => {
        catalog.updatePair(pair.pairId, { appliedSeq: pair.appliedSeq, durableSeq: pair.durableSeq });
        // Segments this step touched: the active one, and the one before if it just rolled.
        for (const s of seg.slice(-2)) catalog.upsertSegment({ pairId: pair.pairId, ...s });
        for (const m of markers) {
          if (m.kind === 'tag') catalog.addTag({ pairId: pair.pairId, seq: m.seq, time: m.time, kind: m.tagKind, name: m.name, group: m.group });
          else if (m.kind === 'resync-start') catalog.startResync(pair.pairId, m.seq, m.time);
          else if (m.kind === 'resync-end') {
            catalog.endResync(pair.pairId, m.seq, m.time);
            catalog.updatePair(pair.pairId, { needsResync: false });
          }
        }
      });
    } catch (err) {
      throw new MtagentError(
        'catalog-write-failed',
        `the catalog in ${this.core.paths.dataDir} could not be written (${errorMessage(err)}); applying resumes once it can`,
        { cause: err },
      );
    }
    pair.unrecordedMarkers = [];
  }

  /** The applier paused the pair (its state has stopped already). */
  onPaused(pair: PairRuntime, news: boolean): void {
    this.ingest.wakeLagWaiters(pair.pairId);
    // A pair taken out of the configuration closed its target on purpose; the
    // write that was in flight failing on it is not the news an operator needs.
    if (pair.config === null) return;
    if (news) this.core.log.warn({ pair: pair.pairId, appliedSeq: pair.appliedSeq, err: pair.state.lastError }, 'applying paused for this pair; ingest goes on');
    void this.targets.dropIfGone(pair);
  }

  onResumed(pair: PairRuntime): void {
    // Markers a failed catalog write left must be recorded before the pair counts as resumed.
    if (pair.unrecordedMarkers.length > 0) {
      try {
        this.recordApplied(pair);
      } catch (err) {
        pair.state.stopped(errorMessage(err));
        return;
      }
    }
    pair.state.caughtUp();
    this.core.log.info({ pair: pair.pairId, appliedSeq: pair.appliedSeq }, 'applying resumed');
  }

  /** Resolves once the pair has applied `seq` (or rejects after `timeoutMs`). */
  waitApplied(pairId: string, seq: number, timeoutMs = 60_000): Promise<void> {
    const pair = this.core.pairs.require(pairId);
    if (pair.appliedSeq >= seq) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        pairId,
        seq,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.appliedWaiters.delete(waiter);
        reject(new EngineError('target-unavailable', `pair ${pairId} did not apply seq ${seq} within ${timeoutMs} ms (applied ${pair.appliedSeq}${pair.state.lastError ? `: ${pair.state.lastError}` : ''})`, pairId));
      }, timeoutMs);
      this.appliedWaiters.add(waiter);
      this.core.applier.poke();
    });
  }

  /** Waits until everything durable is applied for every pair that can apply. */
  async settle(timeoutMs = 60_000): Promise<void> {
    await this.core.ingest.drain();
    await Promise.all(
      [...this.core.pairs.all()].filter((p) => !p.state.paused && p.config !== null).map((p) => this.waitApplied(p.pairId, p.durableSeq, timeoutMs)),
    );
  }

  /** Every waiter on an applied seq goes on (the engine closes). */
  releaseWaiters(): void {
    for (const w of this.appliedWaiters) w.resolve();
    this.appliedWaiters.clear();
  }

  /**
   * While the ingest log is busy and acknowledgements come first, the applier
   * waits, so a burst is made durable at the disk's full speed.
   */
  applierShouldYield(): boolean {
    return this.core.ingest.busy && this.acksComeFirst();
  }

  /**
   * Acknowledgements come first (the applier yields to ingest between cycles,
   * and its I/O gives way to ingest writes between pieces) while no active
   * pair lags by more than half of maxApplyLagBytes, nobody waits on an
   * applied seq or for room, and the ingest log holds less than half of what
   * the volume may hold (so the undo logs keep room).
   */
  acksComeFirst(): boolean {
    if (this.core.closed || this.appliedWaiters.size > 0 || this.ingest.lagWaiting || this.pruner.waitingForRoom) return false;
    const watermark = this.core.sizes.maxApplyLagBytes / 2;
    for (const p of this.core.pairs.all()) if (!p.state.paused && p.lagBytes > watermark) return false;
    if (this.ingest.totalLagBytes() > this.core.sizes.maxTotalApplyLagBytes / 2) return false;
    const capacity = this.pruner.lastSpace?.capacityBytes ?? 0;
    return this.core.ingest.usedBytesCached() < capacity / 2;
  }

  /**
   * For the systemd watchdog: true while the engine works — no fatal error,
   * and the ingest log either idle or finishing batches (one stuck for more
   * than `stuckMs` is not healthy).
   */
  healthy(stuckMs = 20_000): boolean {
    if (this.core.fatal !== null || this.core.closed) return false;
    return !this.core.ingest.busy || Date.now() - this.core.lastBatchAt < stuckMs;
  }
}
