// What the engine reports of a pair: the row behind `mtagent status`, the
// heartbeat and the metrics. Reading it changes nothing.
import type { EngineCore } from './core';
import type { PairStateName } from './pair-state';
import type { PairRuntime } from './pairs';
import type { Churn } from '../retention/churn';

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
  /** Write bytes durable in the ingest log and not yet on the target; ingest waits while it is above maxApplyLagBytes (or all pairs together above maxTotalApplyLagBytes). */
  applyLagBytes: number;
  /** The source's writes per second (resync data left out), and the retention each byte of it takes. */
  churn: Churn;
  undoBytesPerByte: number;
  needsResync: boolean;
  lastError: string | null;
  /** Why the pair is not protected, in a phrase an operator can act on; null when it is. */
  why: string | null;
}

/** How often the ingest rate in status is measured. */
export const RATE_WINDOW_MS = 5000;

export function stateOf(pair: PairRuntime): PairStateName {
  return pair.state.name({ targetOpen: pair.target !== null, inResync: pair.inResync, needsResync: pair.needsResync, durableSeq: pair.durableSeq });
}

/** Why a pair in `state` is not protected, and what it waits for. */
function whyNot(core: EngineCore, pair: PairRuntime, state: PairStateName): string | null {
  switch (state) {
    case 'protected':
      return null;
    case 'unprotected':
      return pair.durableSeq === 0
        ? 'no data yet: waiting for the process server to open the pair and send its initial copy'
        : 'a resync is owed (a new disk, a target moved, a commit or items lost): waiting for the process server to resync it';
    case 'resyncing': {
      const open = core.catalog.resyncWindows(pair.pairId).at(-1);
      return `resyncing${open ? ` since seq ${open.startSeq}` : ''}: the target matches no state of the source until the resync ends, and points in it are refused`;
    }
    case 'target-unavailable':
      return `the target is unavailable (${pair.state.lastError ?? 'not attached'}): items are journaled until it is back`;
    case 'failed-over':
      return `failed over to seq ${pair.state.failoverSeq ?? '?'}: replication stopped until 'mtagent commit ${pair.pairId}'`;
    case 'error':
      return pair.state.alert ?? pair.state.lastError ?? 'applying is paused';
  }
}

export function pairStatus(core: EngineCore, pair: PairRuntime): PairStatus {
  const nowUs = core.now();
  const rpoSeconds = pair.durableTime !== null && pair.durableTime > 0 ? Math.max(0, (nowUs - pair.durableTime) / 1e6) : null;
  const threshold = core.config.policy.rpoThresholdSeconds;
  let journalBytes = 0;
  for (const s of pair.undo.segments()) journalBytes += s.bytes;
  const state = stateOf(pair);
  return {
    pair: pair.pairId,
    group: pair.config?.group ?? null,
    state,
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
    churn: pair.churn.churn(),
    undoBytesPerByte: pair.churn.undoBytesPerByte,
    needsResync: pair.needsResync,
    lastError: pair.state.alert ?? pair.state.lastError,
    why: whyNot(core, pair, state),
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
