// Whether the policy's retention window fits the retention volume: the
// history a whole window takes at each pair's peak hourly churn of the last
// day, with before-images as large as the writes (the steady state of a disk
// in use; a new disk's zeros cost less), plus what the agent keeps whatever
// the history (the ingest log and spare segments). Warned of when it stops
// fitting, before history is shortened for space.
import type { Logger } from '../log';
import type { Catalog } from '../store/catalog';
import type { Churn } from './churn';

export interface WindowReport {
  /** The least history a pair holds, seconds; null while no pair has any. */
  heldSeconds: number | null;
  policySeconds: number;
  /** What the whole window needs at the peak hourly churn of every pair. */
  neededBytes: number;
  /** What the agent may use of the retention volume. */
  capacityBytes: number;
  fits: boolean;
  /** When history was last shortened for space, ISO-8601; null if never. */
  shortenedForSpaceAt: string | null;
}

export interface PairChurn {
  churn: Churn;
  /** Retention bytes per byte written (ChurnMeter.undoBytesPerByte). */
  undoBytesPerByte: number;
}

export function forecastWindow(o: {
  pairs: readonly PairChurn[];
  policySeconds: number;
  /** Kept whatever the history: ingest segments, spare segments. */
  fixedBytes: number;
  capacityBytes: number;
  heldSeconds: number | null;
  shortenedForSpaceAt: string | null;
}): WindowReport {
  let history = 0;
  for (const p of o.pairs) history += p.churn.peakHourBytesPerSecond * o.policySeconds * p.undoBytesPerByte;
  const neededBytes = Math.ceil(o.fixedBytes + history);
  return {
    heldSeconds: o.heldSeconds,
    policySeconds: o.policySeconds,
    neededBytes,
    capacityBytes: o.capacityBytes,
    fits: neededBytes <= o.capacityBytes,
    shortenedForSpaceAt: o.shortenedForSpaceAt,
  };
}

/** Logs and records each change of the verdict: once when the window stops fitting, once when it fits again. */
export class WindowWatch {
  private fitting = true;

  constructor(
    private readonly log: Logger,
    private readonly catalog: Catalog,
  ) {}

  get fits(): boolean {
    return this.fitting;
  }

  check(w: WindowReport): void {
    if (w.fits === this.fitting) return;
    this.fitting = w.fits;
    const fields = { neededBytes: w.neededBytes, capacityBytes: w.capacityBytes, policySeconds: w.policySeconds };
    if (!w.fits) {
      const message = `the retention window of ${w.policySeconds} s will not fit: at the peak hourly churn it needs ${w.neededBytes} bytes of the ${w.capacityBytes} the agent may use; history will be shortened for space once the volume fills (give the retention volume more space, or shorten policy.retentionSeconds)`;
      this.log.warn(fields, message);
      this.catalog.addEvent(null, 'window-will-not-fit', message);
    } else {
      this.log.info(fields, 'the retention window fits the retention volume again');
      this.catalog.addEvent(null, 'window-fits', `the retention window of ${w.policySeconds} s fits again: it needs ${w.neededBytes} of ${w.capacityBytes} bytes`);
    }
  }
}
