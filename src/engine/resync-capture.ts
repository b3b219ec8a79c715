// Whether a pair's open resync window keeps before-images: not when no
// recovery point comes before it (the apply side is apply/pair-applier.ts).
import type { ResyncCapture } from '../apply/pair-applier';
import type { ItemPoint } from '../journal/undo-log';
import { firstCandidate, firstOutsideWindows } from '../recovery/points';
import type { ResyncWindowRow } from '../store/catalog';

export class PairResyncCapture implements ResyncCapture {
  inWindow = false;
  uncaptured = false;

  constructor(
    /** The pair's history as it is now (pruning moves its oldest point). */
    private readonly history: () => { readonly oldest: ItemPoint; readonly historyFloor: number },
    /** The pair's windows as the catalog has them (a window being applied may not be there yet: the applier follows it). */
    private readonly windows: () => readonly ResyncWindowRow[],
  ) {}

  pointBefore(seq: number): boolean {
    const earlier = this.windows().filter((w) => w.startSeq < seq);
    const { oldest, historyFloor } = this.history();
    // The disk before item 1 does not count: a new pair's first resync keeps nothing to roll back to it.
    const first = firstOutsideWindows(Math.max(1, firstCandidate(oldest.seq, historyFloor, earlier)), earlier);
    return first !== null && first < seq;
  }

  /** Takes up the windows where the logs leave them at start-up: an open one's writes go on as they began. */
  resume(): void {
    const open = this.windows().find((w) => w.endSeq === null);
    this.inWindow = open !== undefined;
    this.uncaptured = open !== undefined && !this.pointBefore(open.startSeq);
  }

  /** No window open (a commit starts the history over). */
  reset(): void {
    this.inWindow = false;
    this.uncaptured = false;
  }
}
