// A pair's churn: the bytes its source writes per second (resync data left
// out: it is catch-up, not change), over the last minute, the last hour, and
// the peak hour of the last day. Kept in 10-second buckets, a day and an
// hour of them, on the engine's clock; since the agent started.
import { RECORD_ALIGNMENT, RECORD_HEADER_BYTES } from '../journal/record';

const BUCKET_US = 10_000_000;
const MINUTE = 6;
const HOUR = 360;
const DAY = 8640;
const RING = DAY + HOUR;

/** Bucket k holds what was written in (k, k+1] × 10 s: a write at a boundary belongs to the seconds before it. */
function bucketOf(us: number): number {
  return Math.ceil(us / BUCKET_US) - 1;
}

export interface Churn {
  lastMinuteBytesPerSecond: number;
  lastHourBytesPerSecond: number;
  peakHourBytesPerSecond: number;
}

export class ChurnMeter {
  private readonly buckets = new Float64Array(RING);
  private readonly since: number;
  /** The newest bucket written or passed (absolute index). */
  private newest: number;
  /** The best full hour among windows ending before `newest`, for the bucket it was computed at. */
  private peakBefore: { at: number; rate: number } | null = null;
  /** Writes and their bytes since the agent started. */
  writes = 0;
  bytes = 0;

  /** `now`: the engine's clock, µs. */
  constructor(private readonly now: () => number) {
    this.since = now();
    this.newest = bucketOf(this.since);
  }

  add(bytes: number): void {
    this.advance();
    this.buckets[this.newest % RING] = (this.buckets[this.newest % RING] as number) + bytes;
    this.bytes += bytes;
    this.writes++;
  }

  /** Retention bytes an undo log keeps per byte written, when the before-images are data: payload, record header, padding. */
  get undoBytesPerByte(): number {
    const avg = this.writes > 0 ? this.bytes / this.writes : 65536;
    return (avg + RECORD_HEADER_BYTES + RECORD_ALIGNMENT) / avg;
  }

  churn(): Churn {
    this.advance();
    const now = this.now();
    const ageSeconds = Math.max(1e-6, (now - this.since) / 1e6);
    const lastHour = this.rateOver(HOUR, now);
    return {
      lastMinuteBytesPerSecond: this.rateOver(MINUTE, now),
      lastHourBytesPerSecond: lastHour,
      // Less than an hour seen: the peak hour is the hour so far, never a burst of seconds taken for an hour.
      peakHourBytesPerSecond: ageSeconds < 3600 ? lastHour : Math.max(lastHour, this.peakOfFullHours()),
    };
  }

  private advance(): void {
    const b = bucketOf(this.now());
    if (b <= this.newest) return;
    for (let i = Math.max(this.newest + 1, b - RING + 1); i <= b; i++) this.buckets[i % RING] = 0;
    this.newest = b;
  }

  private sum(from: number, to: number): number {
    let s = 0;
    for (let i = Math.max(from, this.newest - RING + 1); i <= to; i++) s += this.buckets[i % RING] as number;
    return s;
  }

  /** Bytes per second over the last `n` buckets (the newest one partial), counted from when the meter began if later. */
  private rateOver(n: number, now: number): number {
    const from = this.newest - n + 1;
    const covered = (now - Math.max(this.since, from * BUCKET_US)) / 1e6;
    return covered > 0 ? this.sum(from, this.newest) / covered : 0;
  }

  /** The busiest whole hour that ended within the last day, before the hour now. */
  private peakOfFullHours(): number {
    if (this.peakBefore?.at === this.newest) return this.peakBefore.rate;
    const first = Math.max(Math.ceil(this.since / BUCKET_US) + HOUR - 1, this.newest - DAY + 1);
    let best = 0;
    if (first < this.newest) {
      let window = this.sum(first - HOUR + 1, first);
      best = window;
      for (let e = first + 1; e < this.newest; e++) {
        window += (this.buckets[e % RING] as number) - (this.buckets[(e - HOUR) % RING] as number);
        best = Math.max(best, window);
      }
    }
    this.peakBefore = { at: this.newest, rate: best / 3600 };
    return this.peakBefore.rate;
  }
}
