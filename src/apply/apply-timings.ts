// Where the applier's time goes, summed since start: reading batches back
// from the ingest log (when they no longer fit its memory), the phases of a
// step (reading before-images, making them durable in the undo log, writing
// the target, flushing it), how long the loop was busy at all, and how long
// ingest waited for the applier to catch up. Steps of several pairs run at
// once, so the phases may add up to more than the busy time.

export const APPLY_PHASES = ['log', 'read', 'undo', 'write', 'flush'] as const;
export type ApplyPhase = (typeof APPLY_PHASES)[number];

export class ApplyTimings {
  readonly seconds: Record<ApplyPhase, number> = { log: 0, read: 0, undo: 0, write: 0, flush: 0 };
  /** Bytes of batches read back from the ingest log. */
  logBytesRead = 0;
  /** Seconds the applier's loop ran (a cycle under way). */
  busySeconds = 0;
  /** Seconds appends waited, summed over the waiting appends, for a pair's apply lag to fall under its limit. */
  lagWaitSeconds = 0;
  /** Bytes of before-images read from targets, and bytes of resync data applied without any (no point before the resync to roll back to). */
  beforeImageBytesRead = 0;
  uncapturedBytes = 0;

  async time<T>(phase: ApplyPhase, work: () => Promise<T>): Promise<T> {
    const t = performance.now();
    try {
      return await work();
    } finally {
      this.seconds[phase] += (performance.now() - t) / 1000;
    }
  }
}
