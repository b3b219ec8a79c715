// The pairs' target disks: opened (an image file created sparse for a new
// pair), checked against the pair's size, and, while one is gone or fails,
// tried again every targetRetryMs. A pair whose target is away pauses alone;
// its items are journaled until the target is back.
import { TargetDisk, TargetError } from '../apply/target';
import type { EngineCore } from './core';
import type { PairRuntime } from './pairs';

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class Targets {
  constructor(private readonly core: EngineCore) {}

  /** Opens (or creates) the pair's target; on failure the pair waits paused, and `mustSucceed` throws. */
  async attach(pair: PairRuntime, mustSucceed = false): Promise<boolean> {
    if (pair.config === null) return false;
    const fresh = pair.durableSeq === 0;
    try {
      const t = await TargetDisk.open({ path: pair.config.target, sizeBytes: fresh ? pair.config.sizeBytes ?? null : null, priority: this.core.io });
      if (pair.config.sizeBytes && !t.blockDevice && t.sizeBytes !== pair.config.sizeBytes) {
        await t.close();
        throw new TargetError('size-mismatch', pair.config.target, `target ${pair.config.target} is ${t.sizeBytes} bytes but sizeBytes is ${pair.config.sizeBytes}`);
      }
      if (pair.diskBytes !== null && t.sizeBytes !== pair.diskBytes) {
        await t.close();
        throw new TargetError('size-mismatch', pair.config.target, `target ${pair.config.target} is ${t.sizeBytes} bytes; the pair's disk is ${pair.diskBytes}`);
      }
      pair.target = t;
      pair.state.targetOpened();
      return true;
    } catch (err) {
      pair.target = null;
      if (pair.state.stopped(errorMessage(err))) this.core.log.warn({ pair: pair.pairId, err: pair.state.lastError }, 'target unavailable; items are journaled until it returns');
      if (mustSucceed) throw err;
      return false;
    }
  }

  /** Closes the target of a pair whose path no longer names the disk it has open (moved or detached). */
  async dropIfGone(pair: PairRuntime): Promise<void> {
    if (pair.target && !pair.target.stillAttached()) await this.drop(pair);
  }

  /** Closes the pair's target on purpose. */
  async drop(pair: PairRuntime): Promise<void> {
    const t = pair.target;
    pair.target = null;
    await t?.close().catch(() => undefined);
  }

  /** Every paused pair that may apply gets its target again (if gone) and a retry at the applier's next turn. */
  retryPaused(): void {
    if (this.core.closed) return;
    for (const pair of this.core.pairs.all()) {
      if (!pair.state.paused || pair.config === null || pair.state.failover !== null || pair.state.wantsResume) continue;
      void (async () => {
        await this.dropIfGone(pair);
        if (pair.target === null && !(await this.attach(pair))) return;
        pair.state.retry();
        this.core.applier.poke();
      })().catch((err: unknown) => this.core.log.error({ err, pair: pair.pairId }, 'retrying the target failed'));
    }
  }

  /** Whether the pair's target is attached (cheap: for the endpoint's informational notice). */
  attached(pairId: string): boolean {
    const pair = this.core.pairs.get(pairId);
    return pair !== undefined && pair.target !== null && !(pair.state.paused && pair.state.lastError !== null && !pair.target.stillAttached());
  }

  /** The reason a pair's target is unavailable, if it is. */
  problem(pairId: string): string | null {
    return this.core.pairs.get(pairId)?.state.lastError ?? null;
  }
}
