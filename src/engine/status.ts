// What the engine reports of a pair: the row behind `mtagent status`, the
// heartbeat and the metrics. Reading it changes nothing.
import type { EngineCore } from './core';
import type { PairStateName } from './pair-state';
import type { PairRuntime } from './pairs';

export interface PairStatus {
  pair: string;
  group: string | null;
  state: PairStateName;
  configured: boolean;
  target: string | null;
  diskBytes: number | null;
  durableSeq: number;
  appliedSeq: number;
  oldestSeq: number;
  oldestTime: number | null;
  latestTime: number | null;
  rpoSeconds: number | null;
  rpoHealth: 'ok' | 'warning' | 'critical' | null;
  journalBytes: number;
  ingestBytesPerSecond: number;
  /** Write bytes durable in the ingest log and not yet on the target; ingest waits while it is above maxApplyLagBytes. */
  applyLagBytes: number;
  needsResync: boolean;
  lastError: string | null;
}

/** How often the ingest rate in status is measured. */
export const RATE_WINDOW_MS = 5000;

export function stateOf(pair: PairRuntime): PairStateName {
  return pair.state.name({ targetOpen: pair.target !== null, inResync: pair.inResync, needsResync: pair.needsResync, durableSeq: pair.durableSeq });
}

export function pairStatus(core: EngineCore, pair: PairRuntime): PairStatus {
  const nowUs = core.now();
  const rpoSeconds = pair.durableTime !== null && pair.durableTime > 0 ? Math.max(0, (nowUs - pair.durableTime) / 1e6) : null;
  const threshold = core.config.policy.rpoThresholdSeconds;
  let journalBytes = 0;
  for (const s of pair.undo.segments()) journalBytes += s.bytes;
  return {
    pair: pair.pairId,
    group: pair.config?.group ?? null,
    state: stateOf(pair),
    configured: pair.config !== null,
    target: pair.config?.target ?? null,
    diskBytes: pair.diskBytes,
    durableSeq: pair.durableSeq,
    appliedSeq: pair.appliedSeq,
    oldestSeq: pair.oldest.seq,
    oldestTime: pair.oldest.time || null,
    latestTime: pair.appliedPoint.time || null,
    rpoSeconds,
    rpoHealth: rpoSeconds === null ? null : rpoSeconds > 2 * threshold ? 'critical' : rpoSeconds > threshold ? 'warning' : 'ok',
    journalBytes,
    ingestBytesPerSecond: pair.rate.perSecond,
    applyLagBytes: pair.lagBytes,
    needsResync: pair.needsResync,
    lastError: pair.state.alert ?? pair.state.lastError,
  };
}

/** Closes each pair's ingest-rate window: status reports the last whole one. */
export function rollRates(core: EngineCore): void {
  const now = Date.now();
  for (const pair of core.pairs.all()) {
    const elapsed = (now - pair.rate.since) / 1000;
    if (elapsed <= 0) continue;
    pair.rate = { since: now, bytes: 0, perSecond: pair.rate.bytes / elapsed };
  }
}
