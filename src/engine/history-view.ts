// The narrow view of a pair's history the engine gives recovery
// (recovery/history.ts): what the target holds, where rolling back starts,
// and, for `verify`, both logs held at one moment.
import type { PairHistory, ReadHold } from '../recovery/history';
import type { EngineCore } from './core';
import type { PairRuntime } from './pairs';

export function historyOf(pair: PairRuntime): PairHistory {
  const failoverSeq = pair.state.failoverSeq;
  const rolledBack = pair.state.lifecycle === 'failed-over' && failoverSeq !== null;
  return {
    pairId: pair.pairId,
    diskBytes: pair.diskBytes ?? pair.target?.sizeBytes ?? 0,
    sectorBytes: pair.sectorBytes ?? 512,
    target: pair.target,
    targetSeq: rolledBack ? failoverSeq : pair.appliedSeq,
    rollbackFromSeq: rolledBack ? failoverSeq : Math.max(pair.appliedSeq, pair.undo.maxSeq),
    oldest: pair.oldest,
    historyFloor: pair.historyFloor,
    undo: pair.undo,
    durableSeq: rolledBack ? failoverSeq : pair.durableSeq,
    durableTime: rolledBack ? null : pair.durableTime,
    // lastError, not paused: a paused pair is retried every targetRetryMs, and
    // is unpaused while each retry catches up, but the error stands until one
    // has caught up (onResumed). A wait on `paused` could start inside a retry
    // that fails, and wait its whole timeout.
    applyPausedBy: pair.state.failover === null && pair.config !== null ? pair.state.lastError : null,
    configured: pair.config !== null,
    failedOver: pair.state.failover !== null,
  };
}

/**
 * Fixes what `mtagent verify` reads while replication goes on: the durable
 * ends of both logs at this moment; the pair's history stays pinned (`unpin`)
 * until `release`, and ingest segments are not recycled until `releaseIngest`
 * (the ingest log grows meanwhile, so it is read first).
 */
export function holdForReading(core: EngineCore, pair: PairRuntime, unpin: () => void): ReadHold {
  const unhold = core.ingest.holdRecycling();
  return {
    undoEnd: pair.undo.durableEnd,
    ingestEnd: core.ingest.end,
    releaseIngest: unhold,
    release: () => {
      unhold();
      unpin();
    },
  };
}
