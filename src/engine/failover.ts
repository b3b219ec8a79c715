// Failover in place, commit and purge. A failover stops replication of the
// pair and rolls its target itself back to a point; it survives a crash half
// way (finished at the next start). A commit drops the failed-over pair's
// history, so its next open needs a resync; a purge deletes what is left of
// a pair no longer configured.
import type { TargetDisk } from '../apply/target';
import { rollBack } from '../recovery/rollback';
import type { EngineCore } from './core';
import { EngineError } from './errors';
import type { ApplyControl } from './applying';
import type { IngestPath } from './ingest';
import type { PairRuntime } from './pairs';
import type { Targets } from './targets';

export interface FailoverDeps {
  ingest: IngestPath;
  applying: ApplyControl;
  targets: Targets;
  pin(pairId: string): () => void;
  /** A new, empty undo log for the pair (after its history is dropped). */
  freshUndoLog(pairId: string): Promise<PairRuntime['undo']>;
}

export class Failovers {
  constructor(
    private readonly core: EngineCore,
    private readonly deps: FailoverDeps,
  ) {}

  /**
   * No more replication for the pair; its target is rolled back to `seq`.
   * Appends are refused from the moment it begins, so what it drains and
   * waits for stops growing; then everything durable goes onto the target,
   * so the undo log covers it and no step of the applier lands after the rollback.
   */
  async failover(pairId: string, seq: number): Promise<void> {
    const pair = this.core.pairs.require(pairId);
    if (pair.state.lifecycle === 'failed-over') throw new EngineError('failed-over', `pair ${pairId} is already failed over (to seq ${pair.state.failoverSeq})`, pairId);
    if (pair.target === null) throw new EngineError('target-unavailable', `pair ${pairId}: target unavailable (${pair.state.lastError ?? 'not open'})`, pairId);
    if (pair.state.lifecycle !== 'replicating') throw new EngineError('bad-request', `pair ${pairId} is already being failed over`, pairId);
    pair.state.failoverBegins();
    try {
      this.deps.ingest.wakeLagWaiters(pairId);
      await this.core.ingest.drain();
      await this.deps.applying.waitApplied(pairId, pair.durableSeq);
    } catch (err) {
      pair.state.failoverAbandoned();
      throw err;
    }
    pair.state.rollingBack(seq);
    this.core.catalog.updatePair(pairId, { failover: 'rolling-back', failoverSeq: seq });
    this.core.catalog.flushDurably();
    await this.rollTargetBack(pair, seq);
  }

  /** Failovers a crash interrupted are finished before anything else at start-up. */
  async finishInterrupted(): Promise<void> {
    for (const pair of this.core.pairs.all()) {
      const seq = pair.state.failoverSeq;
      if (pair.state.lifecycle !== 'rolling-back' || seq === null) continue;
      this.core.log.warn({ pair: pair.pairId, seq }, 'finishing a failover interrupted by a restart');
      await this.deps.targets.attach(pair, true);
      await this.rollTargetBack(pair, seq);
    }
  }

  private async rollTargetBack(pair: PairRuntime, seq: number): Promise<void> {
    const target = pair.target as TargetDisk;
    const unpin = this.deps.pin(pair.pairId);
    try {
      await rollBack(pair.undo, target, seq, pair.appliedSeq);
      await target.flush();
    } finally {
      unpin();
    }
    pair.state.failedOver();
    const { catalog } = this.core;
    catalog.transaction(() => {
      catalog.updatePair(pair.pairId, { failover: 'failed-over', failoverSeq: seq });
      catalog.deleteTagsAfter(pair.pairId, seq);
      catalog.addEvent(pair.pairId, 'failover', `target rolled back to seq ${seq}; replication stopped until commit`);
    });
    catalog.flushDurably();
    this.core.log.warn({ pair: pair.pairId, seq }, 'pair failed over: target rolled back');
  }

  /** After a failover: drops the pair's retention; the next open needs a resync. */
  async commit(pairId: string): Promise<void> {
    const pair = this.core.pairs.require(pairId);
    if (pair.state.lifecycle !== 'failed-over') throw new EngineError('bad-request', `pair ${pairId} is not failed over; only a failed-over pair can be committed`, pairId);
    await pair.undo.destroy();
    pair.undo = await this.deps.freshUndoLog(pairId);
    pair.appliedSeq = pair.durableSeq;
    pair.appliedPoint = { seq: pair.durableSeq, time: pair.durableTime ?? 0 };
    pair.oldest = { ...pair.appliedPoint };
    pair.needsResync = true;
    pair.inResync = false;
    pair.historyFloor = pair.durableSeq;
    pair.resync.reset();
    pair.state.committed(pair.target !== null);
    const { catalog } = this.core;
    catalog.dropHistory(pairId);
    catalog.updatePair(pairId, { failover: null, failoverSeq: null, needsResync: true, appliedSeq: pair.appliedSeq, historyFloor: pair.durableSeq });
    catalog.addEvent(pairId, 'commit', 'retention dropped after failover; the next open needs a resync');
    catalog.flushDurably();
    this.core.log.warn({ pair: pairId }, 'pair committed: retention dropped');
  }

  /** Deletes retention and catalog of a pair that is no longer configured. */
  async purge(pairId: string): Promise<void> {
    const pair = this.core.pairs.get(pairId);
    if (pair === undefined) throw new EngineError('unknown-pair', `pair ${pairId} has no retention here`, pairId);
    if (pair.config !== null) throw new EngineError('bad-request', `pair ${pairId} is still in the configuration; remove it there first`, pairId);
    await pair.undo.destroy();
    this.core.pairs.delete(pairId);
    // Its items still in the ingest log are all before the end once what was handed over is written.
    await this.core.ingest.drain();
    this.core.catalog.deletePair(pairId, this.core.ingest.end);
    this.core.catalog.addEvent(pairId, 'purge', 'retention and metadata deleted');
    this.core.catalog.flushDurably();
    this.core.ingest.release(this.core.applier.releasePosition());
  }
}
