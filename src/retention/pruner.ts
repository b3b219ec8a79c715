// Space on the retention volume, and history given up for it: undo segments
// older than the retention window go (by source time); when space runs short,
// spares go first, then the oldest history across pairs (logged, recorded as
// an event), then appends wait for the applier to recycle ingest segments,
// and only then `retention-full`.
import { MtagentError } from '../errors';
import type { ItemPoint, UndoLog } from '../journal/undo-log';
import type { Logger } from '../log';
import type { Catalog } from '../store/catalog';
import { measureSpace, type SpaceAccount } from './space';

/** A point kept recoverable (a test failover's), with the scratch space it takes on the volume. */
export interface PointHold {
  readonly seq: number;
  scratchBytes(): number;
  /** Ends the hold at once (it is gone from the pair's holds when this returns), saying why. */
  revoke(reason: string): void;
}

/** What the pruner reads and shortens of a pair. */
export interface PrunablePair {
  readonly pairId: string;
  readonly undo: UndoLog;
  readonly durableTime: number | null;
  oldest: ItemPoint;
  /** Points held recoverable: no segment is dropped that the oldest of them needs. */
  readonly holds: ReadonlySet<PointHold>;
}

/** The ingest log as space: its spares and what it occupies. */
export interface IngestSpace {
  hasSpare(): boolean;
  dropSpares(keep: number): number;
  usedBytes(): number;
}

export interface PrunerHost<P extends PrunablePair> {
  readonly retentionDir: string;
  readonly reserveBytes: number;
  /** How long appends wait for room (ms) before `retention-full`. */
  readonly spaceWaitMs: number;
  readonly catalog: Catalog;
  readonly log: Logger;
  maxBytes(): number | null;
  retentionSeconds(): number;
  pairs(): Iterable<P>;
  /** Whether a pair's history may be shortened now (not held by a reader, not failed over). */
  mayPrune(pair: P): boolean;
  ingest(): IngestSpace | null;
  /** Asks the applier to go on: applied ingest segments are recycled, which frees room. */
  pokeApplier(): void;
  closed(): boolean;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class Pruner<P extends PrunablePair = PrunablePair> {
  /** The last space measurement (refreshed on allocation and by the engine's timer). */
  lastSpace: SpaceAccount | null = null;
  /** Appends waiting for the applier to free ingest segments: the applier must not yield then. */
  private waiting = 0;
  /** The ingest log's last wait for room ran out: later appends do not wait again until room is found. */
  private volumeFull = false;

  constructor(private readonly host: PrunerHost<P>) {}

  get waitingForRoom(): boolean {
    return this.waiting > 0;
  }

  async space(): Promise<SpaceAccount> {
    let undoBytes = 0;
    let scratchBytes = 0;
    for (const p of this.host.pairs()) {
      for (const s of p.undo.segments()) undoBytes += s.bytes;
      undoBytes += p.undo.spareBytes;
      for (const h of p.holds) scratchBytes += h.scratchBytes();
    }
    this.lastSpace = await measureSpace(this.host.retentionDir, this.host.ingest()?.usedBytes() ?? 0, undoBytes, scratchBytes, this.host.maxBytes(), this.host.reserveBytes);
    return this.lastSpace;
  }

  /**
   * Makes room for `bytes` more on the retention volume: shortens history
   * (oldest undo segments first, logged and recorded), and for the ingest log
   * (`mayWait`) then waits for the applier to free segments (back-pressure),
   * and only then refuses with `retention-full`.
   */
  async makeRoom(bytes: number, mayWait: boolean): Promise<void> {
    // Once a wait ran out with nothing freed, appends are refused at once
    // until room is found again: each waiting its own spaceWaitMs would hold
    // every later message of the connection, a reopen included, that long.
    const deadline = Date.now() + (mayWait && !this.volumeFull ? this.host.spaceWaitMs : 0);
    for (;;) {
      const ingest = this.host.ingest();
      // A segment the applier recycled meanwhile needs no new space.
      if (mayWait && ingest?.hasSpare()) {
        this.volumeFull = false;
        return;
      }
      const account = await this.space();
      if (account.availableBytes >= bytes) {
        if (mayWait) this.volumeFull = false;
        return;
      }
      // Idle recycled ingest segments go before any history does (one is kept for the next roll).
      if (ingest && ingest.dropSpares(mayWait ? 0 : 1) > 0) continue;
      // Then recycled undo segments, which hold no history either.
      let sparesFreed = 0;
      for (const p of this.host.pairs()) sparesFreed += p.undo.dropSpares();
      if (sparesFreed > 0) continue;
      if (this.pruneForSpace(bytes - account.availableBytes) > 0) continue;
      // Replication never waits on a test failover: the one whose point holds the oldest history ends.
      if (this.revokeOldestHold()) continue;
      if (Date.now() >= deadline || this.host.closed()) {
        if (mayWait) this.volumeFull = true;
        throw new MtagentError(
          'retention-full',
          `the retention volume has ${account.availableBytes} of ${account.capacityBytes} bytes free and no history left to drop; ${bytes} more are needed`,
        );
      }
      this.waiting++;
      try {
        this.host.pokeApplier();
        await sleep(50);
      } finally {
        this.waiting--;
      }
    }
  }

  /** Drops the oldest closed undo segments across pairs until `need` bytes are freed. */
  private pruneForSpace(need: number): number {
    const candidates: Array<{ pair: P; segment: number; lastTime: number; bytes: number }> = [];
    for (const pair of this.host.pairs()) {
      if (!this.host.mayPrune(pair)) continue;
      const segs = pair.undo.segments();
      for (const s of segs.slice(0, -1)) candidates.push({ pair, segment: s.segment, lastTime: s.lastTime ?? 0, bytes: s.bytes });
    }
    candidates.sort((a, b) => a.lastTime - b.lastTime);
    let freed = 0;
    for (const c of candidates) {
      if (freed >= need) break;
      // Segments of a pair go oldest first only.
      if (c.pair.undo.segments()[0]?.segment !== c.segment || !this.mayDropOldest(c.pair)) continue;
      this.dropOldestSegment(c.pair, 'space');
      freed += c.bytes;
    }
    return freed;
  }

  /** Drops undo segments older than the retention window (source time). */
  async pruneByTime(): Promise<number> {
    let dropped = 0;
    for (const pair of this.host.pairs()) {
      if (!this.host.mayPrune(pair) || pair.durableTime === null) continue;
      const cutoff = pair.durableTime - this.host.retentionSeconds() * 1e6;
      for (;;) {
        const segs = pair.undo.segments();
        const oldest = segs[0];
        if (segs.length < 2 || !oldest || oldest.lastTime === null || oldest.lastTime >= cutoff || !this.mayDropOldest(pair)) break;
        this.dropOldestSegment(pair, 'time');
        dropped++;
      }
    }
    return dropped;
  }

  /** Whether the pair's oldest segment may go: every held point stays recoverable after it. */
  private mayDropOldest(pair: P): boolean {
    const next = pair.undo.segments()[1];
    if (!next) return false;
    for (const h of pair.holds) if (next.prevSeq > h.seq) return false;
    return true;
  }

  /** Ends the hold that keeps the oldest droppable segment, when nothing else can be dropped. */
  private revokeOldestHold(): boolean {
    let victim: { hold: PointHold; time: number } | null = null;
    for (const pair of this.host.pairs()) {
      const segs = pair.undo.segments();
      const oldest = segs[0];
      if (segs.length < 2 || !oldest || !this.host.mayPrune(pair)) continue;
      const next = segs[1] as { prevSeq: number };
      for (const hold of pair.holds) {
        if (next.prevSeq <= hold.seq) continue;
        const time = oldest.lastTime ?? 0;
        if (victim === null || time < victim.time) victim = { hold, time };
      }
    }
    if (victim === null) return false;
    victim.hold.revoke('the retention volume ran short of space and only the history this test holds was left to drop');
    return true;
  }

  private dropOldestSegment(pair: P, reason: 'time' | 'space'): void {
    const segs = pair.undo.segments();
    const victim = segs[0];
    const next = segs[1];
    if (!victim || !next) return;
    // Dropped for time, the pair goes on writing history at the same pace: its file becomes the next segment.
    pair.undo.removeSegment(victim.segment, reason === 'time');
    pair.oldest = { seq: next.prevSeq, time: next.prevTime ?? 0 };
    const { catalog } = this.host;
    catalog.transaction(() => {
      catalog.deleteSegment(pair.pairId, victim.segment);
      catalog.deleteTagsBefore(pair.pairId, pair.oldest.seq);
      catalog.deleteWindowsBefore(pair.pairId, pair.oldest.seq);
      if (reason === 'space') {
        catalog.addEvent(pair.pairId, 'history-shortened', `retention volume short of space: oldest point is now seq ${pair.oldest.seq} (${new Date(pair.oldest.time / 1000).toISOString()})`);
      }
    });
    const log = reason === 'space' ? this.host.log.warn.bind(this.host.log) : this.host.log.info.bind(this.host.log);
    log({ pair: pair.pairId, segment: victim.segment, oldestSeq: pair.oldest.seq, reason }, reason === 'space' ? 'history shortened for space' : 'history past the retention window dropped');
  }
}
