// What recovery needs of a pair's history, and nothing more: the narrow
// read-only view the engine gives rebuild, verify, groups and point
// resolution, so that recovery knows nothing of the engine behind it.
import type { TargetDisk } from '../apply/target';
import type { ItemPoint, UndoLog } from '../journal/undo-log';
import type { LogPosition } from '../journal/segment-log';
import type { ResyncWindowRow, TagRow, UndoSegmentRow } from '../store/catalog';

/** A pair's history at one moment; the source keeps it consistent while pinned. */
export interface PairHistory {
  pairId: string;
  diskBytes: number;
  /** The smallest block the source addresses (512 until the process server said). */
  sectorBytes: number;
  target: TargetDisk | null;
  /** The state the target holds: the applied seq, or the failover point. */
  targetSeq: number;
  /**
   * Where rolling back a copy of the target starts. While the pair is
   * applied, a step's writes land before its seq counts as applied, so a copy
   * may hold writes past targetSeq: every item whose before-image is durable
   * is rolled back. Undoing one whose writes have not landed is harmless: its
   * before-image is what the target would hold, and older ones come after it.
   */
  rollbackFromSeq: number;
  oldest: ItemPoint;
  /** A commit dropped the history up to this seq (0: none). */
  historyFloor: number;
  undo: UndoLog;
  /** The newest durable item: past targetSeq while the applier has not caught up. */
  durableSeq: number;
  /** Its source time (µs), null when not known. */
  durableTime: number | null;
  /** Why applying stopped (the target failed, the volume is full), until it has caught up again; null while it goes on. */
  applyPausedBy: string | null;
  configured: boolean;
  failedOver: boolean;
}

/** What `verify` reads while replication goes on: both logs up to their durable ends of one moment. */
export interface ReadHold {
  undoEnd: LogPosition;
  ingestEnd: LogPosition;
  /** Lets the ingest log recycle again (it is read first). */
  releaseIngest: () => void;
  release: () => void;
}

export interface HistorySource {
  /** Keeps a pair's history from being pruned while it is read; call the result to release. */
  pin(pairId: string): () => void;
  history(pairId: string): PairHistory;
  tags(pairId: string): TagRow[];
  resyncWindows(pairId: string): ResyncWindowRow[];
  /** The catalog's rows for the pair's undo segments, which verify holds against the log. */
  indexedSegments(pairId: string): UndoSegmentRow[];
  /** Pins the pair and fixes the durable ends of both logs at this moment. */
  holdForReading(pairId: string): ReadHold;
  /** Resolves once the pair has applied `seq` (or rejects after `timeoutMs`). */
  waitApplied(pairId: string, seq: number, timeoutMs?: number): Promise<void>;
  /** Configured pairs. */
  pairIds(): string[];
  groupOf(pairId: string): string | null;
  /** The ingest log's folder (verify reads it through). */
  readonly ingestDir: string;
}
